"""A worker and the gateway on the real stack, seen through this process's /metrics.

Two workers of one shard split its partitions: each partition's series come
from its one owner, and a worker's series of partitions it lost are gone.
`promtool check metrics` reports nothing on the live exposition.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cosmic import kafka, metrics, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.testing import stack_token
from streams.worlds.worker import PhysicsWorker, WorkerConfig, build_worker
from tests.gatewayrig import GatewayRig, gateway_rig
from tests.unit.test_metrics import promtool_check

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def scrape(url: str) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    text = httpx.get(url, timeout=10).text
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    return text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def partitions_of(samples: dict, worker: str) -> set[str]:
    return {dict(ls)["partition"] for (n, ls), _ in samples.items()
            if n == "cosmic_physics_worlds" and dict(ls).get("worker") == worker}


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_worker_and_gateway_metrics_follow_the_work(settings: Settings, stack: Stack, tmp_path):
    run = uuid.uuid4().hex[:10]
    shard = f"test-metrics-{run}"
    world = f"{shard}:sol"
    home = str(kafka.home_partition(world, topics.COMMANDS.partitions))
    local = settings.model_copy(update={
        "gateway": settings.gateway.model_copy(update={"grpc_port": 0, "http_port": 0}),
        "metrics": settings.metrics.model_copy(update={"targets_dir": tmp_path})})
    registry = RegistryClient.from_settings(settings)
    endpoint = metrics.serve(local, "test")
    second = build_worker(settings, WorkerConfig(worker_id=f"b-{run}", shard=shard), registry)
    token = stack_token(settings, f"metrics-{run}")
    try:
        with gateway_rig(settings, registry, world, f"a-{run}", asteroids=50,
                         tick_rate_hz=10.0, snapshot_every=50, gw_settings=local) as rig:
            try:
                _follow_the_work(rig, second, endpoint, token, run, home)
            finally:
                second.stop()
    finally:
        registry.close()
        endpoint.close()
    assert second.failure() is None


def _follow_the_work(rig: GatewayRig, second: PhysicsWorker, endpoint: metrics.MetricsEndpoint,
                     token: str, run: str, home: str) -> None:
    gateway, world, live = rig.gateway, rig.world, rig.live
    live.play(rate_hz=5, seed=1, asteroids=50, invalid_every=3)
    wait_until(lambda: value(scrape(endpoint.url)[1], "cosmic_physics_ticks_total",
                             worker=f"a-{run}", partition=home) >= 20, 60, "ticks")

    async def watch_a_while() -> tuple[str, dict]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}
                                         ) as session:
            ws = await session.ws_connect(f"{gateway.http_url}ws")
            await ws.send_bytes(pb.ClientMessage(subscribe=pb.SubscribeRequest(
                world_id=world, view=pb.View(center=pb.Vec3(), radius=50.0),
                max_bytes_per_s=2000)).SerializeToString())
            # 2 kB/s is tight for 50 moving bodies, but a frame defers only when a
            # tick's updates overrun it: read on (a bounded number of frames) until
            # one has.
            for frames in range(1, 121):
                await ws.receive(timeout=10)
                if frames >= 10 and frames % 10 == 0:
                    seen = await asyncio.to_thread(scrape, endpoint.url)
                    if value(seen[1], "cosmic_gateway_budget_deferrals_total") >= 1:
                        break
            await ws.close()
            return seen

    deadline = time.monotonic() + 30
    while world not in [w.world_id for w in gateway_worlds(gateway, token)]:
        assert time.monotonic() < deadline, "the gateway never saw the world"
        time.sleep(0.2)
    text, during = asyncio.run(watch_a_while())
    assert promtool_check(text) == ""
    assert value(during, "cosmic_gateway_connections", protocol="websocket") == 1
    assert value(during, "cosmic_gateway_frames_sent_total") >= 10
    assert value(during, "cosmic_gateway_sent_bytes_total") > 0
    assert value(during, "cosmic_gateway_tick_to_send_seconds_count") >= 10
    assert value(during, "cosmic_gateway_budget_deferrals_total") >= 1  # 2 kB/s is tight
    assert value(during, "cosmic_gateway_requests_total", face="ws", action="subscribe",
                 outcome="ADMITTED") == 1
    assert value(during, "cosmic_physics_tick_duration_seconds_count",
                 worker=f"a-{run}", partition=home) >= 20
    assert value(during, "cosmic_physics_commands_applied_total", worker=f"a-{run}") > 0
    assert value(during, "cosmic_physics_commands_rejected_total", worker=f"a-{run}") > 0
    assert value(during, "cosmic_physics_worlds", worker=f"a-{run}", partition=home,
                 state="live") == 1
    assert value(during, "cosmic_physics_recovery_duration_seconds_count",
                 worker=f"a-{run}") == 3
    assert partitions_of(during, f"a-{run}") == {"0", "1", "2"}

    # A second worker joins the shard's group: the partitions are split, each
    # reported by its owner alone.
    second.start()

    def split() -> bool:
        _, now = scrape(endpoint.url)
        a, b = partitions_of(now, f"a-{run}"), partitions_of(now, f"b-{run}")
        return bool(a) and bool(b) and not a & b and a | b == {"0", "1", "2"}

    wait_until(split, 90, "the partitions to be split between the workers")
    _, after = scrape(endpoint.url)
    lost = {"0", "1", "2"} - partitions_of(after, f"a-{run}")
    for (name, ls), _ in after.items():
        labels = dict(ls)
        if labels.get("worker") == f"a-{run}" and "partition" in labels:
            assert labels["partition"] not in lost, f"{name} still reports a lost partition"


def gateway_worlds(gateway, token: str) -> list[pb.WorldInfo]:
    from streams.gateway.client import GrpcClient

    async def go() -> list[pb.WorldInfo]:
        async with GrpcClient(gateway.grpc_address, token=token) as client:
            return list((await client.worlds()).worlds)

    return asyncio.run(go())
