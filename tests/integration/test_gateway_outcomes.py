"""Command outcomes through the gateway on the real stack, with a real physics worker.

A client submits through the gateway and asks what became of each command: a
valid one is applied at a tick (and that tick's PhysicsTick covers its offset),
one for a body that does not exist is rejected with UNKNOWN_BODY, a command
rejected in the same tick as an applied one leaves the other applied, and a
command id submitted twice is one record in the commands log and one applied
command. REST answers the same outcome; a box view sees the spawned body.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import grpc
import pytest

from cosmic import topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.timeutil import now_ms
from schemas.registry.client import RegistryClient
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient, box_view
from streams.gateway.testing import stack_token
from streams.worlds.eventlog import KafkaLog
from streams.worlds.scenario import STAR_ID
from tests.gatewayrig import gateway_rig, until_listed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

SPAWN_ID = 910_001
RETRIED_ID = 910_002
NO_SUCH_BODY = 987_654_321


def spawn(body_id: int, x: float) -> dict[str, Any]:
    return {"type": "SpawnBody", "body_id": body_id, "kind": "ASTEROID", "mass": 1e-12,
            "radius": 5e-7, "position": {"x": x, "y": 0.0, "z": 0.0},
            "velocity": {"x": 0.0, "y": 0.6, "z": 0.0}}


def test_outcomes_are_the_logs_and_a_retried_id_is_applied_once(settings: Settings,
                                                                stack: Stack):
    run = uuid.uuid4().hex[:10]
    shard = f"test-outcomes-{run}"
    world = f"{shard}:w"
    registry = RegistryClient.from_settings(settings)
    started_ms = now_ms() - 5000
    with gateway_rig(settings, registry, world, f"outcomes-{run}", asteroids=20,
                     tick_rate_hz=10.0, snapshot_every=50) as rig:
        seen = asyncio.run(through_gateway(rig.gateway.grpc_address, rig.gateway.http_url,
                                           world))

    # What the client was told is what the worker wrote.
    log = KafkaLog(settings, registry)
    partition = seen["spawn"][0].partition

    def since_start(topic: str) -> list[dict[str, Any]]:
        start = log.offset_for_time(topic, partition, started_ms)
        assert start is not None, f"nothing in {topic} since the test began"
        return [r for _, _, r in log.read(topic, partition, start, key=world.encode())]

    ticks = {r["tick"]: r for r in since_start(topics.PHYSICS_TICKS.name)}
    rejected = {str(r["command_id"]): r for r in since_start(topics.COMMANDS_REJECTED.name)}
    for name in ("spawn", "impulse", "retried"):
        reply, outcome = seen[name]
        covering = [t for t in ticks.values() if t["first_command_offset"] is not None
                    and t["first_command_offset"] <= reply.offset <= t["last_command_offset"]]
        assert [t["tick"] for t in covering] == [outcome.tick], name
        assert reply.command_id not in rejected, name
    for name in ("unknown", "unknown_same_tick"):
        reply, outcome = seen[name]
        record = rejected[reply.command_id]
        assert (record["tick"], record["reason"]) == (outcome.tick, "UNKNOWN_BODY")
        assert outcome.message == record["message"]
    # The retried id: one record in the commands log, one command applied.
    reply = seen["retried"][0]
    first_offset = min(r.offset for r, _ in seen.values())
    copies = [offset for offset, _, r in log.read(topics.COMMANDS.name, partition, first_offset,
                                                  key=world.encode())
              if str(r["command_id"]) == reply.command_id]
    assert copies == [reply.offset]
    registry.close()


async def through_gateway(address: str, http_url: str, world: str
                          ) -> dict[str, tuple[pb.SubmitCommandReply, pb.CommandOutcome]]:
    seen: dict[str, tuple[pb.SubmitCommandReply, pb.CommandOutcome]] = {}
    token = stack_token(Settings(), "tester")
    async with GrpcClient(address, token=token) as gw, aiohttp.ClientSession(
            http_url, headers={"Authorization": f"Bearer {token}"}) as http:
        await until_listed(gw, world)

        reply = await gw.submit(world, spawn(SPAWN_ID, 1.5))
        outcome = await gw.outcome(reply.command_id, timeout=20)
        assert outcome.state == pb.CommandOutcome.APPLIED and outcome.HasField("tick")
        assert outcome.reason == "" and outcome.message == ""
        seen["spawn"] = reply, outcome

        reply = await gw.submit(world, {"type": "RemoveBody", "body_id": NO_SUCH_BODY})
        outcome = await gw.outcome(reply.command_id, timeout=20)
        assert (outcome.state, outcome.reason) == (pb.CommandOutcome.REJECTED, "UNKNOWN_BODY")
        assert str(NO_SUCH_BODY) in outcome.message
        seen["unknown"] = reply, outcome

        # Submitted together: most likely one tick takes both, rejecting one of them.
        impulse, unknown = await asyncio.gather(
            # The tester's own body: a player may nudge only what they own.
            gw.submit(world, {"type": "ApplyImpulse", "body_id": SPAWN_ID,
                                        "dv": {"x": 0.0, "y": 0.0, "z": 1e-9}}),
            gw.submit(world, {"type": "RemoveBody", "body_id": NO_SUCH_BODY + 1}))
        a, b = await asyncio.gather(gw.outcome(impulse.command_id, timeout=20),
                                    gw.outcome(unknown.command_id, timeout=20))
        assert (a.state, b.state, b.reason) == (
            pb.CommandOutcome.APPLIED, pb.CommandOutcome.REJECTED, "UNKNOWN_BODY")
        seen["impulse"], seen["unknown_same_tick"] = (impulse, a), (unknown, b)

        # A retry (twice at once, then again later) is the first submission.
        command_id = uuid.uuid4()
        first, second = await asyncio.gather(
            gw.submit(world, spawn(RETRIED_ID, 1.6), command_id=command_id),
            gw.submit(world, spawn(RETRIED_ID, 1.6), command_id=command_id))
        outcome = await gw.outcome(command_id, timeout=20)
        third = await gw.submit(world, spawn(RETRIED_ID, 1.6), command_id=command_id)
        assert {(r.partition, r.offset) for r in (first, second, third)} == {
            (first.partition, first.offset)}
        assert outcome.state == pb.CommandOutcome.APPLIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.submit(world, spawn(RETRIED_ID + 1, 1.6), command_id=command_id)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        seen["retried"] = first, outcome

        # REST tells the same outcomes; an id never admitted here is a 404 problem.
        for reply, outcome in seen.values():
            async with http.get(f"/api/v1/commands/{reply.command_id}") as resp:
                assert resp.status == 200
                body = await resp.json()
            state = pb.CommandOutcome.State.Name(outcome.state).lower()
            assert body == {"command_id": reply.command_id, "state": state,
                            "tick": outcome.tick, "reason": outcome.reason or None,
                            "message": outcome.message or None}
        async with http.get(f"/api/v1/commands/{uuid.uuid4()}") as resp:
            assert resp.status == 404 and resp.content_type == "application/problem+json"
            assert (await resp.json())["type"].endswith("/unknown-command")

        # A box view around where the spawned bodies are sees them, and the star not.
        snap = await gw.snapshot(pb.SubscribeRequest(
            world_id=world, view=box_view((1.0, -1.5, -0.5), (2.2, 1.5, 0.5))))
        assert {SPAWN_ID, RETRIED_ID} <= set(snap.enter.ids)
        assert STAR_ID not in snap.enter.ids
    return seen
