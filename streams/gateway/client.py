"""A Python client of the gateway, over gRPC or WebSocket (asyncio).

    async with GrpcClient("127.0.0.1:18091", token=TOKEN) as gw:
        reply = await gw.submit("demo:w", {"type": "RemoveBody", "body_id": 7})
        outcome = await gw.outcome(reply.command_id, timeout=10)  # applied, or rejected
        async for frame, replica in gw.watch("demo:w", (0, 0, 0), 2.0):
            print(replica.tick, len(replica.bodies))

Frames come as raw bytes too (``frames``), which is what the tests compare
between the faces. :class:`~.replica.Replica` rebuilds the view from them.
The token (``cosmic auth token --player me`` prints a development one) goes
with every call as ``authorization: Bearer``; the sender is its player.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson

from ._proto import gateway_pb2 as pb
from .grpc_face import SERVICE
from .replica import Replica


def _ident(data: bytes) -> bytes:
    return data


def _vec3(v: Sequence[float]) -> pb.Vec3:
    x, y, z = (float(c) for c in v)
    return pb.Vec3(x=x, y=y, z=z)


def sphere_view(center: Sequence[float], radius: float) -> pb.View:
    return pb.View(center=_vec3(center), radius=radius)


def box_view(low: Sequence[float], high: Sequence[float]) -> pb.View:
    """An axis-aligned box from its min corner to its max corner."""
    return pb.View(box=pb.Box(min=_vec3(low), max=_vec3(high)))


def subscribe_request(world_id: str, center: Sequence[float], radius: float,
                      max_bytes_per_s: int = 0) -> pb.SubscribeRequest:
    """A subscription in the PREDICTED encoding (the smaller one; the replica decodes both)."""
    return pb.SubscribeRequest(world_id=world_id, max_bytes_per_s=max_bytes_per_s,
                               view=sphere_view(center, radius), encoding=pb.PREDICTED)


async def replicas(frames: AsyncIterator[bytes]) -> AsyncIterator[tuple[pb.Frame, Replica]]:
    replica = Replica()
    async for data in frames:
        frame = pb.Frame.FromString(data)
        replica.apply(frame)
        yield frame, replica


class GrpcClient:
    """A gRPC client of the gateway; over TLS when given ``ca`` (the PEM file of the CA
    that signed the gateway's certificate, or True for the system's trust store)."""

    def __init__(self, address: str, token: str | None = None,
                 ca: Path | bool | None = None) -> None:
        if ca is None or ca is False:
            self.channel = grpc.aio.insecure_channel(address)
        else:
            roots = None if ca is True else Path(ca).read_bytes()
            self.channel = grpc.aio.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=roots))
        self.token = token

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    async def __aenter__(self) -> GrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()

    def _unary(self, name: str) -> Any:
        return self.channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=_ident,
                                        response_deserializer=_ident)

    async def submit(self, world_id: str, command: dict[str, Any],
                     command_id: uuid.UUID | None = None) -> pb.SubmitCommandReply:
        request = pb.SubmitCommandRequest(
            world_id=world_id, command_json=orjson.dumps(command).decode(),
            command_id=str(command_id) if command_id else "")
        return pb.SubmitCommandReply.FromString(await self._unary("SubmitCommand")(
            request.SerializeToString(), metadata=self.metadata))

    async def outcome(self, command_id: str | uuid.UUID, timeout: float = 30.0
                      ) -> pb.CommandOutcome:
        """The command's outcome once decided (APPLIED with its tick, or REJECTED with
        the reason); raises TimeoutError if it is still pending after ``timeout``
        seconds, and grpc.aio.AioRpcError NOT_FOUND for an id the gateway never admitted."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            request = pb.GetOutcomeRequest(command_id=str(command_id),
                                           wait_ms=max(0, int(left * 1000)))
            reply = pb.CommandOutcome.FromString(
                await self._unary("GetOutcome")(request.SerializeToString(),
                                                metadata=self.metadata))
            if reply.state != pb.CommandOutcome.PENDING:
                return reply
            if time.monotonic() >= deadline:
                raise TimeoutError(f"command {command_id} still pending after {timeout:g}s")

    async def worlds(self) -> pb.ListWorldsReply:
        return pb.ListWorldsReply.FromString(
            await self._unary("ListWorlds")(b"", metadata=self.metadata))

    async def snapshot(self, request: pb.SubscribeRequest) -> pb.Frame:
        return pb.Frame.FromString(await self._unary("GetSnapshot")(
            request.SerializeToString(), metadata=self.metadata))

    async def frames(self, request: pb.SubscribeRequest) -> AsyncIterator[bytes]:
        call = self.channel.unary_stream(f"/{SERVICE}/Subscribe", request_serializer=_ident,
                                         response_deserializer=_ident)(
            request.SerializeToString(), metadata=self.metadata)
        try:
            async for data in call:
                yield data
        finally:
            call.cancel()

    def watch(self, world_id: str, center: Sequence[float], radius: float
              ) -> AsyncIterator[tuple[pb.Frame, Replica]]:
        return replicas(self.frames(subscribe_request(world_id, center, radius)))


async def websocket_frames(session: aiohttp.ClientSession, url: str,
                           request: pb.SubscribeRequest, token: str | None = None
                           ) -> AsyncIterator[bytes]:
    """Subscribe over ``url`` (``http://host:port/ws``) with permessage-deflate."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.ws_connect(url, compress=15, headers=headers) as ws:
        await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            yield msg.data
