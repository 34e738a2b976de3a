"""The gRPC and WebSocket faces over one core fed synthetic ticks (no Kafka).

What a client sees: byte-identical frames on both faces for the same view,
a negotiated permessage-deflate, and typed errors that end only the client
that caused them. Every client carries a token from the harness's
:class:`~streams.gateway.testing.TestAuth` (the WebSocket ones in ``?token=``).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from aiohttp import web

from cosmic.settings import GatewaySettings
from schemas import models
from streams.gateway import grpc_face, ws_face
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.core import GatewayCore
from streams.gateway.replica import Replica
from streams.gateway.testing import SyntheticWorld, TestAuth

pytestmark = pytest.mark.anyio
SETTINGS = GatewaySettings(position_step=1e-3, velocity_step=1e-3, client_bytes_per_s=10**9)


def ident(b: bytes) -> bytes:
    return b


class Harness:
    def __init__(self) -> None:
        self.appended: list[models.PlayerCommand] = []
        self.auth = TestAuth()
        self.token = self.auth.token("alice")
        self.core = GatewayCore(SETTINGS, self._append, self.auth.guard)
        self.world = SyntheticWorld(9, n=150)
        self.world.feed.world_id = "w"
        self.grpc_target = ""

    async def _append(self, command: models.PlayerCommand, avro: bytes | None
                      ) -> tuple[int, int]:
        self.appended.append(command)
        return 1, len(self.appended) - 1

    def step(self) -> None:
        tick = self.world.step()
        self.core.publish(tick)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def harness() -> AsyncIterator[tuple[Harness, grpc.aio.Channel, str]]:
    h = Harness()
    TOKENS["alice"] = h.token
    h.step()
    server, port = await grpc_face.serve(h.core, "127.0.0.1", 0)
    app = web.Application()
    app.add_routes(ws_face.routes(h.core))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    h.grpc_target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(h.grpc_target)
    yield h, channel, f"http://127.0.0.1:{http_port}/ws?token={h.token}"
    await channel.close()
    await server.stop(None)
    await runner.cleanup()


def subscribe_request(world: str = "w", radius: float = 5.0) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(world_id=world, view=pb.View(center=pb.Vec3(x=1.0), radius=radius))


def method(channel: grpc.aio.Channel, name: str, stream: bool = False,
           token: str | None = None):
    """A call of ``name`` that carries ``token`` (default: the harness's, for alice)."""
    path = f"/{grpc_face.SERVICE}/{name}"
    if stream:
        call = channel.unary_stream(path, request_serializer=ident, response_deserializer=ident)
    else:
        call = channel.unary_unary(path, request_serializer=ident, response_deserializer=ident)
    metadata = (("authorization", f"Bearer {token or TOKENS['alice']}"),)
    return lambda request: call(request, metadata=metadata)


TOKENS: dict[str, str] = {}


async def test_grpc_and_websocket_frames_are_byte_identical(harness):
    h, channel, url = harness
    request = subscribe_request()
    call = method(channel, "Subscribe", stream=True)(request.SerializeToString())
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=15) as ws:
        assert ws.compress == 15  # permessage-deflate negotiated
        await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
        grpc_frames = [await call.read()]
        ws_frames = [(await ws.receive()).data]
        replica = Replica()
        for _ in range(20):
            h.step()
            grpc_frames.append(await call.read())
            ws_frames.append((await ws.receive()).data)
        call.cancel()
    assert grpc_frames == ws_frames
    for data in grpc_frames:
        replica.apply(pb.Frame.FromString(data))
    assert replica.tick == h.world.tick and len(replica.bodies) > 0


async def test_a_websocket_client_moves_its_view(harness):
    h, _, url = harness
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_bytes(pb.ClientMessage(subscribe=subscribe_request(radius=0.5))
                            .SerializeToString())
        replica = Replica()
        replica.apply(pb.Frame.FromString((await ws.receive()).data))
        before = set(replica.bodies)
        await ws.send_bytes(pb.ClientMessage(move=pb.View(center=pb.Vec3(), radius=50.0))
                            .SerializeToString())
        replica.apply(pb.Frame.FromString((await ws.receive()).data))
        assert set(replica.bodies) == set(h.world.feed.latest.ids.tolist()) != before


async def test_bad_websocket_input_closes_only_that_socket(harness):
    h, _, url = harness
    async with aiohttp.ClientSession() as session:
        good = await session.ws_connect(url)
        await good.send_bytes(pb.ClientMessage(subscribe=subscribe_request()).SerializeToString())
        await good.receive()
        cases = [
            (b"\xff\xff\xff not protobuf", 1007),
            (pb.ClientMessage(subscribe=subscribe_request(radius=math.nan)).SerializeToString(),
             4400),
            (pb.ClientMessage(subscribe=subscribe_request(radius=-1)).SerializeToString(), 4400),
            (pb.ClientMessage(subscribe=subscribe_request(world="nope")).SerializeToString(),
             4404),
            (b"\x00" * (SETTINGS.max_message_bytes + 1), 1009),
        ]
        for payload, code in cases:
            ws = await session.ws_connect(url)
            await ws.send_bytes(payload)
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == code, payload[:20]
            await ws.close()
        h.step()  # the good client goes on
        frame = pb.Frame.FromString((await good.receive()).data)
        assert frame.tick == h.world.tick
        await good.close()


async def test_grpc_errors_map_to_status_codes(harness):
    h, channel, _ = harness
    subscribe = method(channel, "Subscribe", stream=True)
    for request, code in [(subscribe_request(world="nope"), grpc.StatusCode.NOT_FOUND),
                          (subscribe_request(radius=math.inf), grpc.StatusCode.INVALID_ARGUMENT)]:
        call = subscribe(request.SerializeToString())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await method(channel, "GetSnapshot")(b"\xff\xff garbage")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    submit = method(channel, "SubmitCommand")
    bad = pb.SubmitCommandRequest(world_id="w", command_json=(
        '{"type": "SpawnBody", "body_id": 1, "kind": "STAR", "mass": -1, "radius": 1,'
        ' "position": {"x": 0, "y": 0, "z": 0}, "velocity": {"x": 0, "y": 0, "z": 0}}'))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await submit(bad.SerializeToString())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "mass" in err.value.details()
    assert h.appended == []
    good = pb.SubmitCommandRequest(world_id="w", player_id="alice",
                                   command_json='{"type": "RemoveBody", "body_id": 7}')
    reply = pb.SubmitCommandReply.FromString(await submit(good.SerializeToString()))
    assert reply.command_id == str(h.appended[0].command_id)
    assert h.appended[0].command == models.RemoveBody(body_id=7)
    assert h.appended[0].player_id == "alice" and h.appended[0].admission is not None
    worlds = pb.ListWorldsReply.FromString(await method(channel, "ListWorlds")(b""))
    assert [w.world_id for w in worlds.worlds] == ["w"]
    snap = pb.Frame.FromString(await method(channel, "GetSnapshot")(
        subscribe_request().SerializeToString()))
    assert snap.snapshot and snap.tick == h.world.tick


async def test_a_grpc_client_moves_its_view_by_subscription_id(harness):
    h, channel, _ = harness
    call = method(channel, "Subscribe", stream=True)(
        subscribe_request(radius=0.5).SerializeToString())
    replica = Replica()
    replica.apply(pb.Frame.FromString(await call.read()))
    sub_id = (await call.initial_metadata())["subscription-id"]
    move = method(channel, "MoveView")
    await move(pb.MoveViewRequest(subscription_id=sub_id, view=pb.View(
        center=pb.Vec3(), radius=50.0)).SerializeToString())
    replica.apply(pb.Frame.FromString(await call.read()))
    assert set(replica.bodies) == set(h.world.feed.latest.ids.tolist())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await move(pb.MoveViewRequest(subscription_id="nope", view=pb.View(
            center=pb.Vec3(), radius=1.0)).SerializeToString())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await move(pb.MoveViewRequest(subscription_id=sub_id, view=pb.View(
            center=pb.Vec3(), radius=-2.0)).SerializeToString())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    call.cancel()


async def test_a_client_that_stops_reading_is_coalesced_and_others_go_on(harness):
    h, _, url = harness
    h.world = SyntheticWorld(10, n=3000)  # ~30 KB per frame: socket buffers fill quickly
    h.world.feed.world_id = "w"
    h.step()
    request = subscribe_request(radius=100.0).SerializeToString()
    # A small receive window and no window growth: what a phone on a bad link has.
    slow_channel = grpc.aio.insecure_channel(h.grpc_target, options=[
        ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 64 * 1024)])
    slow = method(slow_channel, "Subscribe", stream=True)(request)
    slow_replica, fast_replica = Replica(), Replica()
    slow_replica.apply(pb.Frame.FromString(await slow.read()))
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as fast:
        await fast.send_bytes(pb.ClientMessage(subscribe=pb.SubscribeRequest.FromString(
            request)).SerializeToString())
        fast_replica.apply(pb.Frame.FromString((await fast.receive()).data))
        for _ in range(60):  # the slow client reads nothing meanwhile
            h.step()
            frame = pb.Frame.FromString((await fast.receive()).data)
            fast_replica.apply(frame)
            assert frame.tick == h.world.tick  # every tick, on time
    # The slow client resumes: fewer frames than ticks, ending at the latest state.
    frames = 0
    while slow_replica.tick != h.world.tick:
        slow_replica.apply(pb.Frame.FromString(await slow.read()))
        frames += 1
    assert frames < 60
    assert slow_replica.bodies.keys() == fast_replica.bodies.keys()
    assert all(slow_replica.bodies[i].qpos == b.qpos for i, b in fast_replica.bodies.items())
    slow.cancel()
    await slow_channel.close()


async def test_watch_prints_a_line_per_interval(harness):
    from streams.gateway.client import GrpcClient
    from streams.gateway.watch import watch

    h, _, _ = harness
    lines: list[str] = []
    ticks = iter(range(100))

    def clock() -> float:  # each frame is one "second" later
        return float(next(ticks))

    async def frames_while_ticking() -> AsyncIterator[bytes]:
        async with GrpcClient(h.grpc_target, token=h.token) as gw:
            async for data in gw.frames(subscribe_request(radius=100.0)):
                yield data
                h.step()

    replica = await watch(frames_while_ticking(), lines.append, clock=clock, max_lines=3)
    assert len(lines) == 3
    assert lines[0].startswith(f"tick 1  bodies {len(h.world.feed.latest.ids)}")
    assert "B/s" in lines[0] and "latency p50" in lines[0]
    assert replica.tick == 3


async def test_a_reconnecting_client_resumes_without_a_snapshot(harness):
    h, _, url = harness
    session_id = "resume-" + "x" * 16
    request = subscribe_request(radius=100.0)
    request.session = session_id
    replica = Replica()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
            replica.apply(pb.Frame.FromString((await ws.receive()).data))
            for _ in range(2):
                h.step()
                replica.apply(pb.Frame.FromString((await ws.receive()).data))
        await asyncio.sleep(0.1)  # the gateway notices the socket is gone
        for _ in range(2):
            h.step()  # ticks the client misses
        request.resume_tick = replica.tick
        async with session.ws_connect(url) as ws:
            await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
            frame = pb.Frame.FromString((await ws.receive()).data)
            assert not frame.snapshot and frame.base_tick == replica.tick
            replica.apply(frame)
            assert replica.tick == h.world.tick
            assert set(replica.bodies) == set(h.world.feed.latest.ids.tolist())
        await asyncio.sleep(0.1)
        # A client whose last tick is not the gateway's gets a snapshot, and so does
        # one that names no session.
        request.resume_tick = replica.tick - 1
        async with session.ws_connect(url) as ws:
            await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
            assert pb.Frame.FromString((await ws.receive()).data).snapshot
        request.session = "short"
        async with session.ws_connect(url) as ws:
            await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1007


async def test_a_grpc_client_learns_the_outcome_and_a_retry_is_appended_once(harness):
    from streams.gateway.client import GrpcClient

    h, channel, _ = harness
    async with GrpcClient(h.grpc_target, token=h.token) as gw:
        body = {"type": "RemoveBody", "body_id": 7}
        reply = await gw.submit("w", body)
        again = await gw.submit("w", body, command_id=uuid.UUID(reply.command_id))
        assert (again.partition, again.offset) == (reply.partition, reply.offset)
        assert len(h.appended) == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.submit("w", {"type": "RemoveBody", "body_id": 8},
                            command_id=uuid.UUID(reply.command_id))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and len(h.appended) == 1

        with pytest.raises(TimeoutError):
            await gw.outcome(reply.command_id, timeout=0.05)
        waiting = asyncio.create_task(gw.outcome(reply.command_id, timeout=5))
        await asyncio.sleep(0.05)
        h.core.outcomes.tick({"world_id": "w", "tick": 42, "command_partition": reply.partition,
                              "first_command_offset": reply.offset,
                              "last_command_offset": reply.offset, "n_rejected": 0})
        outcome = await waiting
        assert outcome.state == pb.CommandOutcome.APPLIED and outcome.tick == 42

        rejected = await gw.submit("w", {"type": "RemoveBody", "body_id": 99})
        h.core.outcomes.rejection({
            "command_id": rejected.command_id, "world_id": "w", "reason": "UNKNOWN_BODY",
            "message": "no body 99", "tick": 43, "command_offset": rejected.offset},
            rejected.partition)
        outcome = await gw.outcome(rejected.command_id, timeout=5)
        assert (outcome.state, outcome.tick, outcome.reason, outcome.message) == (
            pb.CommandOutcome.REJECTED, 43, "UNKNOWN_BODY", "no body 99")

        for command_id, code in ((str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
                                 ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await gw.outcome(command_id, timeout=1)
            assert err.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await method(channel, "GetOutcome")(b"\xff\xff not protobuf")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_box_views_on_both_faces_and_a_view_that_is_both_is_refused(harness):
    from streams.gateway.client import box_view

    h, channel, url = harness
    request = pb.SubscribeRequest(world_id="w", view=box_view((-4, -4, -4), (5, 4, 4)))
    call = method(channel, "Subscribe", stream=True)(request.SerializeToString())
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
        grpc_frames = [await call.read()]
        ws_frames = [(await ws.receive()).data]
        replica = Replica()
        replica.apply(pb.Frame.FromString(grpc_frames[0]))
        for _ in range(5):
            h.step()
            grpc_frames.append(await call.read())
            ws_frames.append((await ws.receive()).data)
            replica.apply(pb.Frame.FromString(grpc_frames[-1]))
        # Moving to a box far away empties the view.
        await ws.send_bytes(pb.ClientMessage(move=box_view((90, 90, 90), (91, 91, 91)))
                            .SerializeToString())
        moved = Replica()
        for data in ws_frames:
            moved.apply(pb.Frame.FromString(data))
        moved.apply(pb.Frame.FromString((await ws.receive()).data))
        assert moved.bodies == {}
    call.cancel()
    assert grpc_frames == ws_frames and replica.bodies

    both = box_view((0, 0, 0), (1, 1, 1))
    both.radius = 2.0
    half = pb.View(box=pb.Box(max=pb.Vec3(x=1, y=1, z=1)))
    flat = box_view((0, 0, 0), (1, 1, 0))
    async with aiohttp.ClientSession() as session:
        for view in (both, half, flat):
            async with session.ws_connect(url) as bad:
                await bad.send_bytes(pb.ClientMessage(subscribe=pb.SubscribeRequest(
                    world_id="w", view=view)).SerializeToString())
                msg = await bad.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and bad.close_code == 4400, view
            bad_call = method(channel, "Subscribe", stream=True)(
                pb.SubscribeRequest(world_id="w", view=view).SerializeToString())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await bad_call.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
