"""The worker's deterministic core: commands, ticks, snapshots and dead-reckoned deltas."""

from __future__ import annotations

import itertools
import math
from io import BytesIO

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from cosmic.errors import SerializationError
from schemas import catalog, models
from schemas.errors import FailedValidation
from schemas.typed import to_model
from streams.physics import backends
from streams.physics.errors import BackendUnavailable
from streams.worlds import scenario
from streams.worlds.commands import advance
from streams.worlds.deltas import DeadReckoner, DeltaMirror
from streams.worlds.events import snapshot_record, state_from_snapshot, tick_record
from streams.worlds.recovery import BackendMismatch, replay
from streams.worlds.state import WORLD_RADIUS, WorldState


def _through_avro(schema: str, record: dict) -> dict:
    """Encode and decode with the real schema, as a consumer would receive it."""
    parsed = parse_schema(catalog.load(schema))
    buf = BytesIO()
    schemaless_writer(buf, parsed, record)
    buf.seek(0)
    return schemaless_reader(buf, parsed, return_record_name=True,
                             return_record_name_override=True)


def _typed(record: dict) -> models.PlayerCommand:
    """What the worker's intake makes of a record: Avro, then the model's rules."""
    return to_model(models.PlayerCommand, _through_avro("PlayerCommand", record))


def _batch(offset: int, records: list[dict]) -> list[tuple[int, models.PlayerCommand]]:
    """The commands of ``records`` that reach a tick (the rest are dead letters)."""
    out = []
    for k, record in enumerate(records):
        try:
            out.append((offset + k, _typed(record)))
        except SerializationError:
            continue
    return out


def _opening(world: str = "w", asteroids: int = 30) -> list[tuple[int, models.PlayerCommand]]:
    cmds = scenario.star_system(world, asteroids=asteroids, snapshot_every=25)
    return [(k, _typed(c.to_avro())) for k, c in enumerate(cmds)]


def _record(body: tuple[str, dict], world: str = "w") -> dict:
    return {"command_id": "5b8c1f5e-2a56-4a52-9d7a-9d1f3b6c2f10", "player_id": "p",
            "world_id": world, "client_ts": 0, "received_ts": 0,
            "command": (f"io.cosmicgarden.{body[0]}", body[1])}


def _command(body: tuple[str, dict], world: str = "w") -> models.PlayerCommand:
    return _typed(_record(body, world))


def _spawn(body_id: int, mass: float = 1e-9, pos=(3.0, 0.0, 0.0), vel=(0.0, 3.6, 0.0)):
    return ("SpawnBody", {"body_id": body_id, "kind": "ASTEROID", "mass": mass, "radius": 1e-6,
                          "position": dict(zip("xyz", pos, strict=True)),
                          "velocity": dict(zip("xyz", vel, strict=True))})


def test_opening_commands_build_the_star_system():
    state = WorldState.empty("w", 0)
    out = advance(state, _opening())
    assert out.n_applied == 1 + 1 + 5 + 1 + 30 and out.n_rejected == 0
    assert len(state.world) == 37
    assert state.tick_rate_hz == 30.0 and state.snapshot_every == 25
    assert state.kinds[scenario.STAR_ID] == 0 and state.kinds[scenario.MOON_ID] == 2
    assert state.last_command_offset == 37


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (("RemoveBody", {"body_id": 999_999}), "UNKNOWN_BODY"),
        (("ApplyImpulse", {"body_id": 999_999, "dv": {"x": 0, "y": 0, "z": 0}}), "UNKNOWN_BODY"),
        (_spawn(7, pos=(2 * WORLD_RADIUS, 0, 0)), "OUT_OF_BOUNDS"),
        (_spawn(scenario.STAR_ID), "DUPLICATE_ID"),
        (("SetWorldParams", {"G": 0.0, "softening": 0.0, "tick_rate_hz": 30.0, "dt": 0.01,
                             "merge_on_contact": False, "snapshot_every": 10}), "INVALID_ARGUMENT"),
        (("SetWorldParams", {"G": 1.0, "softening": 0.0, "tick_rate_hz": 20_000.0, "dt": 0.01,
                             "merge_on_contact": False, "snapshot_every": 10}), "INVALID_ARGUMENT"),
    ],
)
def test_invalid_commands_are_rejected_and_leave_the_world_unchanged(body, reason):
    state = WorldState.empty("w", 0)
    advance(state, _opening(asteroids=3))
    before = state.world.copy()
    params_before = (state.world.params, state.tick_rate_hz, state.dt)
    out = advance(state, [(100, _command(body))])
    assert out.n_applied == 0 and out.n_rejected == 1
    assert out.rejections[0].reason == reason
    assert out.rejections[0].offset == 100
    assert out.rejections[0].message
    assert (state.world.params, state.tick_rate_hz, state.dt) == params_before
    before.step(state.dt)  # the rejected tick still stepped: compare against a plain step
    np.testing.assert_array_equal(state.world.ids, before.ids)
    assert state.world.state_hash() == before.state_hash()


@pytest.mark.parametrize(
    "body",
    [
        _spawn(7, mass=-1.0),
        _spawn(7, mass=0.0),
        _spawn(7, pos=(math.nan, 0, 0)),
        _spawn(7, vel=(math.inf, 0, 0)),
        ("ApplyImpulse", {"body_id": scenario.STAR_ID, "dv": {"x": math.nan, "y": 0, "z": 0}}),
        ("SetWorldParams", {"G": 1.0, "softening": 0.0, "tick_rate_hz": 0.0, "dt": 0.01,
                            "merge_on_contact": False, "snapshot_every": 10}),
        ("SetWorldParams", {"G": -1.0, "softening": 0.0, "tick_rate_hz": 30.0, "dt": 0.01,
                            "merge_on_contact": False, "snapshot_every": 10}),
    ],
)
def test_commands_that_break_the_model_never_reach_a_world(body):
    with pytest.raises(FailedValidation) as err:
        _command(body)
    assert isinstance(err.value, SerializationError)  # so the intake dead-letters it
    assert "not a valid PlayerCommand" in str(err.value)


def test_retire_rejects_what_follows_in_its_tick():
    state = WorldState.empty("w", 0)
    advance(state, _opening(asteroids=3))
    out = advance(state, [(60, _command(("RetireWorld", {"reason": "season over"}))),
                          (61, _command(("RemoveBody", {"body_id": scenario.STAR_ID})))])
    assert out.retire_reason == "season over"
    assert (out.n_applied, out.n_rejected) == (1, 1)
    assert out.rejections[0].reason == models.RejectReason.WORLD_RETIRED
    assert scenario.STAR_ID in set(state.world.ids.tolist())


def test_a_failing_command_is_rejected_as_internal_and_the_world_goes_on(monkeypatch):
    state = WorldState.empty("w", 0)
    advance(state, _opening(asteroids=3))
    before = state.state_hash()

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(state.world, "apply_impulse", broken)
    out = advance(state, [(70, _command(("ApplyImpulse", {"body_id": scenario.STAR_ID,
                                                          "dv": {"x": 1, "y": 0, "z": 0}})))])
    assert out.rejections[0].reason == models.RejectReason.INTERNAL
    assert "ZeroDivisionError" in out.rejections[0].message
    assert out.tick == 2 and state.state_hash() != before  # it still ticked


def test_the_hash_covers_kinds_tick_rate_and_snapshot_interval():
    state = WorldState.empty("w", 0)
    advance(state, _opening(asteroids=3))
    base = state.state_hash()
    for change in ("kind", "rate", "every", "dt"):
        other = state_from_snapshot(snapshot_record(state, 0), 0)
        assert other.state_hash() == base
        if change == "kind":
            other.kinds[scenario.STAR_ID] = 3
        elif change == "rate":
            other.tick_rate_hz += 1
        elif change == "every":
            other.snapshot_every += 1
        else:
            other.dt *= 2
        assert other.state_hash() != base, change


def test_ecosystem_commands_are_not_physics():
    state = WorldState.empty("w", 0)
    advance(state, _opening(asteroids=3))
    seed = ("SeedSpecies", {"planet_id": 12, "species_id": 1, "initial_population": 10,
                            "traits": {"diet": "HERBIVORE", "size": 1.0, "fertility": 0.5,
                                       "temp_min_k": 250.0, "temp_max_k": 320.0}})
    out = advance(state, [(50, _command(seed))])
    assert (out.n_applied, out.n_rejected) == (0, 0)
    assert state.last_command_offset == 50


def _run(n_ticks: int, seed: int = 3) -> tuple[list[str], WorldState]:
    state = WorldState.empty("w", 0)
    advance(state, _opening())
    stream = scenario.player_commands("w", seed=seed, asteroids=30, invalid_every=7)
    hashes = []
    offset = 1000
    for _ in range(n_ticks):
        batch = _batch(offset, [next(stream) for _ in range(3)])
        offset += 3
        advance(state, batch)
        hashes.append(state.state_hash())
    return hashes, state


def test_same_commands_give_the_same_hash_sequence():
    first, _ = _run(60)
    second, _ = _run(60)
    assert first == second
    assert len(set(first)) == 60
    third, _ = _run(60, seed=4)
    assert third != first


def test_snapshot_round_trip_restores_the_exact_state_and_continues_identically():
    _, state = _run(20)
    rec = _through_avro("WorldSnapshot", snapshot_record(state, ts_ms=1_700_000_000_000))
    restored = state_from_snapshot(rec, partition=0)
    assert restored.state_hash() == state.state_hash() == rec["state_hash"]
    assert restored.kinds == state.kinds
    assert (restored.tick_rate_hz, restored.dt, restored.snapshot_every) == (
        state.tick_rate_hz, state.dt, state.snapshot_every)
    assert restored.last_command_offset == state.last_command_offset
    stream = scenario.player_commands("w", seed=9, asteroids=30)
    for k in range(10):
        batch = _batch(5000 + k, [next(stream)])
        advance(state, batch)
        advance(restored, batch)
        assert restored.state_hash() == state.state_hash()


def test_tick_record_matches_the_schema_and_the_state():
    state = WorldState.empty("w", 2)
    out = advance(state, _opening(asteroids=5))
    rec = _through_avro("PhysicsTick", tick_record(state, out, step_us=42, ts_ms=1_700_000_000_000))
    assert rec["tick"] == 1 and rec["body_count"] == len(state.world)
    assert (rec["first_command_offset"], rec["last_command_offset"]) == (0, 12)
    assert rec["command_partition"] == 2
    assert rec["state_hash"] == state.state_hash()
    assert math.isfinite(rec["total_energy"]) and rec["total_energy"] < 0  # bound system


def test_frontend_applying_deltas_stays_within_tolerance_every_tick():
    tolerance = 1e-4
    state = WorldState.empty("w", 0)
    reckoner = DeadReckoner(tolerance)
    frontend = DeltaMirror()
    stream = scenario.player_commands("w", seed=5, asteroids=30, invalid_every=0)
    offsets = itertools.count(100, 10)
    sent = []
    commands = _opening()
    for tick in range(400):
        out = advance(state, commands)
        commands = _batch(next(offsets), [next(stream) for _ in range(tick % 3)])
        fields = reckoner.delta(state, out)
        fields.update(world_id="w", tick=out.tick, sim_time=out.sim_time, ts=0)
        frontend.apply_record(_through_avro("StateDelta", fields))
        sent.append(int(np.frombuffer(fields["ids"], "<i8").size))

        np.testing.assert_array_equal(frontend.ids, np.sort(state.world.ids))
        order = np.argsort(state.world.ids)
        err = np.linalg.norm(frontend.predict(state.world.time) - state.world.positions[order],
                             axis=1)
        assert err.max() <= tolerance, (tick, err.max())
    # Dead reckoning pays off: after the first full delta, most bodies are not resent.
    assert sent[0] == len(_opening()) - 1
    assert np.mean(sent[50:]) < 0.5 * len(state.world)


class _FlakyGpu:
    """A GPU backend that computes like the CPU until it fails, as a device reset would."""

    name = "cuda"

    def __init__(self, fail_after: int) -> None:
        self.calls, self.fail_after = 0, fail_after

    def accelerations(self, *args):
        self.calls += 1
        if self.calls > self.fail_after:
            raise BackendUnavailable("device lost")
        return backends.CPU.accelerations(*args)

    def potentials(self, *args):
        return backends.CPU.potentials(*args)

    def auto_solver(self, n: int) -> str:
        return backends.CPU.auto_solver(n)


def test_a_gpu_fault_mid_history_is_recorded_in_the_tick_and_replay_says_so():
    state = WorldState.empty("w", 0)
    advance(state, _opening(asteroids=3))
    state.world._backend = _FlakyGpu(fail_after=4)  # the world "runs on a GPU"
    records = []
    try:
        for _ in range(6):
            out = advance(state, [])
            records.append(tick_record(state, out, step_us=1, ts_ms=0))
    finally:
        backends.reset_gpu_probe()
    kinds = [r["backend"] for r in records]
    assert kinds[0] == "cuda" and kinds[-1] == "cpu"  # the switch is in the log, tick by tick

    # A replay on this machine (no GPU) cannot compute the cuda ticks: a verifying replay
    # says so, naming the tick, instead of reporting a hash divergence.
    start = WorldState.empty("w", 0)
    advance(start, _opening(asteroids=3))
    with pytest.raises(BackendMismatch) as err:
        replay(start, records, {}, verify=True)
    assert err.value.tick == records[0]["tick"]
    assert "cuda" in str(err.value) and "cpu" in str(err.value)


def test_a_snapshot_file_of_another_schema_is_a_clear_error(tmp_path):
    import fastavro

    from streams.worlds.pointintime import ReplayError, read_snapshot_file

    path = tmp_path / "metric.avro"
    with path.open("wb") as f:
        fastavro.writer(f, catalog.parsed("MetricPoint"), [{
            "name": "x", "world_id": "w", "label": "", "window_start": 0, "window_end": 0,
            "value": 1.0, "count": 1, "ts": 0}])
    with pytest.raises(ReplayError) as err:
        read_snapshot_file(path)
    assert "MetricPoint records, not WorldSnapshot" in str(err.value)
