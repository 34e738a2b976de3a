"""How commands change a world, and one tick: the pure heart of the world service.

Everything here is a pure function of (state, commands): the live worker, its
recovery, and point-in-time replay all advance worlds through :func:`advance`,
so the same snapshot and the same commands give the same state hash sequence.

Commands arrive as :class:`schemas.models.PlayerCommand` models (the intake
has already resolved the writer's schema and validated the record). Before a
command changes anything, the world asks who sent it (``authenticate``: the
gateway's signature, :mod:`streams.security.signing`), whether it is a retry
of a command it applied (``DUPLICATE_COMMAND``), and whether that sender may
send it here (:mod:`streams.security.policy`, with the owners this world
records). A command the world cannot take is a :class:`~.outcome.Rejection`
with a reason from :data:`REASONS`; anything that goes wrong while applying
one command, a bug included, rejects that command only and leaves the world
as it was.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from cosmic.errors import CosmicError
from schemas import models
from schemas.models import RejectReason, Role
from streams.physics import World
from streams.physics.errors import (
    DuplicateBody,
    InvalidBody,
    InvalidParams,
    PhysicsError,
    UnknownBody,
)
from streams.security import policy, signing
from streams.security.errors import Forbidden, Unauthenticated

from .events import state_from_snapshot
from .outcome import Rejection, TickOutcome
from .state import KIND_CODE, WORLD_RADIUS, SnapshotFetcher, SnapshotUnavailable, WorldState

log = logging.getLogger(__name__)

# Commands the physics worker does not act on: other services (the ecosystem and
# civilization apps) read them from the same log.
NOT_PHYSICS: tuple[type[models.BaseModel], ...] = (models.SeedSpecies, models.FoundCivilization)

# The one table of why the engine refuses a command.
REASONS: tuple[tuple[type[PhysicsError], RejectReason], ...] = (
    (UnknownBody, RejectReason.UNKNOWN_BODY),
    (DuplicateBody, RejectReason.DUPLICATE_ID),
    (InvalidBody, RejectReason.INVALID_ARGUMENT),
    (InvalidParams, RejectReason.INVALID_ARGUMENT),
)

Verdict = tuple[RejectReason, str] | None
# Who sent a command, as its admission proves: the role, or Unauthenticated.
Authenticate = Callable[[models.PlayerCommand], Role]


class CommandRefused(PhysicsError):
    """A command that is well formed but that this world cannot take."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message, reason=reason.value)
        self.reject_reason = reason


def reason_for(exc: PhysicsError) -> RejectReason:
    if isinstance(exc, CommandRefused):
        return exc.reject_reason
    for kind, reason in REASONS:
        if isinstance(exc, kind):
            return reason
    return RejectReason.INVALID_ARGUMENT


def _vec(v: models.Vec3) -> tuple[float, float, float]:
    return (v.x, v.y, v.z)


def apply_command(state: WorldState, command: models.PlayerCommand,
                  fetch_snapshot: SnapshotFetcher | None = None, *,
                  authenticate: Authenticate = signing.trust_all) -> Verdict:
    """Apply one command; return ``(reason, message)`` if it was rejected (state unchanged)."""
    try:
        role = authenticate(command)
    except Unauthenticated as exc:
        return RejectReason.UNAUTHENTICATED, str(exc)
    if command.command_id in state.recent:
        return RejectReason.DUPLICATE_COMMAND, f"command {command.command_id} was applied already"
    body = command.command
    body_id = getattr(body, "body_id", None) if isinstance(body, policy.BODY_COMMANDS) else None
    # A body command on a body the world does not have is UNKNOWN_BODY, whoever sends it.
    if body_id is None or body_id in state.world:
        try:
            policy.check(role, command.player_id, body,
                         body_owner=None if body_id is None else state.owners.get(body_id),
                         world_owner=state.world_owner)
        except Forbidden as exc:
            return RejectReason.NOT_PERMITTED, str(exc)
    try:
        _apply(state, body, fetch_snapshot)
        _take_ownership(state, command, role)
    except PhysicsError as exc:
        return reason_for(exc), str(exc)
    except SnapshotUnavailable:
        raise  # the log could not be read: retry the tick, never decide it
    except Exception as exc:  # isolation: a bug rejects one command, not the world
        log.exception("world %s: command %s failed", state.world_id, command.command_id)
        return RejectReason.INTERNAL, f"{type(exc).__name__}: {exc}"
    return None


def _take_ownership(state: WorldState, command: models.PlayerCommand, role: Role) -> None:
    """What an applied command changes in who owns what, and that it was applied."""
    sender = "" if role is Role.OPERATOR else command.player_id
    if state.world_owner is None:
        state.world_owner = sender
    body = command.command
    if isinstance(body, models.SpawnBody) and sender:
        state.owners[body.body_id] = sender
    state.recent.add(command.command_id)


def _apply(state: WorldState, body: models.Command, fetch_snapshot: SnapshotFetcher | None) -> None:
    w = state.world
    match body:
        case models.SpawnBody():
            pos = _vec(body.position)
            if math.hypot(*pos) > WORLD_RADIUS:
                raise CommandRefused(RejectReason.OUT_OF_BOUNDS,
                                     f"position is beyond the world radius {WORLD_RADIUS:g}")
            w.add_body(body.body_id, body.mass, body.radius, pos, _vec(body.velocity))
            state.kinds[body.body_id] = KIND_CODE[body.kind.value]
        case models.ApplyImpulse():
            w.apply_impulse(body.body_id, _vec(body.dv))
        case models.RemoveBody():
            w.remove_body(body.body_id)
            state.forget_body(body.body_id)
        case models.TransferBody():
            if body.body_id not in w:
                raise UnknownBody(body.body_id)
            state.owners[body.body_id] = body.new_owner
        case models.SetWorldParams():
            _set_params(state, body)
        case models.AdoptSnapshot():
            _adopt(state, body, fetch_snapshot)
        case models.RetireWorld():
            pass  # changes no state: the worker ends the world after this tick
        case _:
            raise CommandRefused(RejectReason.INVALID_ARGUMENT,
                                 f"the physics worker does not take {type(body).__name__}")


def _set_params(state: WorldState, body: models.SetWorldParams) -> None:
    if not body.tick_rate_hz <= 10_000:
        raise InvalidParams(f"tick_rate_hz must be in (0, 10000], got {body.tick_rate_hz!r}")
    # Validated by the engine first, so a bad G leaves every parameter as it was.
    state.world.set_params(G=body.G, softening=body.softening,
                           merge_on_contact=body.merge_on_contact)
    state.tick_rate_hz, state.dt, state.snapshot_every = (
        body.tick_rate_hz, body.dt, body.snapshot_every)


def _adopt(state: WorldState, body: models.AdoptSnapshot,
           fetch_snapshot: SnapshotFetcher | None) -> None:
    """Replace bodies and parameters by a recorded snapshot's; tick and time go on."""
    where = f"history partition {body.snapshot_partition} offset {body.snapshot_offset}"
    record = None if fetch_snapshot is None else fetch_snapshot(
        body.snapshot_partition, body.snapshot_offset)
    if record is None:
        raise CommandRefused(RejectReason.INVALID_ARGUMENT, f"no snapshot at {where}")
    try:
        source = state_from_snapshot(record, state.partition)
        source_hash = source.state_hash()
    except (CosmicError, ValueError, KeyError, TypeError) as exc:
        raise CommandRefused(RejectReason.INVALID_ARGUMENT,
                             f"the snapshot at {where} cannot be restored: {exc}") from None
    if source_hash != body.state_hash or record["state_hash"] != body.state_hash:
        raise CommandRefused(RejectReason.INVALID_ARGUMENT,
                             f"snapshot at {where} does not have hash {body.state_hash}")
    arrays = source.world.to_arrays()
    current = state.world.params
    arrays.update(tick=state.world.tick, time=state.world.time, solver=current.solver,
                  theta=current.theta, backend=current.backend)
    state.world = World.from_arrays(**arrays)
    state.kinds = dict(source.kinds)
    state.owners = dict(source.owners)
    state.tick_rate_hz, state.dt, state.snapshot_every = (
        source.tick_rate_hz, source.dt, source.snapshot_every)


def advance(state: WorldState, commands: Sequence[tuple[int, models.PlayerCommand]],
            fetch_snapshot: SnapshotFetcher | None = None, *,
            authenticate: Authenticate = signing.trust_all) -> TickOutcome:
    """Apply ``commands`` (offset, command) in offset order, then step the world once.

    ``fetch_snapshot`` resolves the snapshots ``AdoptSnapshot`` commands name;
    without it such commands are rejected. ``authenticate`` says who sent each
    command (the live worker, recovery and replay all pass
    :func:`streams.security.signing.authenticator`; the default trusts every
    command, for pure tests of the rules). An error in the step itself (the
    engine, not a command) propagates: the caller quarantines the world.
    """
    applied = 0
    rejections: list[Rejection] = []
    removed: list[int] = []
    changed: list[int] = []
    retire: str | None = None
    for offset, command in commands:
        body = command.command
        if isinstance(body, NOT_PHYSICS):
            continue
        verdict = (apply_command(state, command, fetch_snapshot, authenticate=authenticate)
                   if retire is None
                   else (RejectReason.WORLD_RETIRED, f"world {state.world_id} is retired"))
        if verdict is not None:
            rejections.append(Rejection(offset, command, *verdict))
            continue
        applied += 1
        if isinstance(body, models.SpawnBody):
            changed.append(body.body_id)
        elif isinstance(body, models.RemoveBody):
            removed.append(body.body_id)
        elif isinstance(body, models.AdoptSnapshot):
            changed.extend(int(i) for i in state.world.ids)
        elif isinstance(body, models.RetireWorld) and retire is None:
            retire = body.reason or "retired"
    if commands:
        state.last_command_offset = commands[-1][0]
    for merge in state.world.step(state.dt):
        changed.append(merge.survivor)
        for gone in merge.absorbed:
            removed.append(gone)
            state.forget_body(gone)
    return TickOutcome(
        tick=state.world.tick,
        sim_time=state.world.time,
        first_command_offset=commands[0][0] if commands else None,
        last_command_offset=commands[-1][0] if commands else None,
        n_applied=applied,
        n_rejected=len(rejections),
        rejections=tuple(rejections),
        removed_ids=tuple(removed),
        changed_ids=tuple(changed),
        backend=state.world.backend,
        retire_reason=retire,
    )
