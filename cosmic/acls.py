"""Who may do what on Kafka: one declarative table of identities and their grants.

The local stack's broker denies everything that is not granted here
(``allow.everyone.if.no.acl.found=false``); ``admin`` is its super user. The
stack creates these ACLs when it starts and ``cosmic topics create`` brings a
cluster in line with them, so this table, the docs (``docs/security.md``
prints it) and the broker cannot disagree.

Each grant names a resource pattern (a topic, a consumer group or a
transactional id; literal or prefixed) and the operations allowed on it.
Idempotent producers need nothing more than WRITE on a topic (KIP-679). A
transactional producer needs WRITE and DESCRIBE on its transactional id, and
READ on the group whose offsets it commits inside the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cosmic import topics
from cosmic.settings import Settings
from cosmic.topics import Topic

Resource = Literal["topic", "group", "transactional_id"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "CREATE"]

# The identity platform tools, topic reconciliation and tests run as: the broker's super
# user, so it needs no grant (and can repair any).
ADMIN = "admin"
# An identity with no rights at all: a stolen player credential must not reach the log.
PLAYER = "player"


@dataclass(frozen=True, slots=True)
class Grant:
    resource: Resource
    name: str
    operations: tuple[Operation, ...]
    prefixed: bool = False

    def covers(self, resource: Resource, name: str) -> bool:
        if resource != self.resource:
            return False
        return name.startswith(self.name) if self.prefixed else name == self.name


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    doc: str
    grants: tuple[Grant, ...] = ()

    def allowed(self, resource: Resource, name: str, operation: Operation) -> bool:
        return any(operation in g.operations for g in self.grants if g.covers(resource, name))


def read(*ts: Topic) -> tuple[Grant, ...]:
    return tuple(Grant("topic", t.name, ("READ", "DESCRIBE")) for t in ts)


def write(*ts: Topic) -> tuple[Grant, ...]:
    return tuple(Grant("topic", t.name, ("WRITE", "DESCRIBE")) for t in ts)


def group(prefix: str) -> Grant:
    """Consumer groups named ``prefix...``: join, fetch and commit their offsets."""
    return Grant("group", prefix, ("READ", "DESCRIBE"), prefixed=True)


def transactions(prefix: str) -> Grant:
    return Grant("transactional_id", prefix, ("WRITE", "DESCRIBE"), prefixed=True)


# Topics only platform tools write, as admin: banning a player or revoking a token is an
# operator's act (`cosmic auth ban/revoke`), never a service's.
ADMIN_WRITES: frozenset[str] = frozenset({topics.REVOCATIONS.name})

# Every topic whose records describe the game: what the stores and the jobs read.
EVENT_TOPICS: tuple[Topic, ...] = tuple(t for t in topics.ALL if t is not topics.DLQ)


def identities(settings: Settings) -> tuple[Identity, ...]:
    """The table. Group and transactional-id names come from ``settings`` where the
    services take them from there, so renaming a group in the settings moves its grant."""
    ph, lm, lv = settings.physics, settings.live_metrics, settings.living
    T = topics
    return (
        Identity(ADMIN, "platform tools, topic and ACL reconciliation, tests (super user)"),
        Identity(
            "gateway", "the front door: writes player commands, serves deltas and snapshots",
            # It audits every attempt, and follows the bans and revoked tokens.
            write(T.COMMANDS, T.AUDIT)
            + read(T.STATE_DELTAS, T.STATE_SNAPSHOTS, T.PHYSICS_TICKS, T.COMMANDS_REJECTED,
                   T.WORLDS, T.REVOCATIONS)
            # Its event-log readers (snapshots for late joiners) are cosmic-log-... groups.
            + (group("cosmic-gateway"), group("cosmic-log-"), group("cosmic-revocations")),
        ),
        Identity(
            "physics", "the world service: reads commands, writes every world event",
            # It writes commands too: a command another client's partitioner put off its
            # world's home partition is forwarded there.
            read(T.COMMANDS, T.PHYSICS_TICKS, T.STATE_SNAPSHOTS, T.STATE_SNAPSHOT_HISTORY,
                 T.WORLDS)
            + write(T.COMMANDS, T.PHYSICS_TICKS, T.STATE_DELTAS, T.STATE_SNAPSHOTS,
                    T.STATE_SNAPSHOT_HISTORY, T.COMMANDS_REJECTED, T.WORLDS, T.DLQ)
            + (group(ph.group_id), group("cosmic-log-"), transactions("cosmic-physics-")),
        ),
        Identity(
            "living", "the Faust apps (ecosystem, civilization) and their tables",
            read(T.COMMANDS, T.PHYSICS_TICKS, T.STATE_DELTAS, T.STATE_SNAPSHOTS,
                 T.PLANET_STATUS)
            + write(T.ECOSYSTEM_EVENTS, T.CIVILIZATION_EVENTS, T.PLANET_STATUS,
                    T.COMMANDS_REJECTED, T.DLQ)
            # Faust names its changelog and assignor topics, its group and its
            # transactional ids after the app id, and creates those topics itself.
            + tuple(g for app in (lv.ecosystem_app_id, lv.civilization_app_id) for g in (
                Grant("topic", f"{app}-", ("READ", "WRITE", "DESCRIBE", "CREATE"),
                      prefixed=True),
                group(app), transactions(app))),
        ),
        Identity(
            "detector", "cheat and anomaly detection: watches commands and refusals, flags",
            read(T.COMMANDS, T.COMMANDS_REJECTED) + write(T.SECURITY_FLAGS)
            + (group("cosmic-security-detector"),),
        ),
        Identity(
            "connectors", "sinks into TimescaleDB, ClickHouse and the lake: read, dead-letter",
            # The archive keeps the DLQ too.
            read(*T.ALL) + write(T.DLQ) + (group("cosmic-connector-"),),
        ),
        Identity(
            "jobs", "Flink live metrics and Spark warehouse builds",
            read(*EVENT_TOPICS) + write(T.METRICS, T.DLQ)
            # Spark's Kafka source names its own groups spark-kafka-...
            + (group(lm.group_id), group("spark-kafka-")),
        ),
        Identity(
            "players", "the synthetic players: a frontend that writes commands to Kafka itself",
            write(T.COMMANDS) + read(T.STATE_DELTAS, T.STATE_SNAPSHOTS)
            + (group("cosmic-players"), group("cosmic-log-")),
        ),
        Identity(
            "registry", "the embedded schema registry's own store",
            (Grant("topic", settings.registry.topic, ("READ", "WRITE", "DESCRIBE", "CREATE")),
             group("cosmic-schema-registry")),
        ),
        Identity(PLAYER, "a game client's identity: no rights on any topic (deny by default)"),
    )


def by_name(settings: Settings) -> dict[str, Identity]:
    return {i.name: i for i in identities(settings)}


def _describe(ident: Identity) -> str:
    if not ident.grants:
        return "super user" if ident.name == ADMIN else "none"
    by_kind: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for g in ident.grants:
        name = f"`{g.name}`" + ("*" if g.prefixed else "")
        by_kind.setdefault((g.resource, g.operations), []).append(name)
    return "; ".join(f"{resource.replace('_', ' ')} {'/'.join(ops).lower()}: {', '.join(names)}"
                     for (resource, ops), names in by_kind.items())


def markdown(settings: Settings) -> str:
    """The table as documentation (``cosmic topics acls``; docs/security.md holds it)."""
    rows = ["| identity | what it is | grants (`*`: every name with this prefix) |",
            "|---|---|---|"]
    rows += [f"| `{i.name}` | {i.doc} | {_describe(i)} |" for i in identities(settings)]
    return "\n".join(rows)
