"""Offline validation of rendered manifests against the vendored schemas.

Core kinds are checked against Kubernetes' own JSON schemas (the strict variant:
an unknown field is an error). Custom resources are checked against their CRD's
``openAPIV3Schema``, and their ``metadata`` against Kubernetes' ``ObjectMeta``.

Two things are added at load time, never written into the vendored files (so a
refresh in ``scripts/refresh-k8s-schemas`` has nothing to repeat):

- Strictness. An API server prunes fields a CRD does not declare, silently: a
  misspelt ``lagThresold`` would vanish and the default would apply. Here every
  object schema that declares properties and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields`` refuses others, as ``kubectl apply
  --validate=strict`` does on a live cluster.
- :data:`OVERLAYS`: facts about an operator newer than the newest schema its
  registry package carries, each with the reason.

Not checked offline: CEL rules (``x-kubernetes-validations``) and admission
webhooks; a server-side dry run on a real cluster covers those.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource

from cosmic.errors import ConfigError

SCHEMAS = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "schemas"
KUBERNETES = "v1.37.0"
_DEFS_URI = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class ManifestInvalid(ConfigError):
    """A rendered manifest does not match the schema of its kind."""


def _flink_2x(schema: dict[str, Any]) -> None:
    # Operator 1.10.0 is the newest API jar in the registry and lists Flink up to 1.20;
    # the jobs run PyFlink 2.2, which later operator releases accept as v2_x.
    enum = schema["properties"]["spec"]["properties"]["flinkVersion"]["enum"]
    enum.extend(v for v in ("v2_0", "v2_1", "v2_2") if v not in enum)


OVERLAYS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("flink.apache.org/v1beta1", "FlinkDeployment"): _flink_2x,
}


def strict(schema: Any) -> Any:
    """``schema`` with every declared-properties object closed to other fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    validator: Validator
    custom: bool  # a CRD's kind: its metadata is checked apart


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def _kube_registry() -> Registry:
    defs = _load(SCHEMAS / f"kubernetes-{KUBERNETES}" / "_definitions.json")
    return Registry().with_resource(_DEFS_URI, Resource.from_contents(defs))


@lru_cache(maxsize=1)
def kinds() -> dict[tuple[str, str], Kind]:
    """Every kind there is a schema for, by (apiVersion, kind)."""
    out: dict[tuple[str, str], Kind] = {}
    registry = _kube_registry()
    for path in sorted((SCHEMAS / f"kubernetes-{KUBERNETES}").glob("*-*.json")):
        schema = _load(path)
        for gvk in schema["x-kubernetes-group-version-kind"]:
            api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            out[(api, gvk["kind"])] = Kind(api, gvk["kind"], Draft202012Validator(
                schema, registry=registry), custom=False)
    for path in sorted((SCHEMAS / "crds").glob("*/*.json")):
        kind, version = path.stem.rsplit("-", 1)
        api = f"{path.parent.name}/{version}"
        schema = strict(_load(path))
        # Every object has these; some CRD generators leave them out of the schema.
        for field, typ in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
            schema.setdefault("properties", {}).setdefault(field, {"type": typ})
        if overlay := OVERLAYS.get((api, kind)):
            overlay(schema)
        # A CRD's schema is OpenAPI 3.0 (draft-4 keywords); the Spark Operator's comes
        # from pydantic models and says so with a 2020-12 "$defs".
        cls = Draft202012Validator if "$defs" in schema else Draft4Validator
        out[(api, kind)] = Kind(api, kind, cls(schema), custom=True)
    return out


@lru_cache(maxsize=1)
def _object_meta() -> Validator:
    ref = {"$ref": f"{_DEFS_URI}#/$defs/{_OBJECT_META}"}
    return Draft202012Validator(ref, registry=_kube_registry())


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every way ``manifest`` breaks its schema, one line each (empty: valid)."""
    key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
    kind = kinds().get(key)
    if kind is None:
        return [f"no schema for apiVersion {key[0]} kind {key[1]}"]
    found = list(kind.validator.iter_errors(manifest))
    if kind.custom:
        found += _object_meta().iter_errors(manifest.get("metadata"))
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                  for e in found)


def check(manifests: Iterable[dict[str, Any]]) -> None:
    """Raise :class:`ManifestInvalid` naming every invalid manifest and why."""
    bad = []
    for m in manifests:
        for line in errors(m):
            name = m.get("metadata", {}).get("name", "?")
            bad.append(f"{m.get('kind')}/{name}: {line}")
    if bad:
        raise ManifestInvalid(f"{len(bad)} schema error(s): " + "; ".join(bad[:20]))
