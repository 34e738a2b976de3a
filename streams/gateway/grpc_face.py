"""The gRPC face: the methods of schemas/gateway.proto over grpcio's asyncio server.

Handlers are registered as generic handlers whose responses are the core's
bytes as they are (an identity serializer), so a Subscribe message is
byte-for-byte the WebSocket frame for the same view. A domain error ends the
call with the status from :data:`.errors.STATUS`; nothing else is touched.

Every call authenticates with the metadata ``authorization: Bearer <token>``;
a rate-limited call ends with RESOURCE_EXHAUSTED and the trailing metadata
``retry-after`` (seconds, decimal).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ._proto import gateway_pb2 as pb
from .core import GatewayCore
from .errors import BadRequest, MessageTooLarge, is_refusal, retry_after, status_of
from .guard import Caller, bearer

SERVICE = "cosmicgarden.gateway.v1.Gateway"
Unary = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
log = logging.getLogger(__name__)


def _identity(data: bytes) -> bytes:
    return data


class GrpcFace:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.max_bytes = core.settings.max_message_bytes

    def _parse(self, kind: Any, data: bytes) -> Any:
        if len(data) > self.max_bytes:
            raise MessageTooLarge(f"message of {len(data)} bytes; at most {self.max_bytes}")
        try:
            return kind.FromString(data)
        except DecodeError:
            raise BadRequest(f"not a {kind.DESCRIPTOR.name} message") from None

    async def _fail(self, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        refusal = is_refusal(exc)
        if not refusal:
            log.error("gRPC call failed", exc_info=exc)
        wait = retry_after(exc)
        if wait is not None:
            context.set_trailing_metadata((("retry-after", f"{wait:.3f}"),))
        await context.abort(status_of(exc).grpc, str(exc) if refusal else "internal error")

    def _guard(self, fn: Unary) -> Unary:
        """End the call with the table's status for any error but an abort."""
        async def call(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                return await fn(data, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status, this call only
                await self._fail(context, exc)
                raise AssertionError("abort returned") from None
        return call

    @staticmethod
    def caller(context: grpc.aio.ServicerContext) -> Caller:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                token = bearer(value if isinstance(value, str) else value.decode())
        peer = context.peer() or ""
        return Caller("grpc", token, peer, peer)

    async def submit(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        caller = self.caller(context)
        try:
            request = self._parse(pb.SubmitCommandRequest, data)
        except Exception as exc:
            self.core.guard.record(caller, "submit", "REJECTED", None, str(exc))
            raise
        return (await self.core.submit(request, caller)).SerializeToString()

    async def subscribe(self, data: bytes, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[bytes]:
        try:
            subscription = self.core.subscribe(self._parse(pb.SubscribeRequest, data),
                                               self.caller(context))
        except Exception as exc:  # noqa: BLE001 - mapped to a status, this call only
            await self._fail(context, exc)
            return
        try:
            await context.send_initial_metadata((("subscription-id", subscription.id),))
            async for frame in self.core.metrics.stream("grpc", subscription.frames()):
                yield frame
        except Exception as exc:  # noqa: BLE001 - a ban mid-stream ends this call only
            await self._fail(context, exc)
        finally:
            subscription.close()

    async def move(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        identity = self.core.watch(self.caller(context))
        self.core.move(self._parse(pb.MoveViewRequest, data), identity)
        return pb.MoveViewReply().SerializeToString()

    async def snapshot(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return self.core.snapshot(self._parse(pb.SubscribeRequest, data), self.caller(context))

    async def list_worlds(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.core.watch(self.caller(context))
        return self.core.worlds().SerializeToString()

    async def outcome(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.core.watch(self.caller(context))
        request = self._parse(pb.GetOutcomeRequest, data)
        return (await self.core.outcome(request)).SerializeToString()

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Unary) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                self._guard(fn), request_deserializer=_identity, response_serializer=_identity)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "SubmitCommand": unary(self.submit),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self.subscribe, request_deserializer=_identity, response_serializer=_identity),
            "MoveView": unary(self.move),
            "GetSnapshot": unary(self.snapshot),
            "ListWorlds": unary(self.list_worlds),
            "GetOutcome": unary(self.outcome),
        })


async def serve(core: GatewayCore, host: str, port: int,
                tls: tuple[bytes, bytes] | None = None) -> tuple[grpc.aio.Server, int]:
    """A started server on ``host:port`` (0: any free port), over TLS with ``tls``
    (private key, certificate chain); returns it and its port."""
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", core.settings.max_message_bytes)])
    server.add_generic_rpc_handlers((GrpcFace(core).handler(),))
    bound = (server.add_insecure_port(f"{host}:{port}") if tls is None else
             server.add_secure_port(f"{host}:{port}", grpc.ssl_server_credentials([tls])))
    await server.start()
    return server, bound
