"""Pydantic models of the records APIs accept: player commands (and their rejection).

The ``.avsc`` files are the wire contract; these models sit beside them for
validation at the edge (gateway, CLI) with stricter rules than Avro can
express (positive masses, finite vectors, ordered temperature range). A unit
test checks that every model instance converts to a record the Avro schema
accepts and back, so the two cannot drift apart.

In JSON, a command body names its kind in ``type`` (``{"type": "RemoveBody",
"body_id": 7}``); on the wire the Avro union branch carries it instead.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.catalog import NAMESPACE

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]
Int32 = Annotated[int, Field(ge=-(2**31), lt=2**31)]


def _millis(ts: datetime) -> datetime:
    """Avro timestamp-millis keeps milliseconds: truncate so a round trip is exact."""
    return ts.astimezone(UTC).replace(microsecond=ts.microsecond // 1000 * 1000)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BodyKind(StrEnum):
    STAR = "STAR"
    PLANET = "PLANET"
    MOON = "MOON"
    ASTEROID = "ASTEROID"


class Diet(StrEnum):
    HERBIVORE = "HERBIVORE"
    CARNIVORE = "CARNIVORE"
    OMNIVORE = "OMNIVORE"
    PHOTOSYNTH = "PHOTOSYNTH"


class RejectReason(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNKNOWN_BODY = "UNKNOWN_BODY"
    UNKNOWN_PLANET = "UNKNOWN_PLANET"
    UNKNOWN_SPECIES = "UNKNOWN_SPECIES"
    DUPLICATE_ID = "DUPLICATE_ID"
    UNKNOWN_WORLD = "UNKNOWN_WORLD"
    NOT_PERMITTED = "NOT_PERMITTED"
    RATE_LIMITED = "RATE_LIMITED"
    OUT_OF_BOUNDS = "OUT_OF_BOUNDS"
    DUPLICATE_COMMAND = "DUPLICATE_COMMAND"
    INTERNAL = "INTERNAL"
    WORLD_RETIRED = "WORLD_RETIRED"
    WORLD_QUARANTINED = "WORLD_QUARANTINED"
    WORLD_LIMIT = "WORLD_LIMIT"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class Role(StrEnum):
    """What a gateway may admit a sender as (a world's owner is a player: ownership is state)."""

    PLAYER = "player"
    OPERATOR = "operator"


class Vec3(_Record):
    x: Finite
    y: Finite
    z: Finite


class SpeciesTraits(_Record):
    diet: Diet
    size: Positive
    fertility: NonNegative
    temp_min_k: NonNegative
    temp_max_k: NonNegative

    @model_validator(mode="after")
    def _range(self) -> SpeciesTraits:
        if self.temp_max_k < self.temp_min_k:
            raise ValueError(f"temp_max_k ({self.temp_max_k}) is below temp_min_k ({self.temp_min_k})")
        return self


class _Command(_Record):
    """A command body; ``type`` names it in JSON and is not part of the Avro record."""

    avro_name: ClassVar[str]

    def to_avro(self) -> tuple[str, dict[str, Any]]:
        """fastavro's union notation: (record full name, record)."""
        return self.avro_name, self.model_dump(mode="python", exclude={"type"})


class SpawnBody(_Command):
    avro_name: ClassVar[str] = f"{NAMESPACE}.SpawnBody"
    type: Literal["SpawnBody"] = "SpawnBody"
    body_id: Int64
    kind: BodyKind
    mass: Positive
    radius: Positive
    position: Vec3
    velocity: Vec3


class ApplyImpulse(_Command):
    avro_name: ClassVar[str] = f"{NAMESPACE}.ApplyImpulse"
    type: Literal["ApplyImpulse"] = "ApplyImpulse"
    body_id: Int64
    dv: Vec3


class RemoveBody(_Command):
    avro_name: ClassVar[str] = f"{NAMESPACE}.RemoveBody"
    type: Literal["RemoveBody"] = "RemoveBody"
    body_id: Int64


class SeedSpecies(_Command):
    avro_name: ClassVar[str] = f"{NAMESPACE}.SeedSpecies"
    type: Literal["SeedSpecies"] = "SeedSpecies"
    planet_id: Int64
    species_id: Int64
    traits: SpeciesTraits
    initial_population: Annotated[int, Field(gt=0, lt=2**63)]


class FoundCivilization(_Command):
    avro_name: ClassVar[str] = f"{NAMESPACE}.FoundCivilization"
    type: Literal["FoundCivilization"] = "FoundCivilization"
    planet_id: Int64
    civilization_id: Int64
    name: Annotated[str, Field(min_length=1, max_length=200)]


class SetWorldParams(_Command):
    avro_name: ClassVar[str] = f"{NAMESPACE}.SetWorldParams"
    type: Literal["SetWorldParams"] = "SetWorldParams"
    G: NonNegative
    softening: NonNegative
    tick_rate_hz: Positive
    dt: Positive
    merge_on_contact: bool
    snapshot_every: Annotated[int, Field(gt=0, lt=2**31)]


class AdoptSnapshot(_Command):
    """Operator command (fork / restore): take a recorded snapshot's bodies and parameters."""

    avro_name: ClassVar[str] = f"{NAMESPACE}.AdoptSnapshot"
    type: Literal["AdoptSnapshot"] = "AdoptSnapshot"
    snapshot_partition: Int32
    snapshot_offset: Annotated[int, Field(ge=0, lt=2**63)]
    state_hash: Annotated[str, Field(pattern=r"^[0-9a-f]+$")]
    source_world_id: Annotated[str, Field(min_length=1)]
    source_tick: Annotated[int, Field(ge=0, lt=2**63)]
    reason: str


class RetireWorld(_Command):
    """Operator command: a final snapshot, then the world stops for good."""

    avro_name: ClassVar[str] = f"{NAMESPACE}.RetireWorld"
    type: Literal["RetireWorld"] = "RetireWorld"
    reason: str


class TransferBody(_Command):
    """Give a body to another player (its owner, the world's owner or an operator may)."""

    avro_name: ClassVar[str] = f"{NAMESPACE}.TransferBody"
    type: Literal["TransferBody"] = "TransferBody"
    body_id: Int64
    new_owner: Annotated[str, Field(min_length=1, max_length=200)]


Command = Annotated[
    SpawnBody | ApplyImpulse | RemoveBody | SeedSpecies | FoundCivilization | SetWorldParams
    | AdoptSnapshot | RetireWorld | TransferBody,
    Field(discriminator="type"),
]
COMMAND_TYPES: dict[str, type[_Command]] = {
    c.avro_name: c for c in (SpawnBody, ApplyImpulse, RemoveBody, SeedSpecies, FoundCivilization, SetWorldParams,
                             AdoptSnapshot, RetireWorld, TransferBody)
}


class Admission(_Record):
    """A gateway's HMAC over a command, with the role it granted the sender."""

    key_id: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role
    signature: Annotated[bytes, Field(min_length=16, max_length=64)]


class PlayerCommand(_Record):
    """The envelope of every player command (topic ``cosmic.commands.v1``)."""

    command_id: uuid.UUID
    player_id: Annotated[str, Field(min_length=1)]
    world_id: Annotated[str, Field(min_length=1)]
    client_ts: AwareDatetime
    received_ts: AwareDatetime
    command: Command
    # Set by the gateway that admitted the command (streams.security.signing), never by
    # a client: the faces build PlayerCommands themselves.
    admission: Admission | None = None

    def to_avro(self) -> dict[str, Any]:
        """The record as the PlayerCommand schema's writer expects it."""
        return {
            "command_id": self.command_id,
            "player_id": self.player_id,
            "world_id": self.world_id,
            "client_ts": _millis(self.client_ts),
            "received_ts": _millis(self.received_ts),
            "command": self.command.to_avro(),
            # Plain values (the role's string, not the enum): the serde's compiled writer
            # takes them; an enum member sends every signed command to fastavro (~4x slower).
            "admission": None if self.admission is None else {
                "key_id": self.admission.key_id, "role": self.admission.role.value,
                "signature": self.admission.signature},
        }

    def admitted(self, admission: Admission) -> PlayerCommand:
        """This command with ``admission`` set: what ``model_copy(update=...)`` makes (the
        same values, the same fields set, no extras; a unit test compares them) in half
        its time. A gateway signs every command it admits: this is on that path."""
        copy = PlayerCommand.__new__(PlayerCommand)
        values = dict(self.__dict__)
        values["admission"] = admission
        object.__setattr__(copy, "__dict__", values)
        object.__setattr__(copy, "__pydantic_fields_set__",
                           self.__pydantic_fields_set__ | {"admission"})
        object.__setattr__(copy, "__pydantic_extra__", None)
        object.__setattr__(copy, "__pydantic_private__", None)
        return copy

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> PlayerCommand:
        """A decoded record (union read as ``(name, body)``) back as a model."""
        name, body = record["command"]
        command = COMMAND_TYPES[name].model_validate(body)
        return cls.model_validate({**record, "command": command})


class CommandRejected(_Record):
    """Why a command was not applied (value schema ``CommandRejected``)."""

    command_id: uuid.UUID
    world_id: str
    player_id: str
    reason: RejectReason
    message: str
    tick: Int64 | None = None
    command_offset: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    ts: AwareDatetime

    def to_avro(self) -> dict[str, Any]:
        return {**self.model_dump(mode="python"), "ts": _millis(self.ts)}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> CommandRejected:
        return cls.model_validate(record)
