"""The WebSocket face: the same protobuf messages as binary frames, over aiohttp.

A client connects to ``/ws`` (permessage-deflate is offered and used when the
client accepts it), sends a ``ClientMessage`` with a ``subscribe``, then may
send ``move`` messages at any time. The server sends each ``Frame`` as one
binary message, the very bytes gRPC's Subscribe sends. Bad input closes that
one socket with the close code from :data:`.errors.STATUS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError

from ._proto import gateway_pb2 as pb
from .core import GatewayCore, Subscription
from .errors import BadRequest, GatewayError, MessageTooLarge, status_of

log = logging.getLogger(__name__)


class WebSocketFace:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.max_bytes = core.settings.max_message_bytes

    def _parse(self, data: bytes) -> pb.ClientMessage:
        if len(data) > self.max_bytes:
            raise MessageTooLarge(f"message of {len(data)} bytes; at most {self.max_bytes}")
        try:
            return pb.ClientMessage.FromString(data)
        except DecodeError:
            raise BadRequest("not a ClientMessage") from None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=True, max_msg_size=self.max_bytes + 1)
        await ws.prepare(request)
        self.core.metrics.opened("websocket")
        sender: asyncio.Task[None] | None = None
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type != WSMsgType.BINARY:
                    raise BadRequest("frames must be binary protobuf ClientMessages")
                message = self._parse(msg.data)
                if message.HasField("subscribe"):
                    if sender is not None:
                        raise BadRequest("already subscribed")
                    subscription = self.core.subscribe(message.subscribe)
                    sender = asyncio.create_task(self._send(ws, subscription))
                elif message.HasField("move"):
                    if sender is None:
                        raise BadRequest("move before subscribe")
                    subscription.move(message.move)
                else:
                    raise BadRequest("an empty ClientMessage")
        except GatewayError as exc:
            await ws.close(code=status_of(exc).ws_close, message=str(exc)[:120].encode())
        except Exception as exc:
            log.exception("websocket client failed")
            await ws.close(code=status_of(exc).ws_close, message=b"internal error")
        finally:
            self.core.metrics.closed("websocket")
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
        return ws

    async def _send(self, ws: web.WebSocketResponse, subscription: Subscription) -> None:
        async for frame in subscription.frames():
            if ws.closed:
                return
            await ws.send_bytes(frame)


def routes(core: GatewayCore) -> list[web.RouteDef]:
    return [web.get("/ws", WebSocketFace(core).handle)]
