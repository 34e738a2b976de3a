"""The WebSocket face: the same protobuf messages as binary frames, over aiohttp.

A client connects to ``/ws`` (permessage-deflate is offered and used when the
client accepts it), sends a ``ClientMessage`` with a ``subscribe``, then may
send ``move`` messages at any time. The server sends each ``Frame`` as one
binary message, the very bytes gRPC's Subscribe sends. Bad input closes that
one socket with the close code from :data:`.errors.STATUS`.

Authentication: the token comes in the ``Authorization: Bearer`` header of the
upgrade request or, since browsers cannot set headers on a WebSocket, in the
``token`` query parameter (``/ws?token=<jwt>``; keep such URLs out of logs).
It is checked when the client subscribes: no valid token closes the socket
with 4401, a limit with 4429 (the reason says when to retry), and a ban
during the subscription closes it with 4401 too.
When the gateway stops, every open socket is closed with 1001 (going away), so
clients reconnect to the next one at once instead of holding a socket to a
gateway that no longer listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSCloseCode, WSMsgType, web
from google.protobuf.message import DecodeError

from . import deflate
from ._proto import gateway_pb2 as pb
from .core import GatewayCore, Subscription
from .errors import BadRequest, MessageTooLarge, is_refusal, retry_after, status_of
from .guard import Caller, bearer

log = logging.getLogger(__name__)


class WebSocketFace:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.max_bytes = core.settings.max_message_bytes
        self.sockets: set[web.WebSocketResponse] = set()
        deflate.install()  # every client's frames are deflated: the faster deflate

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
        peer = request.remote or ""
        caller = Caller("ws", bearer(request.headers.get("Authorization"))
                        or request.query.get("token") or None, peer, f"ws:{id(ws)}")
        sender: asyncio.Task[None] | None = None
        subscription: Subscription | None = None
        self.sockets.add(ws)
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
                    subscription = self.core.subscribe(message.subscribe, caller)
                    sender = asyncio.create_task(self._send(ws, subscription))
                elif message.HasField("move"):
                    if sender is None or subscription is None:
                        raise BadRequest("move before subscribe")
                    subscription.move(message.move)
                else:
                    raise BadRequest("an empty ClientMessage")
        except Exception as exc:  # noqa: BLE001 - mapped to a close code, this socket only
            await self._close(ws, exc)
        finally:
            self.core.metrics.closed("websocket")
            if subscription is not None:
                subscription.close()
            self.sockets.discard(ws)
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
        return ws

    @staticmethod
    async def _close(ws: web.WebSocketResponse, exc: BaseException) -> None:
        if not is_refusal(exc):
            log.error("websocket client failed", exc_info=exc)
            await ws.close(code=status_of(exc).ws_close, message=b"internal error")
            return
        wait = retry_after(exc)
        reason = str(exc)[:100] + (f"; retry-after {wait:.3f}" if wait is not None else "")
        # A close reason is at most 123 bytes (RFC 6455).
        await ws.close(code=status_of(exc).ws_close, message=reason.encode()[:123])

    async def _send(self, ws: web.WebSocketResponse, subscription: Subscription) -> None:
        try:
            async for frame in subscription.frames():
                if ws.closed:
                    return
                await ws.send_bytes(frame)
        except ConnectionError:
            return
        except Exception as exc:  # noqa: BLE001 - a ban mid-stream closes this socket only
            await self._close(ws, exc)


    async def close_all(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping")


def routes(core: GatewayCore) -> list[web.RouteDef]:
    return [web.get("/ws", WebSocketFace(core).handle)]


def setup(app: web.Application, core: GatewayCore) -> None:
    """Serve ``/ws`` on ``app``, and close its sockets when ``app`` shuts down."""
    face = WebSocketFace(core)
    app.add_routes([web.get("/ws", face.handle)])
    app.on_shutdown.append(face.close_all)
