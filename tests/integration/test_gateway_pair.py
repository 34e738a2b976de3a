"""Two gateways in front of one world: a client may use either, and switch.

Two gateways read the same deltas while an in-process worker ticks a belt of
asteroids. For one view, a client on each: at every tick both clients got a
frame for, their replicas hold the same bodies on the same grid positions, and
each is exact against the test's own read of the deltas. A command submitted
through one gateway and retried with the same id through the other (a client
that switched after losing its answer) is applied once: the first is APPLIED at
a tick, the retry REJECTED by the world as DUPLICATE_COMMAND, and only one body
exists. A client whose gateway stops gets an error it can act on, resubscribes
to the other, and its replica is exact from its first frame there.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import grpc
import numpy as np
import pytest

from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.gateway import GatewayService, build_gateway
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient
from streams.gateway.replica import Replica
from streams.gateway.testing import stack_token
from streams.worlds.worker import WorkerConfig, build_worker
from tests.gatewaytruth import Truth, check_frames
from tests.liveworld import LiveWorld

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

BELT = 2.7  # AU: the asteroid belt's middle
VIEW = pb.View(center=pb.Vec3(x=BELT), radius=0.8)
SPAWNED_ID = 900_002

Shown = tuple[tuple[int, ...], bytes]  # a replica's ids and grid positions after a frame


def test_a_client_may_use_either_gateway(settings: Settings, stack: Stack):
    run = uuid.uuid4().hex[:10]
    shard = f"test-gwpair-{run}"
    world = f"{shard}:belt"
    registry = RegistryClient.from_settings(settings)
    gateways = [build_gateway(settings.with_overrides(
        gateway=settings.gateway.model_copy(update={"grpc_port": 0, "http_port": 0}),
        security=settings.security.model_copy(update={"gateway_id": f"gwpair-{run}-{k}"})),
        registry) for k in range(2)]
    worker = build_worker(settings, WorkerConfig(worker_id=f"gwpair-{run}", shard=shard),
                          registry)
    truth = Truth(settings, registry, world)
    live = LiveWorld(settings, registry, world)
    for g in gateways:
        g.start()
    worker.start()
    try:
        for g in gateways:
            assert g.wait_ready(60), g.failure()
        live.open(asteroids=300, tick_rate_hz=10.0, snapshot_every=50)
        token = stack_token(settings, "gwpair-test")
        frames, outcomes, switched = asyncio.run(exercise(gateways, world, token))
    finally:
        live.stop()
        worker.stop()
        for g in gateways:
            g.stop()
    assert worker.failure() is None and all(g.failure() is None for g in gateways)
    last = max(pb.Frame.FromString(f[-1]).tick for f in [*frames, switched])
    truth.wait_for(last)
    truth.close()
    registry.close()

    g = settings.gateway
    bound = g.position_step * math.sqrt(3) / 2
    for k, got in enumerate(frames):
        assert len(got) >= 30, f"gateway {k}: only {len(got)} frames"
        replica = check_frames(got, VIEW, truth, g.view_hysteresis, bound, f"gateway{k}")
        assert len(replica.bodies) >= 10, f"gateway {k}: a view too empty to prove much"
    a, b = shown_by_tick(frames[0]), shown_by_tick(frames[1])
    common = sorted(a.keys() & b.keys())
    assert len(common) >= 20, f"only {len(common)} ticks framed by both gateways"
    for tick in common:
        assert a[tick] == b[tick], f"tick {tick}: the two gateways' clients show different states"

    first, retry = outcomes
    assert first.state == pb.CommandOutcome.APPLIED, first
    assert retry.state == pb.CommandOutcome.REJECTED and retry.reason == "DUPLICATE_COMMAND", retry
    assert retry.tick > first.tick

    # The client that lost its gateway: exact on the other from its first frame there.
    assert pb.Frame.FromString(switched[0]).snapshot
    check_frames(switched, VIEW, truth, g.view_hysteresis, bound, "switched")


def shown_by_tick(frames: list[bytes]) -> dict[int, Shown]:
    replica, out = Replica(), {}
    for data in frames:
        frame = pb.Frame.FromString(data)
        replica.apply(frame)
        q = np.array([replica.bodies[i].qpos for i in sorted(replica.bodies)], np.int64)
        out[frame.tick] = (tuple(sorted(replica.bodies)), q.tobytes())
    return out


async def exercise(gateways: list[GatewayService], world: str, token: str
                   ) -> tuple[list[list[bytes]], tuple[pb.CommandOutcome, pb.CommandOutcome],
                              list[bytes]]:
    duration_s = 8.0
    clients = [GrpcClient(g.grpc_address, token=token) for g in gateways]
    try:
        for c in clients:
            deadline = time.monotonic() + 30
            while world not in [w.world_id for w in (await c.worlds()).worlds]:
                assert time.monotonic() < deadline, "a gateway never saw the world"
                await asyncio.sleep(0.1)
        request = pb.SubscribeRequest(world_id=world, view=VIEW, encoding=pb.PREDICTED)
        frames: list[list[bytes]] = [[], []]
        stop_at = time.monotonic() + duration_s

        async def collect(client: GrpcClient, out: list[bytes]) -> None:
            async for data in client.frames(request):
                out.append(data)
                if time.monotonic() > stop_at:
                    return

        watching = [asyncio.create_task(collect(c, f)) for c, f in zip(clients, frames,
                                                                         strict=True)]
        # One command id through gateway 0, then again through gateway 1.
        command_id = uuid.uuid4()
        spawn = {"type": "SpawnBody", "body_id": SPAWNED_ID, "kind": "ASTEROID", "mass": 1e-12,
                 "radius": 5e-7, "position": {"x": BELT, "y": 0.05, "z": 0.0},
                 "velocity": {"x": 0.0, "y": 2 * math.pi / math.sqrt(BELT), "z": 0.0}}
        await clients[0].submit(world, spawn, command_id=command_id)
        first = await clients[0].outcome(command_id)
        await clients[1].submit(world, spawn, command_id=command_id)
        retry = await clients[1].outcome(command_id)
        await asyncio.gather(*watching)

        # Gateway 0 goes away under a subscriber, which moves to gateway 1.
        lost = clients[0].frames(request)
        await anext(lost)
        await asyncio.to_thread(gateways[0].stop)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for _ in lost:
                pass
        assert failed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        switched: list[bytes] = []
        stop_at = time.monotonic() + 3.0
        await collect(clients[1], switched)
        return frames, (first, retry), switched
    finally:
        for c in clients:
            await c.channel.close()
