"""The one core every face adapts: worlds in, subscriptions out, commands through.

:class:`GatewayCore` lives on the gateway's asyncio loop. The Kafka side
(:mod:`.log`) hands it each world's ticks with :meth:`GatewayCore.publish`;
a face opens a :class:`Subscription` and writes the frames it yields, as fast
as its client reads them. The frame is computed when the face asks for it,
against what that client last received, so a slow reader costs one baseline of
memory and gets the latest state, never a backlog. Clients that hold the same
(started alike, served the same ticks and views) share one computation of each
frame (:class:`~.session.SharedFrames`). A subscription that names a
``session`` is kept a while after its connection ends (``resume_window_s``,
at most ``max_parked``); a reconnect naming the session and the tick it last
applied continues from that baseline instead of a snapshot (only for the
player who opened it).

Every call names its :class:`~.guard.Caller`; the :class:`~.guard.Guard`
decides who that is and whether they may, and audits each attempt. A running
subscription ends (UNAUTHENTICATED) when its player is banned or its token
revoked.

Commands go through :class:`~.outcomes.Outcomes`: each command id is appended
once (a retry is answered with the first append's partition and offset), and
its outcome is decided from the world's ticks and rejections that the log
side hands to :attr:`GatewayCore.outcomes`.

While tracing is on (:mod:`cosmic.tracing`), a submit is a ``SubmitCommand``
span, current while the command is admitted and appended; and every frame a
subscription sends closes, for each traced command of the ticks it carries
(those after the client's last frame), that command's trace with a ``process``
span of the delta.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import TypeAdapter, ValidationError

from cosmic import topics, tracing
from cosmic.settings import GatewaySettings
from schemas import models
from streams.security.tokens import Identity

from ._proto import gateway_pb2 as pb
from .errors import (
    BadRequest,
    InvalidCommand,
    InvalidView,
    MessageTooLarge,
    UnknownSubscription,
    UnknownWorld,
)
from .guard import Caller, Guard, outcome_of
from .metrics import GatewayMetrics
from .outcomes import Outcome, Outcomes, State
from .session import SharedFrames, Subscriber, warm
from .world import Area, BoxView, Grid, Tick, View

# What the log side does with a validated command and its record's Avro encoding (None:
# the log encodes it): (partition, offset) once durable.
Append = Callable[[models.PlayerCommand, bytes | None], Awaitable[tuple[int, int]]]

_COMMAND = TypeAdapter(models.Command)
# The trace contexts of a world's last ticks are kept this long (in ticks) for the
# frames that carry them: a subscriber further behind gets a later state, untraced.
TRACED_TICKS = 64


def view_of(message: pb.View) -> Area:
    """A sphere (centre and radius) or, when ``box`` is set, a box (and nothing else)."""
    if message.HasField("box"):
        if message.HasField("center") or message.radius != 0:
            raise InvalidView("a view is a sphere (centre and radius) or a box, not both")
        box = message.box
        if not (box.HasField("min") and box.HasField("max")):
            raise InvalidView("a box view needs both its min and max corners")
        lo, hi = box.min, box.max
        return BoxView((lo.x, lo.y, lo.z), (hi.x, hi.y, hi.z))
    c = message.center
    return View((c.x, c.y, c.z), message.radius)


_OUTCOME_STATE = {State.PENDING: pb.CommandOutcome.PENDING,
                  State.APPLIED: pb.CommandOutcome.APPLIED,
                  State.REJECTED: pb.CommandOutcome.REJECTED}


def outcome_message(outcome: Outcome) -> pb.CommandOutcome:
    out = pb.CommandOutcome(command_id=str(outcome.command_id),
                            state=_OUTCOME_STATE[outcome.state], reason=outcome.reason or "",
                            message=outcome.message or "")
    if outcome.tick is not None:
        out.tick = outcome.tick
    return out


def command_id_of(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BadRequest(f"a command id is a UUID, got {text[:60]!r}") from None


class Subscription:
    """One client's stream of frames for one world."""

    def __init__(self, core: GatewayCore, world_id: str, subscriber: Subscriber,
                 session: str = "", identity: Identity | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.session = session
        self.core = core
        self.world_id = world_id
        self.subscriber = subscriber
        self.identity = identity
        self._caller: Caller | None = None  # set while it counts against the limits

    def close(self) -> None:
        """Stop counting against the caller's limits (idempotent; faces call it at the end)."""
        if self._caller is not None:
            self.core.guard.close_subscription(self._caller, self.identity)
            self._caller = None

    def move(self, view: pb.View) -> None:
        self.subscriber.move(view_of(view))
        self.core._wake(self.world_id)

    async def frames(self) -> AsyncIterator[bytes]:
        """Serialized frames, the first a snapshot; each the latest state when asked for."""
        self.core._running[self.id] = self
        guard = self.core.guard
        try:
            while True:
                tick = await self.core._next(self.world_id, self.subscriber)
                guard.still_valid(self.identity)
                since, started_ns = self.subscriber.last_tick, time.time_ns()
                data = self.core._frame(self.world_id, self.subscriber, tick)
                self.core.metrics.sent(len(data), tick.produced_ms, self.subscriber.deferred)
                yield data
                if self.core.tracer is not None:  # the face took it: delivered
                    self.core._delivered(self.world_id, since, tick.tick, len(data), started_ns)
        finally:
            self.close()
            self.core._running.pop(self.id, None)
            self.core._park(self)


class GatewayCore:
    def __init__(self, settings: GatewaySettings, append: Append, guard: Guard) -> None:
        self.settings = settings
        self.guard = guard
        warm()  # the frame kernels load now, not on the first client's frame
        self.max_command_bytes = guard.security.max_command_bytes
        # Worlds commands were sent to through this gateway (besides those it reads).
        self._commanded: set[str] = set()
        self.grid = Grid(settings.position_step, settings.velocity_step)
        self._append = append
        self.outcomes = Outcomes(settings.max_commands, settings.command_window_s,
                                 settings.max_outcome_wait_s)
        self._latest: dict[str, Tick] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._running: dict[str, Subscription] = {}
        # Ended subscriptions a client may resume: session -> (subscription, ended at).
        self._parked: OrderedDict[str, tuple[Subscription, float]] = OrderedDict()
        self.metrics = GatewayMetrics(lambda: len(self._running), lambda: len(self._latest))
        guard.on_decision = self.metrics.decided
        self.tracer = tracing.tracer("streams.gateway")
        self._traced: dict[str, deque[tuple[int, tuple[Context, ...]]]] = {}
        self._shared: dict[str, SharedFrames] = {}

    # The log side.

    def publish(self, tick: Tick) -> None:
        """A world's new tick: every subscription of it may send a frame."""
        self._latest[tick.world_id] = tick
        if tick.traces:
            ring = self._traced.get(tick.world_id)
            if ring is None:
                ring = self._traced[tick.world_id] = deque(maxlen=TRACED_TICKS)
            ring.append((tick.tick, tick.traces))
        self._wake(tick.world_id)

    def _frame(self, world_id: str, subscriber: Subscriber, tick: Tick) -> bytes:
        """The subscriber's next frame, computed once for all who hold the same."""
        shared = self._shared.get(world_id)
        if shared is None:
            shared = self._shared[world_id] = SharedFrames()
        return shared.frame_bytes(subscriber, tick)

    def _delivered(self, world_id: str, since: int, tick: int, size: int, started_ns: int
                   ) -> None:
        """A frame of ``tick`` reached a face: the last hop of every traced command of the
        ticks after ``since`` (the client's previous frame) up to ``tick``."""
        ring = self._traced.get(world_id)
        if not ring or self.tracer is None:
            return
        name = f"process {topics.STATE_DELTAS.name}"
        for traced_tick, contexts in ring:
            if since < traced_tick <= tick:
                attrs = tracing.messaging("process", topics.STATE_DELTAS.name, **{
                    tracing.WORLD: world_id, tracing.TICK: traced_tick,
                    tracing.FRAME_BYTES: size})
                for ctx in contexts:
                    self.tracer.start_span(name, ctx, tracing.CONSUMER, attrs,
                                           start_time=started_ns).end()

    # What the faces call.

    def worlds(self) -> pb.ListWorldsReply:
        reply = pb.ListWorldsReply()
        for world_id in sorted(self._latest):
            t = self._latest[world_id]
            reply.worlds.add(world_id=world_id, tick=t.tick, sim_time=t.sim_time,
                             body_count=len(t))
        return reply

    def latest(self, world_id: str) -> Tick:
        """The world's latest tick, as the gateway has quantized it."""
        tick = self._latest.get(world_id)
        if tick is None:
            raise UnknownWorld(world_id)
        return tick

    def subscribe(self, request: pb.SubscribeRequest, caller: Caller,
                  action: str = "subscribe") -> Subscription:
        """A subscription counted against the caller's limits (a face ends it with close)."""
        identity: Identity | None = None
        try:
            identity = self.guard.watcher(caller)
            sub = self._subscription(request, identity)
            self.guard.open_subscription(caller, identity)
        except Exception as exc:
            self.guard.record(caller, action, outcome_of(exc), identity, str(exc),
                              world_id=request.world_id[:200])
            raise
        sub._caller = caller
        self.guard.record(caller, action, "ADMITTED", identity, world_id=request.world_id)
        return sub

    def _subscription(self, request: pb.SubscribeRequest, identity: Identity | None
                      ) -> Subscription:
        if request.world_id not in self._latest:
            raise UnknownWorld(request.world_id)
        if not request.HasField("view"):
            raise InvalidView("a subscription needs a view (centre and radius, or a box)")
        view = view_of(request.view)
        if request.session and len(request.session) < 16:
            raise BadRequest("a session id has at least 16 characters")
        resumed = self._unpark(request, identity)
        if resumed is not None:
            resumed.subscriber.move(view)
            resumed.identity = identity
            return resumed
        cap = self.settings.client_bytes_per_s
        budget = min(request.max_bytes_per_s or cap, cap)
        sub = Subscriber(view, bytes_per_s=budget, hysteresis=self.settings.view_hysteresis,
                         predicted=request.encoding == pb.PREDICTED)
        return Subscription(self, request.world_id, sub, request.session, identity)

    def move(self, request: pb.MoveViewRequest, identity: Identity | None = None) -> None:
        subscription = self._running.get(request.subscription_id)
        if subscription is None or _who(subscription.identity) != _who(identity):
            raise UnknownSubscription(f"no subscription {request.subscription_id!r} runs here")
        if not request.HasField("view"):
            raise InvalidView("a move needs a view (centre and radius, or a box)")
        subscription.move(request.view)

    @property
    def clients(self) -> int:
        return len(self._running)

    def running(self, world_id: str) -> list[Subscription]:
        """The subscriptions of a world being served now (what each holds: its subscriber)."""
        return [s for s in self._running.values() if s.world_id == world_id]

    def snapshot(self, request: pb.SubscribeRequest, caller: Caller) -> bytes:
        sub = self.subscribe(request, caller, action="snapshot")
        try:
            return sub.subscriber.frame_bytes(self._latest[request.world_id])
        finally:
            sub.close()

    def watch(self, caller: Caller) -> Identity | None:
        """Check that ``caller`` may read worlds (the REST reads, ListWorlds)."""
        return self.guard.watcher(caller)

    async def submit(self, request: pb.SubmitCommandRequest, caller: Caller
                     ) -> pb.SubmitCommandReply:
        """Authenticate, limit, validate, authorize, sign, append; one audit record each."""
        if self.tracer is None:
            return await self._submit(request, caller)
        # A refusal ends the span with its error: a trace of one hop.
        with self.tracer.start_as_current_span(
                "SubmitCommand", kind=tracing.SERVER,
                attributes={tracing.FACE: caller.face, tracing.WORLD: request.world_id[:200]}):
            return await self._submit(request, caller)

    async def _submit(self, request: pb.SubmitCommandRequest, caller: Caller
                      ) -> pb.SubmitCommandReply:
        identity: Identity | None = None
        facts: dict[str, Any] = {"world_id": request.world_id[:200] or None}
        try:
            identity = self.guard.authenticate(caller)
            self.guard.check_sender(identity, request.player_id)
            command = self._command(request, identity)
            facts.update(command_id=str(command.command_id),
                         command_type=type(command.command).__name__)
            if self.tracer is not None:
                trace.get_current_span().set_attributes({
                    tracing.COMMAND_ID: facts["command_id"],
                    tracing.COMMAND_TYPE: facts["command_type"]})
            new_world = (command.world_id not in self._latest
                         and command.world_id not in self._commanded)
            signed, avro = self.guard.admit(identity, command, new_world)
            # Once per command id: a retry gets the first append's answer, another
            # command under a taken id is CommandIdInUse.
            partition, offset = await self.outcomes.admit(
                signed, lambda c: self._append(c, avro))
        except Exception as exc:
            self.guard.record(caller, "submit", outcome_of(exc), identity, str(exc), **facts)
            raise
        self._commanded.add(command.world_id)
        self.guard.record(caller, "submit", "ADMITTED", identity, command_offset=offset,
                          **facts)
        return pb.SubmitCommandReply(command_id=str(command.command_id), partition=partition,
                                     offset=offset)

    def _command(self, request: pb.SubmitCommandRequest, identity: Identity
                 ) -> models.PlayerCommand:
        """The command as the models read it, sent by ``identity`` (never by the request)."""
        if len(request.command_json) > self.max_command_bytes:
            raise MessageTooLarge(f"command_json of {len(request.command_json)} bytes; at most "
                                  f"{self.max_command_bytes}")
        try:
            body = _COMMAND.validate_python(orjson.loads(request.command_json))
            now = datetime.now(UTC)
            return models.PlayerCommand(
                command_id=uuid.UUID(request.command_id) if request.command_id else uuid.uuid4(),
                player_id=identity.player_id, world_id=request.world_id,
                client_ts=now, received_ts=now, command=body)
        except (ValidationError, orjson.JSONDecodeError, ValueError) as exc:
            raise InvalidCommand(f"command refused: {_short(exc)}") from None

    async def outcome(self, request: pb.GetOutcomeRequest) -> pb.CommandOutcome:
        """A command's outcome, waiting up to ``wait_ms`` for a pending one."""
        command_id = command_id_of(request.command_id)
        return outcome_message(await self.outcomes.wait(command_id, request.wait_ms / 1000))

    # Resuming.

    def _park(self, subscription: Subscription) -> None:
        if not subscription.session or subscription.subscriber.last_tick == 0:
            return
        self._parked.pop(subscription.session, None)
        self._parked[subscription.session] = (subscription, time.monotonic())
        while len(self._parked) > self.settings.max_parked:
            self._parked.popitem(last=False)

    def _unpark(self, request: pb.SubscribeRequest, identity: Identity | None
                ) -> Subscription | None:
        """The parked subscription this request resumes, if it is recent and at its tick."""
        cutoff = time.monotonic() - self.settings.resume_window_s
        while self._parked and next(iter(self._parked.values()))[1] < cutoff:
            self._parked.popitem(last=False)
        if not request.session:
            return None
        parked = self._parked.pop(request.session, None)
        if parked is None:
            return None
        subscription = parked[0]
        if (subscription.world_id != request.world_id or request.resume_tick == 0
                or subscription.subscriber.last_tick != request.resume_tick
                or subscription.subscriber.predicted != (request.encoding == pb.PREDICTED)
                or _who(subscription.identity) != _who(identity)):
            return None
        return subscription

    # Waiting for news.

    def _wake(self, world_id: str) -> None:
        event = self._changed.pop(world_id, None)
        if event is not None:
            event.set()

    async def _next(self, world_id: str, subscriber: Subscriber) -> Tick:
        while True:
            tick = self._latest[world_id]
            if subscriber.due(tick):
                return tick
            event = self._changed.setdefault(world_id, asyncio.Event())
            await event.wait()


def _who(identity: Identity | None) -> str | None:
    return None if identity is None else identity.player_id


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc)
