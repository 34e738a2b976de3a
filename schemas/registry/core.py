"""The registry's state and rules, independent of HTTP and of storage.

:class:`Registry` answers the Confluent API's questions (ids, subjects,
versions, compatibility levels) from memory and writes every change through
its :class:`~schemas.registry.store.Store` before applying it, so a restart
that replays the store rebuilds exactly the same state. One lock serialises
writes; reads are plain dictionary lookups.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cosmic.errors import StoreError
from schemas.errors import (
    IncompatibleRegistration,
    InvalidCompatibilityLevel,
    InvalidVersion,
    SchemaNotFound,
    StoreFailure,
    SubjectConfigNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
)
from schemas.registry import compatibility
from schemas.registry.compatibility import Compatibility, ParsedSchema
from schemas.registry.store import Record, Store, config_key, schema_key

DEFAULT_COMPATIBILITY = Compatibility.BACKWARD


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema: ParsedSchema
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "version": self.version, "id": self.id, "schema": self.schema_text}

    @property
    def schema_text(self) -> str:
        return self.schema.text


def level(value: str) -> Compatibility:
    try:
        return Compatibility(value.upper())
    except (ValueError, AttributeError):
        allowed = ", ".join(c.value for c in Compatibility)
        raise InvalidCompatibilityLevel(
            f"invalid compatibility level {value!r}; use one of {allowed}"
        ) from None


class Registry:
    """Subjects, versions, ids and compatibility levels, persisted through a store."""

    def __init__(self, store: Store, default: Compatibility = DEFAULT_COMPATIBILITY) -> None:
        self._store = store
        self._default = default
        self._lock = threading.RLock()
        self._ids: dict[int, ParsedSchema] = {}
        self._id_by_canonical: dict[str, int] = {}
        self._subjects: dict[str, dict[int, SchemaVersion]] = {}
        self._config: dict[str | None, Compatibility] = {}
        for key, value in store.replay():
            self._apply(key, value)

    def close(self) -> None:
        self._store.close()

    # -- applying changes -------------------------------------------------

    def _apply(self, key: Record, value: Record | None) -> None:
        if key.get("keytype") == "CONFIG":
            subject = key.get("subject")
            if value is None:
                self._config.pop(subject, None)
            else:
                self._config[subject] = Compatibility(value["compatibilityLevel"])
        elif key.get("keytype") == "SCHEMA":
            subject, version = key["subject"], int(key["version"])
            versions = self._subjects.setdefault(subject, {})
            if value is None:
                versions.pop(version, None)
                if not versions:
                    del self._subjects[subject]
                return
            parsed = ParsedSchema(value["schema"])
            sid = int(value["id"])
            self._ids.setdefault(sid, parsed)
            self._id_by_canonical.setdefault(parsed.canonical, sid)
            versions[version] = SchemaVersion(subject, version, sid, parsed, bool(value.get("deleted")))
        # Unknown key types (e.g. written by a newer registry) are skipped, not fatal.

    def _write(self, key: Record, value: Record | None) -> None:
        try:
            self._store.append(key, value)
        except StoreError as exc:
            raise StoreFailure(f"could not persist the change: {exc}") from exc
        self._apply(key, value)

    # -- reads ------------------------------------------------------------

    # Reads take the lock too: the HTTP server answers from several threads, and
    # iterating a dictionary while a write resizes it would fail.

    def subjects(self, include_deleted: bool = False) -> list[str]:
        with self._lock:
            return sorted(
                s for s, vs in self._subjects.items()
                if include_deleted or any(not v.deleted for v in vs.values())
            )

    def _versions(self, subject: str, include_deleted: bool = False) -> list[SchemaVersion]:
        with self._lock:
            versions = dict(self._subjects.get(subject) or {})
        if not versions:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        live = [v for _, v in sorted(versions.items()) if include_deleted or not v.deleted]
        if not live:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return live

    def versions(self, subject: str, include_deleted: bool = False) -> list[int]:
        return [v.version for v in self._versions(subject, include_deleted)]

    def version(self, subject: str, version: str | int, include_deleted: bool = False) -> SchemaVersion:
        versions = self._versions(subject, include_deleted=True)
        live = [v for v in versions if include_deleted or not v.deleted]
        if str(version) in ("latest", "-1"):
            if not live:
                raise VersionNotFound(f"Subject '{subject}' has no live version.")
            return live[-1]
        number = parse_version(version)
        for v in live:
            if v.version == number:
                return v
        raise VersionNotFound(f"Version {number} not found for subject '{subject}'.")

    def schema(self, schema_id: int) -> ParsedSchema:
        try:
            return self._ids[schema_id]
        except KeyError:
            raise SchemaNotFound(f"Schema {schema_id} not found") from None

    def usages(self, schema_id: int) -> list[tuple[str, int]]:
        """(subject, version) pairs using an id; raises if the id is unknown."""
        self.schema(schema_id)
        with self._lock:
            return [
                (s, v.version) for s, vs in sorted(self._subjects.items())
                for v in vs.values() if v.id == schema_id and not v.deleted
            ]

    def lookup(self, subject: str, schema: ParsedSchema, include_deleted: bool = False) -> SchemaVersion:
        for v in reversed(self._versions(subject, include_deleted)):
            if v.schema.canonical == schema.canonical:
                return v
        raise SchemaNotFound(f"Schema not found under subject '{subject}'")

    def compatibility(self, subject: str | None = None) -> Compatibility:
        """The level in force for ``subject``: its own, else the global one."""
        if subject is not None and subject in self._config:
            return self._config[subject]
        return self._config.get(None, self._default)

    def own_compatibility(self, subject: str) -> Compatibility:
        try:
            return self._config[subject]
        except KeyError:
            raise SubjectConfigNotFound(f"Subject '{subject}' does not have subject-level compatibility configured") from None

    def problems(self, subject: str, schema: ParsedSchema, version: str | int | None = None) -> list[str]:
        """Why ``schema`` may not be registered under ``subject`` (against ``version``, or per its mode)."""
        if subject not in self._subjects:
            if version is None:
                return []
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        try:
            live = self._versions(subject)
        except SubjectNotFound:
            return []
        mode = self.compatibility(subject)
        if version is not None:
            target = self.version(subject, version)
            if mode is Compatibility.NONE:
                return []
            # Against one given version the transitive flag has nothing to add.
            one = Compatibility(mode.value.removesuffix("_TRANSITIVE"))
            return compatibility.check(one, schema, [(target.version, target.schema)])
        return compatibility.check(mode, schema, [(v.version, v.schema) for v in live])

    # -- writes -----------------------------------------------------------

    def register(self, subject: str, schema: ParsedSchema) -> SchemaVersion:
        with self._lock:
            if subject in self._subjects:
                try:
                    return self.lookup(subject, schema)
                except (SchemaNotFound, SubjectNotFound):
                    pass
            problems = self.problems(subject, schema)
            if problems:
                # Each problem starts with the mode that refused it.
                raise IncompatibleRegistration(
                    f"Schema being registered is incompatible with an earlier schema for subject "
                    f"'{subject}': " + "; ".join(problems)
                )
            sid = self._id_by_canonical.get(schema.canonical) or max(self._ids, default=0) + 1
            version = max(self._subjects.get(subject, {}), default=0) + 1
            self._write(
                schema_key(subject, version),
                {"subject": subject, "version": version, "id": sid,
                 "schema": schema.text, "deleted": False},
            )
            return self._subjects[subject][version]

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        with self._lock:
            all_versions = self._versions(subject, include_deleted=True)
            live = [v for v in all_versions if not v.deleted]
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(
                        f"Subject '{subject}' was not deleted first before being permanently deleted"
                    )
                for v in all_versions:
                    self._write(schema_key(subject, v.version), None)
                return [v.version for v in all_versions]
            if not live:
                raise SubjectSoftDeleted(
                    f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
                )
            for v in live:
                self._mark_deleted(v)
            return [v.version for v in live]

    def delete_version(self, subject: str, version: str | int, permanent: bool = False) -> int:
        with self._lock:
            target = self.version(subject, version, include_deleted=permanent)
            if permanent:
                if not target.deleted:
                    raise VersionNotSoftDeleted(
                        f"Subject '{subject}' Version {target.version} was not deleted first before being permanently deleted"
                    )
                self._write(schema_key(subject, target.version), None)
            else:
                self._mark_deleted(target)
            return target.version

    def _mark_deleted(self, v: SchemaVersion) -> None:
        self._write(
            schema_key(v.subject, v.version),
            {"subject": v.subject, "version": v.version, "id": v.id,
             "schema": v.schema_text, "deleted": True},
        )

    def set_compatibility(self, value: str, subject: str | None = None) -> Compatibility:
        with self._lock:
            new = level(value)
            self._write(config_key(subject), {"compatibilityLevel": new.value})
            return new

    def delete_compatibility(self, subject: str) -> Compatibility:
        with self._lock:
            old = self.own_compatibility(subject)
            self._write(config_key(subject), None)
            return old


def parse_version(version: str | int) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise InvalidVersion(
            f"The specified version '{version}' is not a valid version id. Allowed values are "
            "between [1, 2^31-1] and the string \"latest\""
        )
    return number
