"""The outcome table: admitted commands decided from ticks and rejections, in any order.

The records are the ones the physics worker writes (PhysicsTick, CommandRejected),
as dicts; the worker's own rule (a tick's rejections are in its transaction, on
another topic, so they may be read before or after it) is what the order
property checks.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import models
from streams.gateway.errors import CommandIdInUse, Unavailable, UnknownCommand
from streams.gateway.outcomes import Outcomes, OutcomeTable, State

W, P = "demo:w", 1


def command(body_id: int = 7, world: str = W, player: str = "p",
            command_id: uuid.UUID | None = None) -> models.PlayerCommand:
    return models.PlayerCommand(
        command_id=command_id or uuid.uuid4(), player_id=player, world_id=world,
        client_ts=0, received_ts=0, command=models.RemoveBody(body_id=body_id))


def tick(n: int, first: int | None, last: int | None, rejected: int = 0,
         world: str = W, partition: int = P) -> dict[str, Any]:
    return {"world_id": world, "tick": n, "command_partition": None if first is None else partition,
            "first_command_offset": first, "last_command_offset": last, "n_applied": 0,
            "n_rejected": rejected}


def rejection(cmd: models.PlayerCommand | uuid.UUID, offset: int | None, at: int | None,
              reason: str = "UNKNOWN_BODY", world: str = W) -> dict[str, Any]:
    cid = cmd.command_id if isinstance(cmd, models.PlayerCommand) else cmd
    return {"command_id": str(cid), "world_id": world, "player_id": "p", "reason": reason,
            "message": f"no body ({reason})", "tick": at, "command_offset": offset}


def table(**kw: Any) -> OutcomeTable:
    return OutcomeTable(kw.pop("max_commands", 1000), kw.pop("window_s", 600.0), **kw)


def test_a_tick_that_rejected_nothing_applies_what_it_covers_at_once():
    t = table()
    a, b = command(1), command(2)
    t.admit(a, P, 10)
    t.admit(b, P, 12)
    assert [o.command_id for o in t.tick(tick(5, 9, 11))] == [a.command_id]
    assert t.get(a.command_id).state is State.APPLIED and t.get(a.command_id).tick == 5
    assert t.get(b.command_id).state is State.PENDING
    t.tick(tick(6, 12, 12))
    assert (t.get(b.command_id).state, t.get(b.command_id).tick) == (State.APPLIED, 6)


def test_a_tick_with_rejections_decides_once_all_of_them_are_seen():
    t = table()
    a, b = command(1), command(2)
    stranger = uuid.uuid4()  # another client's command in the same tick
    t.admit(a, P, 10)
    t.admit(b, P, 11)
    assert t.tick(tick(5, 10, 12, rejected=2)) == []
    t.rejection(rejection(b, 11, 5), P)
    assert t.get(b.command_id).state is State.REJECTED
    assert t.get(a.command_id).state is State.PENDING  # one rejection still unseen
    decided = t.rejection(rejection(stranger, 12, 5), P)
    assert [o.command_id for o in decided] == [a.command_id]
    out = t.get(a.command_id), t.get(b.command_id)
    assert [(o.state, o.tick) for o in out] == [(State.APPLIED, 5), (State.REJECTED, 5)]
    assert (out[1].reason, out[1].message) == ("UNKNOWN_BODY", "no body (UNKNOWN_BODY)")


def test_rejections_read_before_their_tick_count_for_it():
    t = table()
    a, b = command(1), command(2)
    t.admit(a, P, 10)
    t.admit(b, P, 11)
    t.rejection(rejection(b, 11, 5), P)
    t.tick(tick(5, 10, 11, rejected=1))
    assert t.get(a.command_id).state is State.APPLIED
    assert t.get(b.command_id).state is State.REJECTED


def test_a_tick_or_rejection_read_before_the_admission_still_decides_it():
    t = table()
    a, b = command(1), command(2)
    t.tick(tick(5, 10, 10))
    t.rejection(rejection(b, 11, 6), P)
    assert [o.state for o in t.admit(a, P, 10)] == [State.APPLIED]
    assert [o.state for o in t.admit(b, P, 11)] == [State.REJECTED]


def test_rejections_outside_any_tick_decide_on_their_own():
    t = table()
    retired, refused = command(1), command(2)
    t.admit(retired, P, 20)
    t.admit(refused, P, 21)
    # A retired world's rejection names the world's last tick, not one that covers it.
    t.tick(tick(9, 18, 19))
    t.rejection(rejection(retired, 20, 9, "WORLD_RETIRED"), P)
    t.rejection(rejection(refused, 21, None, "WORLD_LIMIT"), P)
    assert [(o.state, o.tick, o.reason) for o in (t.get(retired.command_id),
                                                  t.get(refused.command_id))] == [
        (State.REJECTED, 9, "WORLD_RETIRED"), (State.REJECTED, None, "WORLD_LIMIT")]


def test_another_partition_world_or_id_decides_nothing():
    t = table()
    a = command(1)
    t.admit(a, P, 10)
    t.tick(tick(5, 10, 10, partition=P + 1))
    t.tick(tick(5, 10, 10, world="other:w"))
    t.rejection(rejection(a, 10, 5), P + 1)
    t.rejection(rejection(uuid.uuid4(), 10, 5), P)  # same offset, another id: not ours
    t.tick(tick(4, None, None))
    assert t.get(a.command_id).state is State.PENDING


def test_a_retry_is_known_and_another_command_under_its_id_is_refused():
    t = table()
    a = command(1)
    t.admit(a, P, 10)
    again = command(1, command_id=a.command_id)
    assert (t.known(again).partition, t.known(again).offset) == (P, 10)
    for other in (command(2, command_id=a.command_id),
                  command(1, player="q", command_id=a.command_id),
                  command(1, world="other:w", command_id=a.command_id)):
        with pytest.raises(CommandIdInUse):
            t.known(other)
    assert t.known(command(1)) is None


def test_the_table_forgets_the_oldest_beyond_its_bounds():
    now = [0.0]
    t = table(max_commands=3, window_s=60.0, clock=lambda: now[0])
    cmds = [command(i) for i in range(5)]
    for i, c in enumerate(cmds):
        t.admit(c, P, i)
        now[0] += 10
    assert len(t) == 3 and t.get(cmds[1].command_id) is None
    assert t.get(cmds[2].command_id) is not None
    t.tick(tick(1, 0, 4))  # the forgotten ones are no longer pending either
    assert [t.get(c.command_id).state for c in cmds[2:]] == [State.APPLIED] * 3
    now[0] += 35  # cmds[2] was admitted 65 s ago
    assert t.get(cmds[2].command_id) is None and t.get(cmds[4].command_id) is not None


# Any order of reading the worker's records gives the outcome the log holds.

@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[int, int, int]], dict[int, int], list[Any]]:
    """A world's log: per offset its tick and whether it was rejected; the records in
    a random order with the admissions of some offsets interleaved."""
    n = draw(st.integers(1, 25))
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=8)))) if n > 1 else []
    bounds = [0, *cuts, n]
    fates: dict[int, int] = {}  # offset -> 1 rejected, 0 applied
    spans = []
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds), start=1):
        rejected = 0
        for o in range(lo, hi):
            fates[o] = draw(st.integers(0, 1))
            rejected += fates[o]
        spans.append((k, lo, hi - 1, rejected))
    ids = {o: uuid.UUID(int=o + 1) for o in range(n)}
    admitted = draw(st.sets(st.integers(0, n - 1)))
    events: list[Any] = [("tick", tick(k, lo, hi, r)) for k, lo, hi, r in spans]
    events += [("rejection", rejection(ids[o], o, k)) for k, lo, hi, _ in spans
               for o in range(lo, hi + 1) if fates[o]]
    events += [("admit", o) for o in admitted]
    order = draw(st.permutations(events))
    return spans, fates, order


@settings(max_examples=300, deadline=None)
@given(histories())
def test_any_reading_order_gives_the_outcome_the_log_holds(history):
    spans, fates, events = history
    t = table()
    admitted = []
    for kind, what in events:
        if kind == "tick":
            t.tick(what)
        elif kind == "rejection":
            t.rejection(what, P)
        else:
            c = command(what, command_id=uuid.UUID(int=what + 1))
            t.admit(c, P, what)
            admitted.append((what, c.command_id))
    at = {o: k for k, lo, hi, _ in spans for o in range(lo, hi + 1)}
    for offset, cid in admitted:
        o = t.get(cid)
        want = State.REJECTED if fates[offset] else State.APPLIED
        assert (o.state, o.tick) == (want, at[offset]), f"offset {offset}"


# On the loop: one append per command id, and waiting for the decision.

def test_a_retried_id_is_appended_once_even_while_the_first_is_in_flight():
    async def main() -> None:
        outcomes = Outcomes(100, 600.0, max_wait_s=5.0)
        appended: list[uuid.UUID] = []
        gate = asyncio.Event()

        async def append(c: models.PlayerCommand) -> tuple[int, int]:
            appended.append(c.command_id)
            await gate.wait()
            return P, 40 + len(appended)

        a = command(1)
        first = asyncio.create_task(outcomes.admit(a, append))
        second = asyncio.create_task(outcomes.admit(command(1, command_id=a.command_id), append))
        await asyncio.sleep(0)
        with pytest.raises(CommandIdInUse):
            await outcomes.admit(command(2, command_id=a.command_id), append)
        first.cancel()  # the first caller goes away: its admission still lands
        gate.set()
        assert await second == (P, 41)
        assert await outcomes.admit(command(1, command_id=a.command_id), append) == (P, 41)
        assert appended == [a.command_id]

    asyncio.run(main())


def test_a_failed_append_admits_nothing_and_a_retry_appends():
    async def main() -> None:
        outcomes = Outcomes(100, 600.0, max_wait_s=5.0)
        calls = []

        async def append(c: models.PlayerCommand) -> tuple[int, int]:
            calls.append(c)
            if len(calls) == 1:
                raise Unavailable("the log is down")
            return P, 7

        a = command(1)
        with pytest.raises(Unavailable):
            await outcomes.admit(a, append)
        with pytest.raises(UnknownCommand):
            outcomes.get(a.command_id)
        assert await outcomes.admit(a, append) == (P, 7) and len(calls) == 2

    asyncio.run(main())


def test_a_waiter_wakes_when_the_tick_decides_and_a_pending_one_times_out():
    async def main() -> None:
        outcomes = Outcomes(100, 600.0, max_wait_s=5.0)

        async def append(c: models.PlayerCommand) -> tuple[int, int]:
            return P, 3

        a = command(1)
        await outcomes.admit(a, append)
        assert (await outcomes.wait(a.command_id, 0.05)).state is State.PENDING
        waiter = asyncio.create_task(outcomes.wait(a.command_id, 5.0))
        await asyncio.sleep(0.01)
        outcomes.tick(tick(12, 3, 3))
        done = await asyncio.wait_for(waiter, 1.0)
        assert (done.state, done.tick) == (State.APPLIED, 12)
        with pytest.raises(UnknownCommand):
            await outcomes.wait(uuid.uuid4(), 1.0)

    asyncio.run(main())
