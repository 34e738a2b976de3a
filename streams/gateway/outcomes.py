"""What became of each command this gateway admitted: pending, applied at tick N, or rejected.

The physics worker tells it in two records (:mod:`streams.worlds.worker`): a
``PhysicsTick`` per world tick, naming the offsets of the commands partition
that tick consumed (``first_command_offset`` .. ``last_command_offset``) and
how many of them it rejected (``n_rejected``); and a ``CommandRejected`` per
refused command, with the tick and the command's offset. A tick and its
rejections are in one transaction but on two topics, so a reader may see
either first. The rule is therefore exact only by counting:

- a command is **rejected** when a rejection names its offset (and id);
- a command is **applied** at the first tick of its world whose offset range
  covers it, once that tick's ``n_rejected`` rejections have all been seen and
  none is for it (a tick that rejected nothing decides at once).

Rejections outside any tick's range (a retired or quarantined world, a worker
past its world limit) decide their command on their own. A command the
physics worker consumes but leaves to other services (``SeedSpecies``,
``FoundCivilization``) counts as applied at the tick that consumed it.

:class:`OutcomeTable` is that rule, pure (no I/O; the clock is a parameter).
It is bounded: at most ``max_commands`` admitted ids, each for
``window_s`` after admission, so it also says which ids a retry may reuse.
Ticks and rejections seen before the admission they decide (the worker may
tick a command before the producer's acknowledgement reaches the gateway) are
kept a short while, a bounded number per world. :class:`Outcomes` puts the
table on the gateway's loop: it admits each command id once and lets callers
wait for a decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from schemas import models

from .errors import CommandIdInUse, UnknownCommand

# Ticks with commands remembered per world, and worlds, for admissions that come late.
RECENT_TICKS = 64
RECENT_WORLDS = 4096
# Rejections remembered for ticks (or admissions) not seen yet.
RECENT_REJECTIONS = 8192


class State(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One admitted command and what became of it."""

    command_id: uuid.UUID
    world_id: str
    partition: int
    offset: int
    state: State = State.PENDING
    tick: int | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def decided(self) -> bool:
        return self.state is not State.PENDING


@dataclass(frozen=True, slots=True)
class _Span:
    """A tick that consumed commands: which offsets, and how many it rejected."""

    tick: int
    first: int
    last: int
    n_rejected: int

    def covers(self, offset: int) -> bool:
        return self.first <= offset <= self.last


@dataclass(frozen=True, slots=True)
class _Rejection:
    command_id: str
    tick: int | None
    reason: str
    message: str


@dataclass
class _Entry:
    outcome: Outcome
    fingerprint: bytes
    admitted_at: float


@dataclass
class _Waiting:
    """A tick that covers pending commands and rejected some: decided once all are seen."""

    world: str
    partition: int
    span: _Span
    seen: set[int]  # offsets rejected at this tick
    offsets: set[int] = field(default_factory=set)  # the pending ones it covers


Where = tuple[str, int]  # (world id, commands partition)
Key = tuple[str, int, int]  # (world id, commands partition, offset or tick)


def fingerprint(command: models.PlayerCommand) -> bytes:
    """What makes two submissions the same command (besides their id)."""
    return orjson.dumps([command.world_id, command.player_id,
                         command.command.model_dump(mode="json")], option=orjson.OPT_SORT_KEYS)


class OutcomeTable:
    """The outcomes of admitted commands, by id, decided from ticks and rejections."""

    def __init__(self, max_commands: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_commands < 1 or not window_s > 0:
            raise ValueError("an outcome table needs room for a command and a window > 0")
        self.max_commands = max_commands
        self.window_s = window_s
        self._clock = clock
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()  # admission order
        self._pending: dict[Where, dict[int, uuid.UUID]] = {}  # by offset
        self._spans: OrderedDict[Where, deque[_Span]] = OrderedDict()
        self._rejections: OrderedDict[Key, _Rejection] = OrderedDict()
        self._rejected_at: dict[Key, set[int]] = {}  # (world, partition, tick): offsets
        self._waiting: dict[Key, _Waiting] = {}  # (world, partition, tick)

    def __len__(self) -> int:
        return len(self._entries)

    # Admission.

    def get(self, command_id: uuid.UUID) -> Outcome | None:
        """The command's outcome; None if it was never admitted or has been forgotten."""
        self._expire()
        entry = self._entries.get(command_id)
        return None if entry is None else entry.outcome

    def known(self, command: models.PlayerCommand) -> Outcome | None:
        """The admission of this command id, if there is one; raises
        :class:`CommandIdInUse` if that id was admitted for a different command."""
        self._expire()
        entry = self._entries.get(command.command_id)
        if entry is None:
            return None
        if entry.fingerprint != fingerprint(command):
            raise CommandIdInUse(command.command_id)
        return entry.outcome

    def admit(self, command: models.PlayerCommand, partition: int, offset: int
              ) -> list[Outcome]:
        """Record an admitted command. Returns the outcomes that changed: its own if
        its tick or rejection was seen already, and any forgotten to make room."""
        self._expire()
        known = self._entries.get(command.command_id)
        if known is not None:
            return []  # admitted once: the first admission stands
        outcome = Outcome(command.command_id, command.world_id, partition, offset)
        self._entries[command.command_id] = _Entry(outcome, fingerprint(command), self._clock())
        where = (command.world_id, partition)
        self._pending.setdefault(where, {})[offset] = command.command_id
        changed = [self._forget() for _ in range(len(self._entries) - self.max_commands)]
        key = (command.world_id, partition, offset)
        rejection = self._rejections.get(key)
        if rejection is not None and rejection.command_id == str(command.command_id):
            return changed + self._decide(key, State.REJECTED, rejection)
        for span in self._spans.get(where, ()):
            if span.covers(offset):
                return changed + self._covered(key, span)
        return changed

    # What the physics worker wrote.

    def tick(self, record: dict[str, Any]) -> list[Outcome]:
        """Fold in a decoded ``PhysicsTick``; returns the outcomes it decides."""
        first, last = record.get("first_command_offset"), record.get("last_command_offset")
        partition = record.get("command_partition")
        if first is None or last is None or partition is None:
            return []  # consumed no command
        where = (str(record["world_id"]), int(partition))
        span = _Span(int(record["tick"]), int(first), int(last), int(record["n_rejected"]))
        spans = self._spans.pop(where, None) or deque(maxlen=RECENT_TICKS)
        spans.append(span)
        self._spans[where] = spans
        while len(self._spans) > RECENT_WORLDS:
            self._spans.popitem(last=False)
        pending = self._pending.get(where, {})
        decided: list[Outcome] = []
        for offset in sorted(o for o in pending if span.covers(o)):
            decided += self._covered((*where, offset), span)
        return decided

    def rejection(self, record: dict[str, Any], partition: int) -> list[Outcome]:
        """Fold in a decoded ``CommandRejected`` read from ``partition`` (the world's home
        partition on every topic, so that of the command's offset too)."""
        world = str(record["world_id"])
        raw_offset, raw_tick = record.get("command_offset"), record.get("tick")
        tick = None if raw_tick is None else int(raw_tick)
        rej = _Rejection(str(record["command_id"]), tick, str(record["reason"]),
                         str(record["message"]))
        pending = self._pending.get((world, partition), {})
        if raw_offset is None:  # no offset to go by: the id alone says which command
            found = next((o for o, i in pending.items() if str(i) == rej.command_id), None)
            return [] if found is None else self._decide((world, partition, found),
                                                         State.REJECTED, rej)
        offset = int(raw_offset)
        key = (world, partition, offset)
        self._remember(key, rej)
        decided: list[Outcome] = []
        if str(pending.get(offset)) == rej.command_id:
            decided += self._decide(key, State.REJECTED, rej)
        if tick is not None:
            waiting = self._waiting.get((world, partition, tick))
            if waiting is not None and waiting.span.covers(offset):
                waiting.seen.add(offset)
                decided += self._settle(waiting)
        return decided

    # The rule.

    def _covered(self, key: Key, span: _Span) -> list[Outcome]:
        """A pending command inside ``span``: applied now, or once the tick's rejections
        are all seen."""
        if span.n_rejected == 0:
            return self._decide(key, State.APPLIED, span.tick)
        world, partition, _ = key
        wkey = (world, partition, span.tick)
        waiting = self._waiting.get(wkey)
        if waiting is None:
            seen = {o for o in self._rejected_at.get(wkey, ()) if span.covers(o)}
            waiting = self._waiting[wkey] = _Waiting(world, partition, span, seen)
        waiting.offsets.add(key[2])
        return self._settle(waiting)

    def _settle(self, waiting: _Waiting) -> list[Outcome]:
        if len(waiting.seen) < waiting.span.n_rejected:
            return []
        del self._waiting[(waiting.world, waiting.partition, waiting.span.tick)]
        decided: list[Outcome] = []
        for offset in sorted(waiting.offsets - waiting.seen):
            decided += self._decide((waiting.world, waiting.partition, offset), State.APPLIED,
                                    waiting.span.tick)
        return decided

    def _decide(self, key: Key, state: State, why: int | _Rejection) -> list[Outcome]:
        world, partition, offset = key
        pending = self._pending.get((world, partition), {})
        command_id = pending.pop(offset, None)
        if not pending:
            self._pending.pop((world, partition), None)
        entry = None if command_id is None else self._entries.get(command_id)
        if command_id is None or entry is None:
            return []
        if isinstance(why, _Rejection):
            entry.outcome = Outcome(command_id, world, partition, offset, state, why.tick,
                                    why.reason, why.message)
        else:
            entry.outcome = Outcome(command_id, world, partition, offset, state, why)
        return [entry.outcome]

    # Bounds.

    def _remember(self, key: Key, rej: _Rejection) -> None:
        self._rejections[key] = rej
        if rej.tick is not None:
            self._rejected_at.setdefault((key[0], key[1], rej.tick), set()).add(key[2])
        while len(self._rejections) > RECENT_REJECTIONS:
            (world, partition, offset), old = self._rejections.popitem(last=False)
            if old.tick is not None:
                at = (world, partition, old.tick)
                offsets = self._rejected_at.get(at, set())
                offsets.discard(offset)
                if not offsets:
                    self._rejected_at.pop(at, None)

    def _expire(self) -> None:
        cutoff = self._clock() - self.window_s
        while self._entries and next(iter(self._entries.values())).admitted_at < cutoff:
            self._forget()

    def _forget(self) -> Outcome:
        _, entry = self._entries.popitem(last=False)
        o = entry.outcome
        pending = self._pending.get((o.world_id, o.partition), {})
        if pending.get(o.offset) == o.command_id:
            del pending[o.offset]
            if not pending:
                del self._pending[(o.world_id, o.partition)]
            for wkey in [k for k, w in self._waiting.items()
                         if (w.world, w.partition) == (o.world_id, o.partition)]:
                waiting = self._waiting[wkey]
                waiting.offsets.discard(o.offset)
                if not waiting.offsets:
                    del self._waiting[wkey]
        return o


class Outcomes:
    """The table on the gateway's loop: admits each command id once, and waits."""

    def __init__(self, max_commands: int, window_s: float, max_wait_s: float) -> None:
        self.table = OutcomeTable(max_commands, window_s)
        self.max_wait_s = max_wait_s
        self._inflight: dict[uuid.UUID, tuple[asyncio.Future[tuple[int, int]], bytes]] = {}
        self._changed: dict[uuid.UUID, set[asyncio.Event]] = {}  # one event per waiting call

    async def admit(self, command: models.PlayerCommand,
                    append: Callable[[models.PlayerCommand], Awaitable[tuple[int, int]]]
                    ) -> tuple[int, int]:
        """Append ``command`` unless its id was admitted already; (partition, offset)
        of the one append either way. A retry while the first append is still in
        flight waits for it; a failed append admits nothing, so a retry appends."""
        known = self.table.known(command)
        if known is not None:
            return known.partition, known.offset
        inflight = self._inflight.get(command.command_id)
        if inflight is not None:
            if inflight[1] != fingerprint(command):
                raise CommandIdInUse(command.command_id)
            return await asyncio.shield(inflight[0])

        async def once() -> tuple[int, int]:
            partition, offset = await append(command)
            self._wake(self.table.admit(command, partition, offset))
            return partition, offset

        # A task of its own: a caller that goes away does not lose an admission the
        # broker already has.
        task = asyncio.ensure_future(once())
        self._inflight[command.command_id] = (task, fingerprint(command))
        task.add_done_callback(lambda t: self._landed(command.command_id, t))
        return await asyncio.shield(task)

    def tick(self, record: dict[str, Any]) -> None:
        self._wake(self.table.tick(record))

    def rejection(self, record: dict[str, Any], partition: int) -> None:
        self._wake(self.table.rejection(record, partition))

    def get(self, command_id: uuid.UUID) -> Outcome:
        outcome = self.table.get(command_id)
        if outcome is None:
            raise UnknownCommand(command_id)
        return outcome

    async def wait(self, command_id: uuid.UUID, wait_s: float) -> Outcome:
        """The outcome once decided, or still pending after ``wait_s`` (at most
        ``max_wait_s``)."""
        deadline = time.monotonic() + min(max(0.0, wait_s), self.max_wait_s)
        while True:
            outcome = self.get(command_id)
            left = deadline - time.monotonic()
            if outcome.decided or left <= 0:
                return outcome
            event = asyncio.Event()
            waiters = self._changed.setdefault(command_id, set())
            waiters.add(event)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), left)
            finally:
                waiters.discard(event)
                if not waiters and self._changed.get(command_id) is waiters:
                    del self._changed[command_id]

    def _landed(self, command_id: uuid.UUID, task: asyncio.Future[tuple[int, int]]) -> None:
        self._inflight.pop(command_id, None)
        if not task.cancelled():
            task.exception()  # retrieved: each caller got it through the shield

    def _wake(self, decided: list[Outcome]) -> None:
        for outcome in decided:
            for event in self._changed.get(outcome.command_id, ()):
                event.set()
