"""Every manifest of a deployment, in the order ``kubectl apply`` should meet them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from cosmic.errors import ConfigError
from cosmic.settings import Settings
from cosmic_app.k8s import jobs, kafka, workloads
from cosmic_app.k8s.kafka import Identity, Manifest
from cosmic_app.k8s.values import Values


def _infrastructure(settings: Settings, values: Values, secured: bool) -> list[Manifest]:
    ns = values.namespace
    lake: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],  # the archive writes, Spark's pods read
        "resources": {"requests": {"storage": values.lake_size}}}
    if values.lake_storage_class:
        lake["storageClassName"] = values.lake_storage_class
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": workloads.SERVICE_ACCOUNT, "namespace": ns},
         # The services call no Kubernetes API: no token in their pods.
         "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": workloads.SETTINGS_CONFIGMAP, "namespace": ns},
         "data": workloads.settings_env(settings, values, secured)},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": workloads.LAKE_CLAIM, "namespace": ns}, "spec": lake},
    ]


def _network(settings: Settings, values: Values) -> list[Manifest]:
    gw = settings.gateway
    return [
        # The StatefulSet's governing Service: stable DNS names per worker, no balancing.
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "physics", "namespace": values.namespace},
         "spec": {"clusterIP": "None",
                  "selector": {"app.kubernetes.io/name": "physics"},
                  "ports": [{"name": "metrics", "port": workloads.METRICS_PORT}]}},
        # Any gateway serves any client: a subscription resumes on another one.
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "gateway", "namespace": values.namespace},
         "spec": {"type": values.gateway_service_type,
                  "selector": {"app.kubernetes.io/name": "gateway"},
                  "ports": [{"name": "http", "port": 80, "targetPort": gw.http_port},
                            {"name": "grpc", "port": 443, "targetPort": gw.grpc_port}]}},
    ]


def render(settings: Settings, values: Values,
           identities: Sequence[Identity] = ()) -> list[Manifest]:
    """The deployment for ``settings`` sized by ``values``.

    ``identities`` is the ACL table of the security model; given, the cluster
    authenticates with SCRAM, authorizes by ACL, and each service runs as its own
    user. Empty, the listener is open (a closed test cluster only).
    """
    secured = bool(identities)
    names = {i.name for i in identities}
    svcs = workloads.services(settings, values)
    if secured:
        needed = {s.identity for s in svcs} | {"jobs"}
        if missing := sorted(needed - names):
            raise ConfigError(f"the ACL table has no identity {', '.join(missing)}")
    out = _infrastructure(settings, values, secured)
    out += kafka.cluster(settings, values, secured)
    out += kafka.kafka_topics(values)
    out += kafka.users(values, identities)
    out += _network(settings, values)
    for svc in svcs:
        out.append(workloads.workload(settings, values, svc, secured))
        out.append(workloads.disruption_budget(values, svc))
        out.append(workloads.scaled_object(values, svc, secured, values.gateway_cpu_target))
        if secured and svc.group:
            out.append(workloads.lag_auth(values, svc))
    out.append(jobs.live_metrics(settings, values, secured))
    out.append(jobs.warehouse(settings, values, secured))
    return out


class _Dumper(yaml.SafeDumper):
    # Probes share one dict: plain copies, not YAML anchors, read better in review.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(manifest: Manifest) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False)


def to_yaml(manifests: Iterable[Manifest]) -> str:
    return "".join("---\n" + dump(m) for m in manifests)


def file_name(index: int, manifest: Manifest) -> str:
    """``NNN-kind-name.yaml``: sorted by name, the files apply in render order."""
    name = re.sub(r"[^a-z0-9.-]", "-", manifest["metadata"]["name"].lower())
    return f"{index:03d}-{manifest['kind'].lower()}-{name}.yaml"


def write(manifests: Sequence[Manifest], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # A stale file from an earlier render would be applied too: start clean.
    for old in out_dir.glob("[0-9][0-9][0-9]-*.yaml"):
        old.unlink()
    paths = []
    for i, m in enumerate(manifests):
        path = out_dir / file_name(i, m)
        path.write_text(dump(m))
        paths.append(path)
    return paths
