"""Degrade, don't fall over: with its schema registry gone, a gateway goes on serving.

The gateway here talks to a registry of its own (a second registry process over the
same ``_schemas`` topic, so it knows every schema id the worker writes with), which is
killed once the subscription is flowing. Frames keep coming tick after tick, a command
is still admitted and applied (every schema it needs is cached), and the registry's
circuit breaker, which a call for an unknown schema id trips, makes the next such call
fail at once instead of waiting out a connect timeout.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cosmic.breaker import OPEN, breaker
from cosmic.settings import Settings, child_env
from cosmic.stack import Stack
from schemas.errors import RegistryError
from schemas.registry.client import RegistryClient
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient, subscribe_request
from streams.gateway.testing import stack_token
from tests.gatewayrig import gateway_rig, until_listed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_registry(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    registry = settings.registry.model_copy(update={"port": port,
                                                    "url": f"http://127.0.0.1:{port}"})
    env = child_env(settings.as_identity("registry").with_overrides(registry=registry))
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "schemas.registry.server"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/subjects", timeout=2).is_success:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the private registry did not start"
        time.sleep(0.3)


def test_the_gateway_serves_and_admits_while_its_registry_is_down(settings: Settings,
                                                                  stack: Stack, tmp_path: Path):
    run = uuid.uuid4().hex[:10]
    shard = f"test-degraded-{run}"
    world = f"{shard}:w"
    port = _free_port()
    own_registry = _start_registry(settings, port, tmp_path / "registry.log")
    gw_settings = settings.model_copy(update={
        "gateway": settings.gateway.model_copy(update={"grpc_port": 0, "http_port": 0}),
        "registry": settings.registry.model_copy(update={"url": f"http://127.0.0.1:{port}"})})
    gw_registry = RegistryClient.from_settings(gw_settings)
    shared = RegistryClient.from_settings(settings)
    try:
        with gateway_rig(settings, shared, world, f"degraded-{run}", asteroids=10,
                         tick_rate_hz=10.0, snapshot_every=50, gw_settings=gw_settings,
                         gateway_registry=gw_registry) as rig:
            try:
                seen = asyncio.run(_watch_through_the_outage(rig.gateway.grpc_address, world,
                                                             own_registry, gw_registry))
            finally:
                if own_registry.poll() is None:
                    own_registry.kill()
    finally:
        gw_registry.close()
        shared.close()
    # Ten seconds of ticks at 10 Hz with the registry gone, every one of them in order.
    assert len(seen["ticks_after"]) >= 50, seen["ticks_after"]
    assert seen["ticks_after"] == sorted(set(seen["ticks_after"]))
    outcome = seen["outcome"]
    assert outcome.state == pb.CommandOutcome.APPLIED, outcome
    # Tripped by lookups of ids nobody has, the circuit fails the next one at once.
    assert seen["circuit"] == OPEN


async def _watch_through_the_outage(address: str, world: str,
                                    registry_proc: subprocess.Popen[bytes],
                                    client: RegistryClient) -> dict:
    seen: dict = {"ticks_after": []}
    token = stack_token(Settings(), "tester")
    async with GrpcClient(address, token=token) as gw:
        await until_listed(gw, world)
        # The gateway encodes one command before the outage: its schema id is cached.
        first = await gw.submit(world, {"type": "RemoveBody", "body_id": 987_000_001})
        await gw.outcome(first.command_id, timeout=20)

        frames = gw.frames(subscribe_request(world, (0.0, 0.0, 0.0), 50.0))
        async for data in frames:
            if pb.Frame.FromString(data).tick > 0:
                break
        registry_proc.kill()
        registry_proc.wait(10)
        down_at = time.monotonic()
        async for data in frames:
            seen["ticks_after"].append(pb.Frame.FromString(data).tick)
            if time.monotonic() - down_at > 10:
                break
        await frames.aclose()

        reply = await gw.submit(world, {"type": "SpawnBody", "body_id": 987_000_002,
                                        "kind": "ASTEROID", "mass": 1e-12, "radius": 5e-7,
                                        "position": {"x": 3.0, "y": 0.0, "z": 0.0},
                                        "velocity": {"x": 0.0, "y": 0.5, "z": 0.0}})
        seen["outcome"] = await gw.outcome(reply.command_id, timeout=20)

    for missing in range(2_000_000_000, 2_000_000_003):
        with pytest.raises(RegistryError):
            client.schema(missing)
    circuit = breaker("registry", client.url)
    seen["circuit"] = circuit.state
    with pytest.raises(RegistryError, match="circuit open"):
        client.schema(2_000_000_009)
    return seen
