"""Errors of the event-contract layer, split by side and kind.

Decoding failures derive from :class:`cosmic.errors.SerializationError` so a
consumer can catch one family and dead-letter the record; registry failures
(HTTP, compatibility) derive from :class:`RegistryError`.
"""

from __future__ import annotations

from cosmic.errors import CosmicError, SerializationError


class UnknownSchema(SerializationError):
    """No ``.avsc`` with this name ships with the platform, or no schema is mapped to a topic."""


class MalformedPayload(SerializationError):
    """The bytes are not a valid record of the writer's schema."""


class TruncatedPayload(MalformedPayload):
    """The bytes end before the record (or the 5-byte header) does."""


class UnknownMagicByte(MalformedPayload):
    """The first byte is not the Confluent wire-format magic byte 0."""

    def __init__(self, magic: int) -> None:
        super().__init__(f"unknown magic byte {magic:#04x}: not Confluent wire format (expected 0x00)")
        self.magic = magic


class UnknownSchemaId(SerializationError):
    """The schema id in the header is not known to the registry."""

    def __init__(self, schema_id: int, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(f"unknown schema id {schema_id}{extra}")
        self.schema_id = schema_id


class IncompatibleSchema(SerializationError):
    """Data written with one schema cannot be read with (or registered beside) another."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class FailedValidation(SerializationError):
    """A record decodes but breaks a rule of its model (a negative mass, an empty id...)."""


class InvalidRecord(SerializationError):
    """A record does not match the schema it is being encoded with."""


class ColumnarError(SerializationError):
    """A packed columnar field has a length or shape that does not fit its dtype."""


class RegistryError(CosmicError):
    """The schema registry refused a request or could not be reached.

    ``status`` is the HTTP status and ``error_code`` the Confluent error code
    (e.g. 40401 subject not found), when the registry answered.
    """

    def __init__(self, message: str, status: int | None = None, error_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class BadRequest(RegistryError):
    """The HTTP request itself is unusable: its length, its size, its JSON. (HTTP 400/413)"""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status=status, error_code=status)


class InvalidSchema(RegistryError):
    """The schema text is not a valid Avro schema (Confluent 42201)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=422, error_code=42201)



# Confluent's HTTP status and error code of each refusal, so the server and the
# client translate errors through one table.

class Unauthorized(RegistryError):
    """A write without the registry's credentials. (HTTP 401, Confluent 40101)"""

    STATUS, CODE = 401, 40101

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class SubjectNotFound(RegistryError):
    """No such subject. (HTTP 404, Confluent 40401)"""

    STATUS, CODE = 404, 40401

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class VersionNotFound(RegistryError):
    """No such version of the subject. (HTTP 404, Confluent 40402)"""

    STATUS, CODE = 404, 40402

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class SchemaNotFound(RegistryError):
    """No such schema, or no such schema id. (HTTP 404, Confluent 40403)"""

    STATUS, CODE = 404, 40403

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class SubjectSoftDeleted(RegistryError):
    """The subject was soft-deleted. (HTTP 404, Confluent 40404)"""

    STATUS, CODE = 404, 40404

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class SubjectNotSoftDeleted(RegistryError):
    """A permanent delete of a subject that was not soft-deleted first. (HTTP 404, Confluent 40405)"""

    STATUS, CODE = 404, 40405

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class VersionNotSoftDeleted(RegistryError):
    """A permanent delete of a version that was not soft-deleted first. (HTTP 404, Confluent 40407)"""

    STATUS, CODE = 404, 40407

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class SubjectConfigNotFound(RegistryError):
    """The subject has no compatibility level of its own. (HTTP 404, Confluent 40408)"""

    STATUS, CODE = 404, 40408

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class IncompatibleRegistration(RegistryError):
    """The schema breaks the subject's compatibility rule. (HTTP 409, Confluent 409)"""

    STATUS, CODE = 409, 409

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class InvalidVersion(RegistryError):
    """A version is neither a positive integer nor 'latest'. (HTTP 422, Confluent 42202)"""

    STATUS, CODE = 422, 42202

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class InvalidCompatibilityLevel(RegistryError):
    """An unknown compatibility level. (HTTP 422, Confluent 42203)"""

    STATUS, CODE = 422, 42203

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


class StoreFailure(RegistryError):
    """The registry's backing store failed. (HTTP 500, Confluent 50001)"""

    STATUS, CODE = 500, 50001

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.STATUS, error_code=self.CODE)


BY_CODE: dict[int, type[RegistryError]] = {
    Unauthorized.CODE: Unauthorized,
    SubjectNotFound.CODE: SubjectNotFound,
    VersionNotFound.CODE: VersionNotFound,
    SchemaNotFound.CODE: SchemaNotFound,
    SubjectSoftDeleted.CODE: SubjectSoftDeleted,
    SubjectNotSoftDeleted.CODE: SubjectNotSoftDeleted,
    VersionNotSoftDeleted.CODE: VersionNotSoftDeleted,
    SubjectConfigNotFound.CODE: SubjectConfigNotFound,
    IncompatibleRegistration.CODE: IncompatibleRegistration,
    InvalidVersion.CODE: InvalidVersion,
    InvalidCompatibilityLevel.CODE: InvalidCompatibilityLevel,
    StoreFailure.CODE: StoreFailure,
    42201: InvalidSchema,
}
