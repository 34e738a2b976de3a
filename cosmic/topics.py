"""The topic registry: every topic of the platform, declared once, as typed objects.

Code refers to topics through the constants here (``topics.COMMANDS``), never
through loose strings. ``cosmic topics create`` reconciles the cluster with
this table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cosmic.errors import TopicError

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
FOREVER = -1
# Kafka compacts only closed segments, and a segment closes at segment.bytes (1 GiB by
# default) or segment.ms (7 days): a compacted topic written slowly would keep every
# record in its open segment, and whoever reads it for the latest per key (recovery,
# the gateway's start) would read them all. Rolling every few minutes bounds that.
COMPACTED_SEGMENT_MS = 5 * 60_000


@dataclass(frozen=True, slots=True)
class Topic:
    """One Kafka topic: its name, what its keys and values are, and how it is kept."""

    name: str
    key: str
    value: str
    doc: str
    partitions: int = 3
    # None: the cluster-wide factor from settings (1 locally, 3 on a real cluster).
    replication: int | None = None
    cleanup_policy: CleanupPolicy = "delete"
    retention_ms: int = 7 * _DAY_MS
    extra_config: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        """Topic-level configs as Kafka expects them."""
        out = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        if "compact" in self.cleanup_policy:
            out["segment.ms"] = str(COMPACTED_SEGMENT_MS)
        out.update(self.extra_config)
        return out

    def __str__(self) -> str:
        return self.name


COMMANDS = Topic(
    "cosmic.commands.v1", key="world id", value="PlayerCommand",
    doc="Player commands: the source of truth of every world.",
    retention_ms=FOREVER,
)
COMMANDS_REJECTED = Topic(
    "cosmic.commands.rejected.v1", key="world id", value="CommandRejected",
    doc="Why a command was refused, for the frontend that sent it.",
    retention_ms=7 * _DAY_MS,
)
PHYSICS_TICKS = Topic(
    "cosmic.physics.ticks.v1", key="world id", value="PhysicsTick",
    doc="One event per world tick: commands applied, energy, state hash, timings.",
    retention_ms=FOREVER,
)
STATE_DELTAS = Topic(
    "cosmic.state.deltas.v1", key="world id", value="StateDelta",
    doc="Columnar changes of bodies, dead-reckoned, for frontends.",
    retention_ms=6 * _HOUR_MS,
)
STATE_SNAPSHOTS = Topic(
    "cosmic.state.snapshots.v1", key="world id", value="WorldSnapshot",
    doc="Full columnar world state every K ticks; compacted to the latest per world.",
    cleanup_policy="compact", retention_ms=FOREVER,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "max.message.bytes": "67108864"},
)
STATE_SNAPSHOT_HISTORY = Topic(
    "cosmic.state.snapshots.history.v1", key="world id", value="WorldSnapshot",
    doc="Every snapshot ever taken, kept by time: point-in-time replay starts from these.",
    retention_ms=90 * _DAY_MS,
    extra_config={"max.message.bytes": "67108864"},
)
WORLDS = Topic(
    "cosmic.worlds.v1", key="world id", value="WorldStatus",
    doc="Each world's lifecycle (active, hibernating, quarantined, retired); compacted to the latest.",
    cleanup_policy="compact", retention_ms=FOREVER,
    extra_config={"min.cleanable.dirty.ratio": "0.1"},
)
ECOSYSTEM_EVENTS = Topic(
    "cosmic.ecosystem.events.v1", key="planet id", value="EcosystemEvent",
    doc="Population changes, extinctions and speciations.",
    retention_ms=FOREVER,
)
CIVILIZATION_EVENTS = Topic(
    "cosmic.civilization.events.v1", key="civilization id", value="CivilizationEvent",
    doc="Foundings, technology advances, collapses and resource use.",
    retention_ms=FOREVER,
)
PLANET_STATUS = Topic(
    "cosmic.living.planets.v1", key="world id / planet id", value="PlanetStatus",
    doc="Internal: planet life after each ecosystem step, for the civilization app.",
    retention_ms=_DAY_MS,
)
METRICS = Topic(
    "cosmic.metrics.v1", key="metric name", value="MetricPoint",
    doc="Windowed metric points computed by the live-metrics job.",
    retention_ms=_DAY_MS,
)
SECURITY_FLAGS = Topic(
    "cosmic.security.flags.v1", key="player id", value="SecurityFlag",
    doc="Players whose commands look impossible or abnormal, with the evidence.",
    retention_ms=90 * _DAY_MS,
)
DLQ = Topic(
    "cosmic.dlq.v1", key="original key", value="original bytes",
    doc="Records that could not be processed; headers name the source and the error.",
    retention_ms=FOREVER,
)
REVOCATIONS = Topic(
    "cosmic.security.revocations.v1", key="'player:<id>' or 'token:<jti>'", value="Revocation",
    doc="Banned players and revoked tokens; every gateway follows it (compacted).",
    cleanup_policy="compact", retention_ms=FOREVER,
    extra_config={"min.cleanable.dirty.ratio": "0.1"},
)
AUDIT = Topic(
    "cosmic.audit.v1", key="gateway instance id", value="AuditRecord",
    doc="Every attempt at a gateway and its outcome, hash-chained per gateway instance.",
    retention_ms=FOREVER,
)

ALL: tuple[Topic, ...] = (
    COMMANDS,
    COMMANDS_REJECTED,
    PHYSICS_TICKS,
    STATE_DELTAS,
    STATE_SNAPSHOTS,
    STATE_SNAPSHOT_HISTORY,
    WORLDS,
    ECOSYSTEM_EVENTS,
    CIVILIZATION_EVENTS,
    PLANET_STATUS,
    METRICS,
    SECURITY_FLAGS,
    DLQ,
    REVOCATIONS,
    AUDIT,
)

_BY_NAME = {t.name: t for t in ALL}


def get(name: str) -> Topic:
    """Look a topic up by name; raises :class:`TopicError` for an unknown one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise TopicError(f"unknown topic {name!r}; known topics: {known}") from None


def parse_routes(pairs: Iterable[str], *, bare: bool = False) -> dict[str, Topic]:
    """``KAFKA_TOPIC=REGISTERED_TOPIC`` options as ``{Kafka topic name: registered topic}``.

    A route says which declared topic's records a Kafka topic carries (a
    private copy for a test, a renamed topic on a shared cluster); every
    ``--route`` option of the CLI, the connectors and the jobs reads this way.
    With ``bare``, a lone name routes a registered topic to itself. An unknown
    registered topic, or a pair without ``=`` where ``bare`` is off, raises
    :class:`TopicError`.
    """
    out: dict[str, Topic] = {}
    for pair in pairs:
        name, sep, carries = pair.partition("=")
        if not sep and not bare:
            raise TopicError(f"route {pair!r}: expected KAFKA_TOPIC=REGISTERED_TOPIC")
        if not name:
            raise TopicError(f"route {pair!r}: the Kafka topic name is empty")
        out[name] = get(carries if sep else name)
    return out
