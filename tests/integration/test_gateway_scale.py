"""The gateway on the real stack at the issue's scale: 10,000 bodies, 64 moving clients.

An in-process physics worker ticks a star system of 10,000 bodies; the gateway
reads its deltas; 32 views, each watched by one gRPC and one WebSocket client
(64 in all), move along the belt every two seconds after the first five. Four of the pairs have a
tight byte budget (and move in small steps: enters are never deferred, so what a
move brings in must fit the budget), four ask for DELTAS, the rest for PREDICTED. While they
watch, a gRPC and a WebSocket client join late, and one more WebSocket client,
the whole belt in view, reads nothing for 5 s and then reads on. The test reads
the deltas itself and checks every frame every client got:

- its set equals the set in its view (with the gateway's hysteresis, across its
  moves), enters and leaves exact, positions within the grid's bound (the tight
  clients' positions excepted: their budget defers updates);
- over every second, no client got more than its budget (plus the one-second burst);
- gRPC and WebSocket frames of the same view are byte-identical while they follow
  the same ticks, up to the first move;
- the late joiners' first frame is a snapshot, and the stalled reader, once it
  reads again, follows the world exactly and ends at its latest ticks.

On this machine (2 shared cores) the world ticks at 2 Hz, not 20; the figures the
issue asks for as measurements (late-join time, other clients' p99 latency with
and without the stalled reader) are printed (``-s``), not asserted.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import grpc
import numpy as np
import pytest

from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient
from streams.gateway.grpc_face import SERVICE
from streams.gateway.testing import stack_token
from streams.worlds import scenario
from tests.gatewayrig import gateway_rig
from tests.gatewaytruth import check_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

BODIES = 10_000
TICK_HZ = 2.0
PAIRS = 32
TIGHT = {0, 1, 2, 3}  # pairs with a budget that defers updates
TIGHT_BUDGET = 1500  # bytes/s
DELTAS = {7, 15, 23, 31}  # pairs that ask for the DELTAS encoding
BELT, VIEW_RADIUS = 2.75, 0.4  # AU: ~250 bodies in view
FIRST_MOVE_S, MOVE_EVERY_S, MOVE_RAD, TIGHT_MOVE_RAD = 5.0, 2.0, 0.12, 0.015
WATCH_S = 18.0
LATE_AT_S = 7.0
STALL_AT_S, STALL_S = 4.0, 5.0
WHOLE_BELT = pb.View(center=pb.Vec3(), radius=3.6)


def view_at(pair: int, move: int) -> pb.View:
    # Enters are never deferred (the set is always exact), so a tight budget holds only
    # if the view's moves bring in less than it: those pairs move in smaller steps.
    a = 2 * math.pi * pair / PAIRS + (TIGHT_MOVE_RAD if pair in TIGHT else MOVE_RAD) * move
    return pb.View(center=pb.Vec3(x=BELT * math.cos(a), y=BELT * math.sin(a)),
                   radius=VIEW_RADIUS)


@dataclass
class Client:
    name: str
    request: pb.SubscribeRequest
    frames: list[bytes] = field(default_factory=list)
    received: list[float] = field(default_factory=list)  # monotonic
    received_ms: list[float] = field(default_factory=list)  # wall clock, epoch ms
    moves: list[tuple[float, pb.View]] = field(default_factory=list)
    first_frame_s: float | None = None

    def take(self, data: bytes) -> None:
        self.frames.append(data)
        self.received.append(time.monotonic())
        self.received_ms.append(time.time() * 1000)


def test_ten_thousand_bodies_and_sixty_four_moving_clients(settings: Settings, stack: Stack):
    run = uuid.uuid4().hex[:10]
    shard = f"test-gwscale-{run}"
    world = f"{shard}:belt"
    registry = RegistryClient.from_settings(settings)
    with gateway_rig(settings, registry, world, f"gwscale-{run}",
                     asteroids=BODIES - 2 - len(scenario.PLANETS), tick_rate_hz=TICK_HZ,
                     snapshot_every=1000, truth=True) as rig:
        gateway, truth = rig.gateway, rig.truth
        clients, late, stalled = asyncio.run(watch(
            gateway.grpc_address, f"{gateway.http_url}ws", world,
            lambda k: stack_token(settings, f"gwscale-{k}")))
        rig.stop()
        g = rig.settings.gateway
        bound = g.position_step * math.sqrt(3) / 2
        everyone = [*clients, *late, stalled]
        truth.wait_for(max(pb.Frame.FromString(c.frames[-1]).tick for c in everyone))
    registry.close()

    # Every client, every frame: the set of its view, exactly; positions within the bound.
    for i, c in enumerate(clients):
        pair = i // 2
        assert len(c.frames) >= 20, f"{c.name}: only {len(c.frames)} frames"
        replica = check_frames(c.frames, c.moves, truth, g.view_hysteresis,
                               None if pair in TIGHT else bound, c.name, c.received)
        assert len(replica.bodies) >= 100, f"{c.name}: a view too empty to prove much"
        assert replica.predicted == (pair not in DELTAS)
    for c in late:
        assert pb.Frame.FromString(c.frames[0]).snapshot
        check_frames(c.frames, c.moves, truth, g.view_hysteresis, bound, c.name, c.received)
    # The stalled reader's budget binds (a whole-belt snapshot is more than its burst), so
    # its positions are checked where it has converged: at its end, after the stall.
    stalled_errors: list[float] = []
    replica = check_frames(stalled.frames, stalled.moves, truth, g.view_hysteresis, None,
                           stalled.name, stalled.received, stalled_errors)
    assert len(replica.bodies) >= BODIES - 50
    assert stalled_errors[-1] <= bound * (1 + 1e-9), "the stalled reader never converged"

    # Budgets: over every second of ticks, at most the budget plus the one-second burst.
    for i, c in enumerate(clients):
        budget = TIGHT_BUDGET if i // 2 in TIGHT else g.client_bytes_per_s
        frames = [pb.Frame.FromString(d) for d in c.frames[1:]]
        sizes = [(f.produced_ms, len(d)) for f, d in zip(frames, c.frames[1:], strict=True)]
        for t0, _ in sizes:
            sent = sum(n for t, n in sizes if t0 <= t < t0 + 1000)
            assert sent <= 2 * budget * 1.1, f"{c.name}: {sent} bytes in the second from {t0}"
        if i // 2 in TIGHT:  # the budget was what held it back
            assert sum(n for _, n in sizes) > budget

    # The same view on both faces: the same bytes while both follow the same ticks, until
    # the first move (the two faces' moves reach the gateway apart: a tick may fall
    # between them, and one face's frame for it then has the new view, the other's not).
    aligned = []
    for pair in range(PAIRS):
        c_a, c_b = clients[2 * pair], clients[2 * pair + 1]
        moved = min(c_a.moves[1][0], c_b.moves[1][0])
        a = [d for d, at in zip(c_a.frames, c_a.received, strict=True) if at < moved]
        b = [d for d, at in zip(c_b.frames, c_b.received, strict=True) if at < moved]
        keys_a = [(f.base_tick, f.tick) for f in map(pb.Frame.FromString, a)]
        keys_b = [(f.base_tick, f.tick) for f in map(pb.Frame.FromString, b)]
        n = next((k for k, (x, y) in enumerate(zip(keys_a, keys_b, strict=False)) if x != y),
                 min(len(a), len(b)))
        assert a[:n] == b[:n], f"view {pair}: gRPC and WebSocket frames differ"
        aligned.append(n)
    c0, c1 = clients[0], clients[1]
    # Enough frames compared for the equality to mean something. Not a count per view:
    # one stall of the test's own reading (seen in CI) makes one face of many views
    # coalesce a tick early, and their runs then end at the same few frames.
    assert sum(aligned) >= 5 * PAIRS and sum(n >= 3 for n in aligned) >= PAIRS // 2, (
        f"too few views aligned: {aligned}; pair 0: moves at "
        f"{[round(t - c0.moves[0][0], 2) for t, _ in c0.moves]} / "
        f"{[round(t - c1.moves[0][0], 2) for t, _ in c1.moves]}, frames at "
        f"{[round(t - c0.moves[0][0], 2) for t in c0.received[:12]]} / "
        f"{[round(t - c1.moves[0][0], 2) for t in c1.received[:12]]}, keys "
        f"{[(f.base_tick, f.tick) for f in map(pb.Frame.FromString, c0.frames[:12])]} / "
        f"{[(f.base_tick, f.tick) for f in map(pb.Frame.FromString, c1.frames[:12])]}")

    # The stalled reader read on: it ends at the world's latest ticks.
    frames = [pb.Frame.FromString(d) for d in stalled.frames]
    last_tick = max(pb.Frame.FromString(c.frames[-1]).tick for c in clients)
    assert frames[-1].tick >= last_tick - 2
    report(clients, late, stalled, aligned, stalled_errors, bound)


def report(clients: list[Client], late: list[Client], stalled: Client,
           aligned: list[int], stalled_errors: list[float], bound: float) -> None:
    """The figures: late joins, latency with and without the stalled reader, alignment."""
    stall_from = stalled.moves[0][0] + STALL_AT_S  # the watch's start + the stall's offset
    before, during = [], []
    for c in clients:
        for data, at, ms in zip(c.frames, c.received, c.received_ms, strict=True):
            latency = ms - pb.Frame.FromString(data).produced_ms
            if stall_from - STALL_S <= at < stall_from:
                before.append(latency)
            elif stall_from <= at < stall_from + STALL_S:
                during.append(latency)
    frames = [pb.Frame.FromString(d) for d in stalled.frames]
    coalesced = sum(f.tick - f.base_tick > 1 for f in frames[1:])
    resumed = next((k for k, at in enumerate(stalled.received) if at >= stall_from + STALL_S),
                   len(frames))
    print(f"\n[gateway scale] {len(clients)} clients + {len(late)} late + 1 stalled; "
          f"{sum(len(c.frames) for c in clients)} frames checked")
    for c in late:
        assert c.first_frame_s is not None
        print(f"[gateway scale] late join {c.name}: first frame (snapshot, "
              f"{len(c.frames[0])} B) after {c.first_frame_s * 1000:.0f} ms")
    print(f"[gateway scale] others' latency, tick produced -> frame read: 5 s before the "
          f"stall p50 {np.percentile(before, 50):.0f} ms p99 {np.percentile(before, 99):.0f} ms "
          f"({len(before)} frames); during it p50 {np.percentile(during, 50):.0f} ms "
          f"p99 {np.percentile(during, 99):.0f} ms ({len(during)} frames)")
    exact_from = next((k for k in range(resumed, len(frames))
                       if all(e <= bound * (1 + 1e-9) for e in stalled_errors[k:])),
                      len(frames) - 1)
    print(f"[gateway scale] stalled reader: {len(frames)} frames, {coalesced} coalesced "
          f"(tick - base_tick > 1); {len(frames) - resumed} read after the stall; within "
          f"the bound from then on {stalled.received[exact_from] - stall_from - STALL_S:.2f}"
          f" s after it read again (tick {frames[exact_from].tick}; the world's last "
          f"{frames[-1].tick})")
    print(f"[gateway scale] byte-identical frames per view (gRPC vs WebSocket): {aligned}")


async def watch(grpc_address: str, ws_url: str, world: str, mint: Callable[[int], str]
                ) -> tuple[list[Client], list[Client], Client]:
    async with GrpcClient(grpc_address) as gw:
        deadline = time.monotonic() + 360
        while True:
            gw.token = mint(0)  # fresh: the opening of 10,000 bodies may outlast a token
            known = {w.world_id: w for w in (await gw.worlds()).worlds}
            if world in known and known[world].body_count >= BODIES:
                break
            assert time.monotonic() < deadline, f"the world never reached {BODIES} bodies"
            await asyncio.sleep(0.25)
        tokens = [mint(k) for k in range(4)]
        gw.token = tokens[0]
        # A connection each (grpc shares one between equal channels unless told not to):
        # the gateway allows 16 subscriptions per connection.
        channels = [grpc.aio.insecure_channel(grpc_address,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(PAIRS // 8)]
        sessions = [aiohttp.ClientSession(headers={"Authorization": f"Bearer {t}"})
                    for t in tokens]
        try:
            return await _watch(gw, channels, sessions, ws_url, world, tokens)
        finally:
            for s in sessions:
                await s.close()
            for ch in channels:
                await ch.close()


async def _watch(gw: GrpcClient, channels: list[grpc.aio.Channel],
                 sessions: list[aiohttp.ClientSession], ws_url: str, world: str,
                 tokens: list[str]) -> tuple[list[Client], list[Client], Client]:
    def metadata(k: int) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {tokens[k % len(tokens)]}"),)

    subscribe = [ch.unary_stream(f"/{SERVICE}/Subscribe") for ch in channels]
    move_rpc = channels[0].unary_unary(f"/{SERVICE}/MoveView")
    clients: list[Client] = []
    grpc_calls: list[grpc.aio.UnaryStreamCall] = []
    sub_ids: list[str] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    for pair in range(PAIRS):
        request = pb.SubscribeRequest(
            world_id=world, view=view_at(pair, 0),
            max_bytes_per_s=TIGHT_BUDGET if pair in TIGHT else 0,
            encoding=pb.DELTAS if pair in DELTAS else pb.PREDICTED)
        clients += [Client(f"grpc{pair}", request), Client(f"ws{pair}", request)]
        sockets.append(await sessions[pair % len(sessions)].ws_connect(ws_url, compress=15))
    start = time.monotonic()
    stop_at = start + WATCH_S
    # Each pair subscribes on both faces back to back, right after a tick.
    clock = gw.frames(pb.SubscribeRequest(world_id=world, view=view_at(0, 0)))
    await anext(clock)
    for pair in range(PAIRS):
        c_grpc, c_ws = clients[2 * pair], clients[2 * pair + 1]
        raw = c_grpc.request.SerializeToString()
        call = subscribe[pair % 4](raw, metadata=metadata(pair))
        grpc_calls.append(call)
        # The gateway sends the metadata once it has made the subscription: only then
        # the WebSocket twin, so both are made a moment apart (a call starts lazily).
        meta = await call.initial_metadata()
        if meta is None or "subscription-id" not in meta:
            raise AssertionError(f"grpc{pair}: subscription refused: {await call.code()} "
                                 f"{await call.details()}")
        sub_ids.append(meta["subscription-id"])
        await sockets[pair].send_bytes(pb.ClientMessage(subscribe=c_ws.request)
                                       .SerializeToString())
        now = time.monotonic()
        c_grpc.moves.append((now, c_grpc.request.view))
        c_ws.moves.append((now, c_ws.request.view))
    await clock.aclose()

    async def from_grpc(call: grpc.aio.UnaryStreamCall, c: Client) -> None:
        async for data in call:
            c.take(data)
            if time.monotonic() > stop_at:
                call.cancel()
                return

    async def from_socket(ws: aiohttp.ClientWebSocketResponse, c: Client,
                          stall_at: float | None = None) -> None:
        while time.monotonic() <= stop_at:
            if stall_at is not None and time.monotonic() >= stall_at:
                await asyncio.sleep(STALL_S)  # reads nothing
                stall_at = None
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise AssertionError(f"{c.name}: the socket ended: {msg}")
            c.take(msg.data)
        await ws.close()

    tasks = []
    for pair in range(PAIRS):
        tasks.append(asyncio.create_task(from_grpc(grpc_calls[pair], clients[2 * pair])))
        tasks.append(asyncio.create_task(from_socket(sockets[pair], clients[2 * pair + 1])))

    # The stalled reader: the whole belt, plain deltas (the most bytes), on a socket.
    stalled = Client("stalled", pb.SubscribeRequest(world_id=world, view=WHOLE_BELT))
    ws_stalled = await sessions[0].ws_connect(ws_url, compress=15)
    await ws_stalled.send_bytes(pb.ClientMessage(subscribe=stalled.request).SerializeToString())
    stalled.moves.append((start, WHOLE_BELT))
    tasks.append(asyncio.create_task(from_socket(ws_stalled, stalled,
                                                 stall_at=start + STALL_AT_S)))

    async def mover() -> None:
        move = 0
        await asyncio.sleep(FIRST_MOVE_S - MOVE_EVERY_S)
        while time.monotonic() + MOVE_EVERY_S < stop_at:
            await asyncio.sleep(MOVE_EVERY_S)
            move += 1
            for pair in range(PAIRS):
                if time.monotonic() > stop_at - 1.0:  # the readers are about to hang up
                    return
                view = view_at(pair, move)
                c_grpc, c_ws = clients[2 * pair], clients[2 * pair + 1]
                c_grpc.moves.append((time.monotonic(), view))
                await move_rpc(pb.MoveViewRequest(subscription_id=sub_ids[pair], view=view)
                               .SerializeToString(), metadata=metadata(pair))
                c_ws.moves.append((time.monotonic(), view))
                await sockets[pair].send_bytes(pb.ClientMessage(move=view).SerializeToString())

    async def joiner(c: Client, via_grpc: bool) -> None:
        await asyncio.sleep(LATE_AT_S)
        t0 = time.monotonic()
        c.moves.append((t0, c.request.view))
        if via_grpc:
            source: AsyncIterator[bytes] = gw.frames(c.request)
        else:
            source = _socket_frames(sessions[1], ws_url, c.request)
        async for data in source:
            c.take(data)
            if c.first_frame_s is None:
                c.first_frame_s = time.monotonic() - t0
            if time.monotonic() > stop_at:
                break
        await source.aclose()  # type: ignore[attr-defined]

    late = [Client("late-grpc", pb.SubscribeRequest(world_id=world, view=view_at(5, 0),
                                                    encoding=pb.PREDICTED)),
            Client("late-ws", pb.SubscribeRequest(world_id=world, view=view_at(21, 0),
                                                  encoding=pb.PREDICTED))]
    tasks += [asyncio.create_task(mover()), asyncio.create_task(joiner(late[0], True)),
              asyncio.create_task(joiner(late[1], False))]
    await asyncio.gather(*tasks)
    return clients, late, stalled


async def _socket_frames(session: aiohttp.ClientSession, url: str,
                         request: pb.SubscribeRequest) -> AsyncIterator[bytes]:
    async with session.ws_connect(url, compress=15) as ws:
        await ws.send_bytes(pb.ClientMessage(subscribe=request).SerializeToString())
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                return
            yield msg.data
