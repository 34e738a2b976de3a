"""The gateway's errors, and the one table that says what each face makes of them.

A handler raises a domain error; the face it came through looks the error up in
:data:`STATUS` and ends that one call or connection with the gRPC status code,
WebSocket close code or HTTP problem it finds. Anything else is a bug, reported
as INTERNAL (1011, 500), and still ends only that client.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from cosmic.errors import CosmicError


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
STATUS: tuple[tuple[type[GatewayError], Status], ...] = (
    (InvalidView, Status(grpc.StatusCode.INVALID_ARGUMENT, 4400, 400, "invalid-view")),
    (InvalidCommand, Status(grpc.StatusCode.INVALID_ARGUMENT, 4422, 422, "invalid-command")),
    (MessageTooLarge, Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 1009, 413, "too-large")),
    (BadRequest, Status(grpc.StatusCode.INVALID_ARGUMENT, 1007, 400, "bad-request")),
    (UnknownWorld, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-world")),
    (UnknownBody, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-body")),
    (UnknownSubscription, Status(grpc.StatusCode.NOT_FOUND, 4404, 404, "unknown-subscription")),
    (Unavailable, Status(grpc.StatusCode.UNAVAILABLE, 1013, 503, "unavailable")),
)


def status_of(error: BaseException) -> Status:
    """How every face reports ``error``."""
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    return INTERNAL
