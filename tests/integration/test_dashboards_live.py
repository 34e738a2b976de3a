"""Every dashboard panel's query returns data from a Prometheus scraping a short run.

The run is the platform's services in this process and one child (a worker, the
gateway with a WebSocket client, the archive connector on a private topic, the
lag exporter, a registry, the ecosystem Faust app on private topics), scraped
every second by the stack's Prometheus, started alone on a private port.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid

import aiohttp
import httpx
import pytest

import connectors
from cosmic import metrics, topics
from cosmic.lag import LagExporter
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.stack.prometheus import PrometheusService
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.server import serve
from schemas.registry.store import MemoryStore
from streams.gateway import build_gateway
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.testing import stack_token
from streams.worlds.worker import WorkerConfig, build_worker
from tests.integration.connectors_support import produce, tick
from tests.integration.test_living_worlds import Living
from tests.integration.test_prometheus_stack import free_port
from tests.liveworld import LiveWorld
from tests.unit.test_dashboards import panel_queries

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def test_every_panel_has_data_after_a_short_run(settings: Settings, stack: Stack, topic_factory,
                                                 tmp_path):
    run = uuid.uuid4().hex[:8]
    shard = f"test-dash-{run}"
    world = f"{shard}:sol"
    ticks_topic = topic_factory(partitions=1, prefix="test-dash-ticks")
    (tmp_path / "faust").mkdir()  # the Faust app's data folder goes under it
    # The stack's generated credentials, where this run's state folder has them: the
    # Faust app is a child process and reads them from its own state folder.
    shutil.copytree(settings.state_dir / "secrets", tmp_path / "secrets")
    with serve(Registry(MemoryStore())) as own_registry:
        private = settings.model_copy(update={
            "state_dir": tmp_path, "lake_dir": tmp_path / "lake",
            # Prometheus scrapes this registry; the services keep using the stack's.
            "registry": settings.registry.model_copy(
                update={"port": int(own_registry.server_address[1])}),
            "gateway": settings.gateway.model_copy(update={"grpc_port": 0, "http_port": 0}),
            "prometheus": settings.prometheus.model_copy(update={
                "port": free_port(), "scrape_interval_s": 1.0, "evaluation_interval_s": 1.0}),
            "lag": settings.lag.model_copy(update={"interval_s": 1.0,
                                                   "group_prefix": f"test-dash-{run}"}),
            "metrics": settings.metrics.model_copy(update={"targets_dir": None})})
        registry = RegistryClient.from_settings(settings)
        prometheus = PrometheusService(private)
        endpoint = metrics.serve(private, "platform")
        worker = build_worker(private, WorkerConfig(worker_id=f"dash-{run}", shard=shard),
                              registry)
        gateway = build_gateway(private, registry)
        archive = connectors.build("archive", private, routes={ticks_topic: topics.PHYSICS_TICKS},
                                   group_id=f"test-dash-{run}-archive")
        exporter = LagExporter(private)
        living = Living(private)
        live = LiveWorld(private, registry, world)
        stop = threading.Event()

        def feed_ticks() -> None:
            i = 0
            while not stop.wait(0.5):
                produce(private, ticks_topic, "PhysicsTick", [tick(world, i + k) for k in range(5)])
                i += 5

        feeder = threading.Thread(target=feed_ticks, daemon=True)
        services = [worker, gateway, archive, exporter, living.eco]
        assert prometheus.start() == "started"
        try:
            for svc in services:
                svc.start()
            assert gateway.wait_ready(60), gateway.failure()
            live.open(asteroids=30, tick_rate_hz=10.0, snapshot_every=50)
            live.play(rate_hz=5, seed=2, asteroids=30, invalid_every=2)
            feeder.start()
            asyncio.run(watch(gateway, world, stack_token(private, f"dash-{run}"), seconds=25))
            api = f"{prometheus.url}/api/v1"
            missing: list[str] = []
            for board, title, expr in panel_queries():
                result = httpx.get(f"{api}/query", params={"query": expr},
                                   timeout=10).json()["data"]["result"]
                if not result:
                    missing.append(f"{board}: {title}: {expr}")
            assert missing == [], "panels without data:\n" + "\n".join(missing)
        finally:
            stop.set()
            live.stop()
            for svc in reversed(services):
                svc.stop()
            living.close()
            endpoint.close()
            prometheus.stop()
            registry.close()
        for svc in services:
            assert svc.failure() is None, svc.name


async def watch(gateway, world: str, token: str, seconds: float) -> None:
    """A player watching the world for a while (after waiting for the gateway to see it)."""
    from streams.gateway.client import GrpcClient

    async with GrpcClient(gateway.grpc_address, token=token) as client:
        await_until = time.monotonic() + 60
        while world not in [w.world_id for w in (await client.worlds()).worlds]:
            assert time.monotonic() < await_until, "the gateway never saw the world"
            await asyncio.sleep(0.2)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        ws = await session.ws_connect(f"{gateway.http_url}ws")
        await ws.send_bytes(pb.ClientMessage(subscribe=pb.SubscribeRequest(
            world_id=world, view=pb.View(center=pb.Vec3(), radius=50.0),
            max_bytes_per_s=2000)).SerializeToString())
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await ws.receive(timeout=10)
        await ws.close()
