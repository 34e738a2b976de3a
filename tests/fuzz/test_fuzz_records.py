"""Every consumed record, fuzzed: mutated valid bytes end as a typed error, a rejection or
a state change, never as any other exception.

- Commands, as the physics worker's intake and then a world take them: decode to the
  model (or a SerializationError, a dead letter), then apply (or a rejection).
- Every other schema, as the connectors and the Faust apps decode them.
- Snapshot records, as recovery restores them; snapshot files, as `cosmic replay
  --from-file` reads them.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmic.errors import CosmicError, SerializationError
from schemas import catalog, models
from schemas.registry.compatibility import ParsedSchema
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry
from schemas.typed import ModelDeserializer
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.commands import advance
from streams.worlds.events import snapshot_record, state_from_snapshot
from streams.worlds.pointintime import read_snapshot_file
from streams.worlds.state import WorldState
from tests.fuzz.conftest import PROFILE
from tests.fuzz.mutations import mutated
from tests.unit.avro_strategies import records

REGISTRY = LocalRegistry()
CTX = SerializationContext("fuzz-commands")


def ctx(name: str) -> SerializationContext:
    """A topic of its own per schema: one subject, one record type."""
    return SerializationContext(f"fuzz-{name}")

RING = signing.KeyRing.generate()
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _world() -> WorldState:
    state = WorldState.empty("w", 0)
    opening = scenario.star_system("w", asteroids=5)
    advance(state, list(enumerate(signing.sign(c, models.Role.OPERATOR, RING) for c in opening)))
    return state


WORLD = _world()
SNAPSHOT = snapshot_record(WORLD, 0)


def _valid_commands() -> list[bytes]:
    ser = AvroSerializer(REGISTRY, "PlayerCommand")
    out = []
    for body in (
        models.ApplyImpulse(body_id=scenario.STAR_ID, dv=models.Vec3(x=0.1, y=0, z=0)),
        models.SpawnBody(body_id=77, kind=models.BodyKind.MOON, mass=1e-9, radius=1e-6,
                         position=models.Vec3(x=2, y=0, z=0), velocity=models.Vec3(x=0, y=4, z=0)),
        models.RemoveBody(body_id=scenario.MOON_ID),
        models.TransferBody(body_id=scenario.STAR_ID, new_owner="mallory"),
        models.SetWorldParams(G=1.0, softening=0.0, tick_rate_hz=30, dt=0.01,
                              merge_on_contact=True, snapshot_every=10),
    ):
        for role in (models.Role.PLAYER, models.Role.OPERATOR):
            cmd = models.PlayerCommand(command_id=uuid.uuid4(), player_id="p", world_id="w",
                                       client_ts=NOW, received_ts=NOW, command=body)
            out.append(ser(signing.sign(cmd, role, RING).to_avro(), CTX))
    return out


COMMANDS = _valid_commands()
DECODE_COMMAND = ModelDeserializer(REGISTRY, models.PlayerCommand)


@settings.get_profile(PROFILE)
@given(data=st.sampled_from(COMMANDS).flatmap(mutated))
def test_a_mutated_command_is_a_dead_letter_or_a_decision(data: bytes) -> None:
    try:
        command = DECODE_COMMAND(data, CTX)
    except SerializationError:
        return  # the worker dead-letters it
    state = state_from_snapshot(SNAPSHOT, 0)
    outcome = advance(state, [(1000, command)], authenticate=lambda c: signing.verify(c, RING))
    assert outcome.n_applied + outcome.n_rejected == 1  # applied or rejected, with a reason


OTHER_SCHEMAS = [n for n in catalog.names() if n != "PlayerCommand"]


PARSED = {name: ParsedSchema(catalog.load(name)) for name in OTHER_SCHEMAS}
ENCODERS = {name: AvroSerializer(REGISTRY, name) for name in OTHER_SCHEMAS}
DECODERS = {name: AvroDeserializer(REGISTRY, name) for name in OTHER_SCHEMAS}


@settings.get_profile(PROFILE)
@given(name=st.sampled_from(OTHER_SCHEMAS), data=st.data())
def test_every_schema_decodes_mutated_bytes_or_says_why(name: str, data: st.DataObject) -> None:
    valid = ENCODERS[name](data.draw(records(PARSED[name])), ctx(name))
    raw = data.draw(mutated(valid))
    with contextlib.suppress(SerializationError):
        DECODERS[name](raw, ctx(name))


SNAPSHOT_BYTES = AvroSerializer(REGISTRY, "WorldSnapshot")(SNAPSHOT, ctx("WorldSnapshot"))
DECODE_SNAPSHOT = AvroDeserializer(REGISTRY, "WorldSnapshot")


@settings.get_profile(PROFILE)
@given(raw=mutated(SNAPSHOT_BYTES))
def test_a_mutated_snapshot_record_restores_or_is_refused(raw: bytes) -> None:
    try:
        record = DECODE_SNAPSHOT(raw, ctx("WorldSnapshot"))
        state = state_from_snapshot(record, 0)
    except (SerializationError, ValueError, KeyError, TypeError, CosmicError):
        return  # recovery reports the world as not rebuildable (quarantine)
    state.state_hash()  # a restored state can at least be hashed and compared


def _snapshot_file() -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, catalog.parsed("WorldSnapshot"), [SNAPSHOT])
    return out.getvalue()


SNAPSHOT_FILE = _snapshot_file()


@settings.get_profile(PROFILE)
@given(raw=mutated(SNAPSHOT_FILE))
def test_a_mutated_snapshot_file_is_read_or_refused_with_a_reason(raw: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".avro") as f:
        f.write(raw)
        f.flush()
        try:
            read_snapshot_file(Path(f.name))
        except CosmicError as exc:
            assert str(exc)
