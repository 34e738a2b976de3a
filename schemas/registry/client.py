"""A caching client for any Confluent-compatible schema registry.

Works against the embedded registry and against Confluent, Karapace or
Apicurio's ccompat API alike: only the documented REST API is used. Ids are
immutable, so ``id -> schema`` and ``(subject, schema) -> id`` answers are
cached for the life of the client; "latest" answers are not (they change).
Refusals come back as the typed errors of :mod:`schemas.errors`, chosen by
Confluent error code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from cosmic.breaker import breaker
from cosmic.settings import Settings
from schemas.errors import BY_CODE, RegistryError
from schemas.registry.compatibility import ParsedSchema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

SchemaLike = str | dict[str, Any] | ParsedSchema


def _parsed(schema: SchemaLike) -> ParsedSchema:
    return schema if isinstance(schema, ParsedSchema) else ParsedSchema(schema)


def _seg(subject: str) -> str:
    return quote(subject, safe="")


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    id: int
    schema: ParsedSchema


@dataclass(frozen=True, slots=True)
class CompatibilityResult:
    is_compatible: bool
    messages: list[str]


class RegistryClient:
    """Talks to the registry at ``url``; safe to share between threads."""

    def __init__(self, url: str, timeout_s: float = 10.0,
                 auth: tuple[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        # HTTP basic credentials, sent with every request: the registry asks for them on
        # writes (reads ignore them).
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout_s, auth=auth,
            headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE},
        )
        self._lock = threading.Lock()
        # Shared by every client of this registry in the process: one that found it down
        # spares the others their connect timeouts.
        self._breaker = breaker("registry", self.url)
        self._by_id: dict[int, ParsedSchema] = {}
        self._ids: dict[tuple[str, str], int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        return cls(settings.registry.url, auth=settings.registry.auth())

    @classmethod
    def for_url(cls, settings: Settings, url: str | None) -> RegistryClient:
        """A client of ``url`` (default: the settings' registry). The settings'
        credentials go only to the settings' registry, never to another URL."""
        target = (url or settings.registry.url).rstrip("/")
        ours = target == settings.registry.url.rstrip("/")
        return cls(target, auth=settings.registry.auth() if ours else None)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items() if v is not None}
        if (wait_s := self._breaker.allow()) is not None:
            raise RegistryError(self._breaker.refusal(wait_s))
        try:
            response = self._http.request(method, path, json=body, params=query)
        except httpx.HTTPError as exc:
            self._breaker.failed(exc)
            raise RegistryError(f"schema registry at {self.url} unreachable: {exc}") from None
        if response.status_code >= 500:
            self._breaker.failed(f"HTTP {response.status_code}")
        else:
            self._breaker.succeeded()  # it answered: up, whatever it said
        if response.is_success:
            return response.json() if response.content else None
        try:
            payload = response.json()
            code, message = int(payload.get("error_code", -1)), str(payload.get("message", ""))
        except (ValueError, AttributeError):
            code, message = -1, response.text[:200]
        kind = BY_CODE.get(code)
        if kind is not None:
            raise kind(message)
        raise RegistryError(
            f"schema registry answered {response.status_code} to {method} {path}: {message}",
            status=response.status_code, error_code=code,
        )

    # -- schemas ----------------------------------------------------------

    def register(self, subject: str, schema: SchemaLike) -> int:
        """Register ``schema`` under ``subject`` (idempotent); returns its global id."""
        parsed = _parsed(schema)
        key = (subject, parsed.canonical)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        answer = self._call("POST", f"/subjects/{_seg(subject)}/versions", {"schema": parsed.text})
        sid = int(answer["id"])
        with self._lock:
            self._ids[key] = sid
            self._by_id.setdefault(sid, parsed)
        return sid

    def schema(self, schema_id: int) -> ParsedSchema:
        """The schema with this global id (cached forever: ids are immutable)."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        if answer.get("schemaType", "AVRO") != "AVRO":
            raise RegistryError(f"schema {schema_id} is {answer['schemaType']}, not Avro")
        parsed = ParsedSchema(answer["schema"])
        with self._lock:
            self._by_id[schema_id] = parsed
        return parsed

    def lookup(self, subject: str, schema: SchemaLike) -> RegisteredSchema:
        """The version of ``subject`` holding ``schema``; raises SchemaNotFound when none does."""
        parsed = _parsed(schema)
        key = (subject, parsed.canonical)
        answer = self._call("POST", f"/subjects/{_seg(subject)}", {"schema": parsed.text})
        found = self._registered(answer)
        with self._lock:
            self._ids[key] = found.id
        return found

    def version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        return self._registered(self._call("GET", f"/subjects/{_seg(subject)}/versions/{version}"))

    def latest(self, subject: str) -> RegisteredSchema:
        return self.version(subject, "latest")

    def _registered(self, answer: dict[str, Any]) -> RegisteredSchema:
        sid = int(answer["id"])
        parsed = self._by_id.get(sid) or ParsedSchema(answer["schema"])
        with self._lock:
            self._by_id.setdefault(sid, parsed)
        return RegisteredSchema(answer["subject"], int(answer["version"]), sid, parsed)

    def subjects(self, deleted: bool = False) -> list[str]:
        return list(self._call("GET", "/subjects", deleted=deleted or None))

    def versions(self, subject: str) -> list[int]:
        return list(self._call("GET", f"/subjects/{_seg(subject)}/versions"))

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        with self._lock:
            self._ids = {k: v for k, v in self._ids.items() if k[0] != subject}
        return list(self._call("DELETE", f"/subjects/{_seg(subject)}", permanent=permanent or None))

    # -- compatibility ----------------------------------------------------

    def check(self, subject: str, schema: SchemaLike, version: int | str = "latest") -> CompatibilityResult:
        """Would ``schema`` be accepted after ``version`` of ``subject``? With the reasons if not."""
        answer = self._call(
            "POST", f"/compatibility/subjects/{_seg(subject)}/versions/{version}",
            {"schema": _parsed(schema).text}, verbose=True,
        )
        return CompatibilityResult(bool(answer["is_compatible"]), list(answer.get("messages") or []))

    def compatibility(self, subject: str | None = None) -> str:
        """The level in force (the subject's own, else the global one)."""
        if subject is None:
            return str(self._call("GET", "/config")["compatibilityLevel"])
        answer = self._call("GET", f"/config/{_seg(subject)}", defaultToGlobal=True)
        return str(answer["compatibilityLevel"])

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        path = "/config" if subject is None else f"/config/{_seg(subject)}"
        return str(self._call("PUT", path, {"compatibility": level.upper()})["compatibility"])
