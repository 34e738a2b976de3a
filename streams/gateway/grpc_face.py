"""The gRPC face: the four methods of schemas/gateway.proto over grpcio's asyncio server.

Handlers are registered as generic handlers whose responses are the core's
bytes as they are (an identity serializer), so a Subscribe message is
byte-for-byte the WebSocket frame for the same view. A domain error ends the
call with the status from :data:`.errors.STATUS`; nothing else is touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ._proto import gateway_pb2 as pb
from .core import GatewayCore
from .errors import BadRequest, GatewayError, MessageTooLarge, status_of

SERVICE = "cosmicgarden.gateway.v1.Gateway"


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
        await context.abort(status_of(exc).grpc, str(exc))

    async def submit(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            request = self._parse(pb.SubmitCommandRequest, data)
            return (await self.core.submit(request)).SerializeToString()
        except GatewayError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None

    async def subscribe(self, data: bytes, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[bytes]:
        try:
            subscription = self.core.subscribe(self._parse(pb.SubscribeRequest, data))
        except GatewayError as exc:
            await self._fail(context, exc)
            return
        async for frame in subscription.frames():
            yield frame

    async def snapshot(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return self.core.snapshot(self._parse(pb.SubscribeRequest, data))
        except GatewayError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None

    async def list_worlds(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return self.core.worlds().SerializeToString()

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=_identity, response_serializer=_identity)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "SubmitCommand": unary(self.submit),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self.subscribe, request_deserializer=_identity, response_serializer=_identity),
            "GetSnapshot": unary(self.snapshot),
            "ListWorlds": unary(self.list_worlds),
        })


async def serve(core: GatewayCore, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A started server on ``host:port`` (0: any free port); returns it and its port."""
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", core.settings.max_message_bytes)])
    server.add_generic_rpc_handlers((GrpcFace(core).handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
