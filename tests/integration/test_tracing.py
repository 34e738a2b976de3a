"""One command, one trace: 1,000 commands through the gateway on the real stack.

A gateway and a physics worker run in this process with the SDK's in-memory
exporter; ten players submit 1,000 commands over gRPC while a subscriber watches
the world. Each command's trace must hold every hop, each the child of the one
before: the gateway's SubmitCommand, its send to the commands topic, the worker's
process of it in the tick the client was told, the send of that tick's delta, and
the gateway's process of the delta for the subscriber's frame. No span may name a
parent that was not recorded. The issue asks for 99.9 % complete; the test
allows exactly that (one trace in 1,000). A command the worker rejects (one per
player, besides the 1,000) ends its trace with the send of its rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import defaultdict
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from cosmic import topics, tracing
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient, subscribe_request
from streams.gateway.testing import stack_token
from tests.gatewayrig import gateway_rig, until_listed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PLAYERS = 10
PER_PLAYER = 100  # one SpawnBody, then impulses on the player's own body
RATE_HZ = 12.0  # per player: under the gateway's 20/s limit
# The hops of a command's trace, root first: (name, kind).
HOPS = (("SubmitCommand", SpanKind.SERVER),
        (f"send {topics.COMMANDS.name}", SpanKind.PRODUCER),
        (f"process {topics.COMMANDS.name}", SpanKind.CONSUMER),
        (f"send {topics.STATE_DELTAS.name}", SpanKind.PRODUCER),
        (f"process {topics.STATE_DELTAS.name}", SpanKind.CONSUMER))


def test_every_command_is_one_connected_trace_and_no_span_is_orphaned(settings: Settings,
                                                                     stack: Stack):
    run = uuid.uuid4().hex[:10]
    shard = f"test-tracing-{run}"
    world = f"{shard}:w"
    traces = tracing.install(tracing.build("test", "memory"))
    assert traces.exporter is not None
    registry = RegistryClient.from_settings(settings)
    try:
        # The opening: untraced, straight to Kafka.
        with gateway_rig(settings, registry, world, f"tracing-{run}", asteroids=20,
                         tick_rate_hz=20.0, snapshot_every=100) as rig:
            told, refused = asyncio.run(drive(rig.gateway.grpc_address, world, run, traces))
            rig.stop()
            spans = list(traces.exporter.get_finished_spans())
    finally:
        traces.shutdown()
        registry.close()

    assert len(told) == PLAYERS * PER_PLAYER
    by_id = {s.context.span_id: s for s in spans}
    orphans = [s for s in spans if s.parent is not None and s.parent.span_id not in by_id]
    assert not orphans, f"{len(orphans)} of {len(spans)} spans name a parent not recorded"

    in_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    roots: dict[str, int] = {}
    for s in spans:
        in_trace[s.context.trace_id].append(s)
        if s.name == HOPS[0][0]:
            roots[str((s.attributes or {}).get(tracing.COMMAND_ID))] = s.context.trace_id
    complete = [command_id for command_id, tick in told.items() if command_id in roots
                and whole(command_id, tick, in_trace[roots[command_id]], by_id)]
    assert len(complete) >= 0.999 * len(told), (
        f"{len(told) - len(complete)} of {len(told)} commands lack a hop")

    rejected_hops = [*HOPS[:3], (f"send {topics.COMMANDS_REJECTED.name}", SpanKind.PRODUCER)]
    assert len(refused) == PLAYERS
    for command_id in refused:
        trace = sorted(in_trace[roots[command_id]], key=lambda s: s.start_time or 0)
        assert [(s.name, s.kind) for s in trace] == rejected_hops
        assert all(child.parent is not None and child.parent.span_id == parent.context.span_id
                   for parent, child in itertools.pairwise(trace))
        attrs = trace[2].attributes or {}
        assert (attrs.get(tracing.OUTCOME), attrs.get(tracing.REASON)) == (
            "rejected", "UNKNOWN_BODY")


def whole(command_id: str, tick: int, trace: list[ReadableSpan],
          by_id: dict[int, ReadableSpan]) -> bool:
    """Whether ``command_id``'s trace has a delivery whose ancestors are every hop, in
    order, for the tick the client was told it was applied in."""
    for last in (s for s in trace if s.name == HOPS[-1][0]):
        chain: list[ReadableSpan] = [last]
        while chain[-1].parent is not None and chain[-1].parent.span_id in by_id:
            chain.append(by_id[chain[-1].parent.span_id])
        chain.reverse()
        if [(s.name, s.kind) for s in chain] != list(HOPS) or chain[0].parent is not None:
            continue
        applied = chain[2].attributes or {}
        if (applied.get(tracing.OUTCOME), applied.get(tracing.TICK),
                applied.get(tracing.COMMAND_ID)) != ("applied", tick, command_id):
            continue
        if (last.attributes or {}).get(tracing.TICK) == tick:
            return True
    return False


async def drive(address: str, world: str, run: str, traces: tracing.Tracing
                ) -> tuple[dict[str, int], list[str]]:
    """Every command's id and the tick the gateway says it was applied in; the ids of
    those rejected."""
    watcher = GrpcClient(address, token=stack_token(Settings(), f"watcher-{run}"))
    async with watcher:
        # The worker's first ticks compile its kernels.
        await until_listed(watcher, world, tries=1200)
        frames = 0

        async def watch() -> None:
            nonlocal frames
            async for _ in watcher.frames(subscribe_request(world, (0.0, 0.0, 0.0), 100.0)):
                frames += 1

        watching = asyncio.create_task(watch())
        try:
            told: dict[str, int] = {}
            refused: list[str] = []
            for part, rejected in await asyncio.gather(
                    *(play(address, world, f"tracer-{run}-{i}", i) for i in range(PLAYERS))):
                told.update(part)
                refused.append(rejected)
            # Until the subscriber's frames have carried the last tick (or long enough).
            last = max(told.values())
            for _ in range(200):
                if any(s.name == HOPS[-1][0] and (s.attributes or {}).get(tracing.TICK) == last
                       for s in traces.exporter.get_finished_spans()):  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.1)
            assert frames > 0
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    return told, refused


async def play(address: str, world: str, player: str, i: int) -> tuple[dict[str, int], str]:
    body = 930_000 + i
    async with GrpcClient(address, token=stack_token(Settings(), player)) as gw:
        commands: list[dict[str, Any]] = [
            {"type": "SpawnBody", "body_id": body, "kind": "ASTEROID", "mass": 1e-12,
             "radius": 5e-7, "position": {"x": 1.5 + 0.01 * i, "y": 0.0, "z": 0.0},
             "velocity": {"x": 0.0, "y": 0.6, "z": 0.0}}]
        commands += [{"type": "ApplyImpulse", "body_id": body,
                      "dv": {"x": 0.0, "y": 0.0, "z": 1e-9}}] * (PER_PLAYER - 1)
        ids: list[str] = []
        first = await gw.submit(world, commands[0])
        ids.append(first.command_id)
        # The body exists before the impulses on it arrive.
        assert (await gw.outcome(first.command_id, timeout=30)).state == pb.CommandOutcome.APPLIED
        for command in commands[1:]:
            ids.append((await gw.submit(world, command)).command_id)
            await asyncio.sleep(1 / RATE_HZ)
        refused = (await gw.submit(world, {"type": "RemoveBody", "body_id": 987_000 + i})
                   ).command_id
        out = {}
        for command_id in ids:
            outcome = await gw.outcome(command_id, timeout=30)
            assert outcome.state == pb.CommandOutcome.APPLIED, (outcome.reason, outcome.message)
            out[command_id] = outcome.tick
        outcome = await gw.outcome(refused, timeout=30)
        assert (outcome.state, outcome.reason) == (pb.CommandOutcome.REJECTED, "UNKNOWN_BODY")
        return out, refused
