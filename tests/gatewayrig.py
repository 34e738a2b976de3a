"""One running gateway over one live world: the rig the gateway's integration tests share.

An in-process gateway (ports 0) and an in-process physics worker on a shard of the
test's own (so no other worker on the stack touches the world), the world opened
once the gateway is ready, and, when asked, the test's own :class:`Truth` of its
deltas. The gateway and the truth start reading deltas before the world is opened:
a test that checks every frame relies on none of the first ticks passing unread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from cosmic.settings import Settings
from schemas.registry.client import RegistryClient
from streams.gateway import GatewayService, build_gateway
from streams.gateway.client import GrpcClient
from streams.worlds.worker import PhysicsWorker, WorkerConfig, build_worker
from tests.gatewaytruth import Truth
from tests.liveworld import LiveWorld


@dataclass
class GatewayRig:
    settings: Settings  # the gateway's
    gateway: GatewayService
    worker: PhysicsWorker
    world: str
    live: LiveWorld
    _truth: Truth | None
    _halted: bool = field(default=False, init=False)

    @property
    def truth(self) -> Truth:
        assert self._truth is not None, "the rig was built without truth=True"
        return self._truth

    def halt(self) -> None:
        """Players, worker and gateway stopped, in that order (once)."""
        if not self._halted:
            self._halted = True
            self.live.stop()
            self.worker.stop()
            self.gateway.stop()

    def stop(self) -> None:
        """:meth:`halt`, then neither the gateway nor the worker may have failed."""
        self.halt()
        assert self.gateway.failure() is None and self.worker.failure() is None, (
            f"gateway: {self.gateway.failure()!r}, worker: {self.worker.failure()!r}")


def on_free_ports(settings: Settings) -> Settings:
    """``settings`` with the gateway on free ports (a test's gateway beside the stack's)."""
    return settings.model_copy(update={"gateway": settings.gateway.model_copy(
        update={"grpc_port": 0, "http_port": 0})})


@contextlib.contextmanager
def gateway_rig(settings: Settings, registry: RegistryClient, world: str, worker_id: str, *,
                asteroids: int, tick_rate_hz: float, snapshot_every: int,
                ready_s: float = 60.0, truth: bool = False,
                gw_settings: Settings | None = None,
                gateway_registry: RegistryClient | None = None) -> Iterator[GatewayRig]:
    """The running rig for the world ``shard:name``. On leaving, everything is stopped; on
    leaving without an exception, the gateway and the worker must not have failed (a test
    that looks at the log after the stop calls :meth:`GatewayRig.stop` itself first).

    ``gw_settings`` and ``gateway_registry`` replace the gateway's own (default:
    ``settings`` on free ports, ``registry``); the worker and the world use ``settings``.
    """
    gw_settings = gw_settings or on_free_ports(settings)
    shard = world.partition(":")[0]
    gateway = build_gateway(gw_settings, gateway_registry or registry)
    worker = build_worker(settings, WorkerConfig(worker_id=worker_id, shard=shard), registry)
    own_truth = Truth(settings, registry, world) if truth else None
    rig = GatewayRig(gw_settings, gateway, worker, world, LiveWorld(settings, registry, world),
                     own_truth)
    gateway.start()
    worker.start()
    try:
        try:
            assert gateway.wait_ready(ready_s), gateway.failure()
            rig.live.open(asteroids=asteroids, tick_rate_hz=tick_rate_hz,
                          snapshot_every=snapshot_every)
            yield rig
        finally:
            rig.halt()
        rig.stop()
    finally:
        if own_truth is not None:
            own_truth.close()


async def until_listed(client: GrpcClient, world: str, tries: int = 300) -> None:
    """Until the gateway lists ``world`` (it has seen the world's first tick), polling every
    0.1 s, ``tries`` times at most."""
    for _ in range(tries):
        if world in [w.world_id for w in (await client.worlds()).worlds]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway never saw the world")
