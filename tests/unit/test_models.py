"""Pydantic command models and the Avro contract agree, for many generated commands."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cosmic import topics
from schemas import catalog
from schemas.models import (
    ApplyImpulse,
    BodyKind,
    CommandRejected,
    Diet,
    FoundCivilization,
    PlayerCommand,
    RejectReason,
    RemoveBody,
    SeedSpecies,
    SetWorldParams,
    SpawnBody,
    SpeciesTraits,
    Vec3,
)
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry

finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-300, max_value=1e300)
nonneg = st.floats(min_value=0, max_value=1e300)
int64 = st.integers(-(2**63), 2**63 - 1)
aware = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)  # noqa: DTZ001 - hypothesis wants naive bounds
)
vec3 = st.builds(Vec3, x=finite, y=finite, z=finite)


@st.composite
def traits(draw: st.DrawFn) -> SpeciesTraits:
    lo, hi = sorted((draw(nonneg), draw(nonneg)))
    return SpeciesTraits(diet=draw(st.sampled_from(Diet)), size=draw(positive), fertility=draw(nonneg),
                         temp_min_k=lo, temp_max_k=hi)


commands = st.one_of(
    st.builds(SpawnBody, body_id=int64, kind=st.sampled_from(BodyKind), mass=positive, radius=positive,
              position=vec3, velocity=vec3),
    st.builds(ApplyImpulse, body_id=int64, dv=vec3),
    st.builds(RemoveBody, body_id=int64),
    st.builds(SeedSpecies, planet_id=int64, species_id=int64, traits=traits(),
              initial_population=st.integers(1, 2**63 - 1)),
    st.builds(FoundCivilization, planet_id=int64, civilization_id=int64, name=st.text(min_size=1, max_size=50)),
    st.builds(SetWorldParams, G=nonneg, softening=nonneg, tick_rate_hz=positive, dt=positive,
              merge_on_contact=st.booleans(), snapshot_every=st.integers(1, 2**31 - 1)),
)
player_commands = st.builds(
    PlayerCommand, command_id=st.uuids(), player_id=st.text(min_size=1, max_size=20),
    world_id=st.text(min_size=1, max_size=20), client_ts=aware, received_ts=aware, command=commands,
)


@settings(max_examples=300, deadline=None)
@given(player_commands)
def test_every_valid_command_model_is_a_valid_avro_record_and_round_trips(cmd: PlayerCommand) -> None:
    record = cmd.to_avro()
    assert validate(record, catalog.parsed("PlayerCommand"), raise_errors=True)
    registry = LocalRegistry()
    ctx = SerializationContext(topics.COMMANDS.name)
    decoded = AvroDeserializer(registry, "PlayerCommand")(AvroSerializer(registry, "PlayerCommand")(record, ctx), ctx)
    back = PlayerCommand.from_avro(decoded)
    assert back.command == cmd.command
    assert back.command_id == cmd.command_id
    # Avro keeps milliseconds; the model's conversion truncates the same way.
    assert abs((back.client_ts - cmd.client_ts).total_seconds()) < 0.001


@settings(max_examples=100, deadline=None)
@given(
    command_id=st.uuids(), reason=st.sampled_from(RejectReason), message=st.text(),
    tick=st.none() | st.integers(0, 2**63 - 1), ts=aware,
)
def test_command_rejected_model_matches_its_schema(
    command_id: uuid.UUID, reason: RejectReason, message: str, tick: int | None, ts: datetime
) -> None:
    model = CommandRejected(command_id=command_id, world_id="w", player_id="p", reason=reason,
                            message=message, tick=tick, ts=ts)
    assert validate(model.to_avro(), catalog.parsed("CommandRejected"), raise_errors=True)
    registry = LocalRegistry()
    ctx = SerializationContext("test.rejections")
    data = AvroSerializer(registry, "CommandRejected")(model.to_avro(), ctx)
    assert CommandRejected.from_avro(AvroDeserializer(registry, "CommandRejected")(data, ctx)).reason == reason


def test_model_enums_match_schema_symbols() -> None:
    named = catalog.parsed("PlayerCommand")["__named_schemas"]
    assert [k.value for k in BodyKind] == named["io.cosmicgarden.BodyKind"]["symbols"]
    assert [d.value for d in Diet] == named["io.cosmicgarden.Diet"]["symbols"]
    reasons = catalog.parsed("CommandRejected")["__named_schemas"]["io.cosmicgarden.RejectReason"]
    assert [r.value for r in RejectReason] == reasons["symbols"]


def test_model_field_names_match_schema_fields() -> None:
    named = catalog.parsed("PlayerCommand")["__named_schemas"]
    for model in (SpawnBody, ApplyImpulse, RemoveBody, SeedSpecies, FoundCivilization, SetWorldParams):
        fields = [f["name"] for f in named[model.avro_name]["fields"]]
        assert [f for f in model.model_fields if f != "type"] == fields


def test_json_commands_are_discriminated_by_type() -> None:
    body: dict[str, Any] = {
        "command_id": str(uuid.uuid4()), "player_id": "p", "world_id": "w",
        "client_ts": "2026-01-01T00:00:00Z", "received_ts": "2026-01-01T00:00:00.5Z",
        "command": {"type": "ApplyImpulse", "body_id": 3, "dv": {"x": 1, "y": 0, "z": 0}},
    }
    cmd = PlayerCommand.model_validate(body)
    assert isinstance(cmd.command, ApplyImpulse)
    assert cmd.to_avro()["command"][0] == "io.cosmicgarden.ApplyImpulse"


@pytest.mark.parametrize(
    "command",
    [
        {"type": "SpawnBody", "body_id": 1, "kind": "STAR", "mass": -1, "radius": 1,
         "position": {"x": 0, "y": 0, "z": 0}, "velocity": {"x": 0, "y": 0, "z": 0}},
        {"type": "ApplyImpulse", "body_id": 1, "dv": {"x": float("nan"), "y": 0, "z": 0}},
        {"type": "RemoveBody", "body_id": 2**63},
        {"type": "SeedSpecies", "planet_id": 1, "species_id": 2, "initial_population": 5,
         "traits": {"diet": "HERBIVORE", "size": 1, "fertility": 1, "temp_min_k": 300, "temp_max_k": 200}},
        {"type": "Teleport", "body_id": 1},
        {"type": "RemoveBody", "body_id": 1, "extra": True},
    ],
)
def test_invalid_commands_are_refused_at_the_edge(command: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PlayerCommand.model_validate({
            "command_id": str(uuid.uuid4()), "player_id": "p", "world_id": "w",
            "client_ts": "2026-01-01T00:00:00Z", "received_ts": "2026-01-01T00:00:00Z", "command": command,
        })


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        PlayerCommand(command_id=uuid.uuid4(), player_id="p", world_id="w",
                      client_ts=datetime(2026, 1, 1), received_ts=datetime(2026, 1, 1),  # noqa: DTZ001
                      command=RemoveBody(body_id=1))
