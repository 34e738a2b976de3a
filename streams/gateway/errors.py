"""The gateway's errors, and the one table that says what each face makes of them.

A handler raises a domain error; the face it came through looks the error up in
:data:`STATUS` and ends that one call or connection with the gRPC status code,
WebSocket close code or HTTP problem it finds. Anything else is a bug, reported
as INTERNAL (1011, 500), and still ends only that client.

The security refusals (:mod:`streams.security.errors`) are in the same table:
no valid token is UNAUTHENTICATED / 4401 / 401, a role or ownership that does
not allow it is PERMISSION_DENIED / 4403 / 403, a quota is RESOURCE_EXHAUSTED
/ 4429 / 429, and each face says when to retry (gRPC trailing metadata
``retry-after``, seconds as a decimal; HTTP ``Retry-After``, whole seconds,
rounded up; the WebSocket close reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from cosmic.errors import CosmicError
from streams.security.accounts import AccountExists, AccountsUnavailable, InvalidAccount
from streams.security.errors import Forbidden, RateLimited, Unauthenticated


class GatewayError(CosmicError):
    """Root of what the gateway refuses or fails at."""


class BadRequest(GatewayError):
    """The client sent something malformed: undecodable bytes, a broken message."""


class InvalidView(BadRequest):
    """A view with a NaN, infinite or non-positive radius or a non-finite centre."""


class InvalidCommand(BadRequest):
    """A command the models refuse (unknown type, negative mass, bad id, ...)."""


class MessageTooLarge(BadRequest):
    """A client message above the gateway's size limit."""


class UnknownWorld(GatewayError):
    """No world of that id has been seen by this gateway."""

    def __init__(self, world_id: str) -> None:
        super().__init__(f"unknown world {world_id!r}")
        self.world_id = world_id


class UnknownBody(GatewayError):
    """A body the world does not hold at the gateway's latest tick."""


class UnknownSubscription(GatewayError):
    """A view move for a subscription that is not (or no longer) running here."""


class UnknownCommand(GatewayError):
    """An outcome asked for a command id this gateway never admitted (or has forgotten)."""

    def __init__(self, command_id: object) -> None:
        super().__init__(f"no command {str(command_id)!r} was admitted by this gateway "
                         "(or it is older than the gateway remembers)")


class CommandIdInUse(GatewayError):
    """A command id this gateway admitted for a different command (world, player or body)."""

    def __init__(self, command_id: object) -> None:
        super().__init__(f"command id {str(command_id)!r} was already used for a different "
                         "command; a retry must repeat the command exactly")


class Unavailable(GatewayError):
    """The log (Kafka) did not take a command in time; the client may retry."""


@dataclass(frozen=True, slots=True)
class Status:
    grpc: grpc.StatusCode
    ws_close: int  # RFC 6455 codes; 4000-4999 are ours
    http: int
    problem: str  # the HTTP problem type's last path segment


INTERNAL = Status(grpc.StatusCode.INTERNAL, 1011, 500, "internal")

# Most specific first: the first class an error is an instance of wins.
STATUS: tuple[tuple[type[CosmicError], Status], ...] = (
    (Unauthenticated, Status(grpc.StatusCode.UNAUTHENTICATED, 4401, 401, "unauthenticated")),
    (Forbidden, Status(grpc.StatusCode.PERMISSION_DENIED, 4403, 403, "forbidden")),
    (RateLimited, Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 4429, 429, "rate-limited")),
    (InvalidAccount, Status(grpc.StatusCode.INVALID_ARGUMENT, 4422, 422, "invalid-account")),
    (AccountExists, Status(grpc.StatusCode.ALREADY_EXISTS, 4409, 409, "account-exists")),
    (AccountsUnavailable, Status(grpc.StatusCode.UNAVAILABLE, 1013, 503, "unavailable")),
    (InvalidView, Status(grpc.StatusCode.INVALID_ARGUMENT, 4400, 400, "invalid-view")),
    (InvalidCommand, Status(grpc.StatusCode.INVALID_ARGUMENT, 4422, 422, "invalid-command")),
    (MessageTooLarge, Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 1009, 413, "too-large")),
    (BadRequest, Status(grpc.StatusCode.INVALID_ARGUMENT, 1007, 400, "bad-request")),
    (UnknownWorld, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-world")),
    (UnknownBody, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-body")),
    (UnknownSubscription, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-subscription")),
    (UnknownCommand, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-command")),
    (CommandIdInUse, Status(grpc.StatusCode.ALREADY_EXISTS, 4409, 409, "command-id-in-use")),
    (Unavailable, Status(grpc.StatusCode.UNAVAILABLE, 1013, 503, "unavailable")),
)


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is one the table names (its message is for the client)."""
    return any(isinstance(error, kind) for kind, _ in STATUS)


def retry_after(error: BaseException) -> float | None:
    return error.retry_after_s if isinstance(error, RateLimited) else None


def status_of(error: BaseException) -> Status:
    """How every face reports ``error``."""
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    return INTERNAL
