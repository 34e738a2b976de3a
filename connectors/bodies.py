"""Where bodies are now, in SQL: each world's latest state in PostgreSQL with PostGIS.

Table ``celestial_bodies`` holds one row per body of every world: kind, owner, mass,
radius, position as a ``geometry(PointZ)`` (in AU, no SRID: see
``infra/sql/bodies/001_celestial_bodies.sql``) under an n-D GiST index, velocity, and the
tick that last set it. "Bodies within ``r`` of ``p``" is one indexed query::

    SELECT body_id FROM celestial_bodies
    WHERE world_id = %s AND ST_3DDWithin(position, ST_MakePoint(x, y, z), r)

It is kept current from the snapshot and delta topics:

- A **snapshot** at tick T replaces the world's rows: its bodies are written (float64,
  exact) and every other body of the world is deleted. The two topics are not ordered
  between them, so a snapshot read after deltas of later ticks yields to them: a body a
  later delta set keeps that state, one it removed stays gone (``celestial_removals``).
- A **delta** at tick T newer than the world's tick upserts the bodies it carries and
  deletes the ids it removes. Deltas are dead-reckoned (:mod:`streams.worlds.deltas`): a
  body is sent only when its linear extrapolation from the last one sent drifts more than
  ``physics.delta_tolerance``; so after each batch every other body of the world is moved
  along its velocity to the world's simulation time, exactly as a frontend does. A
  position is then within ``delta_tolerance`` (plus float32 rounding of the sent vectors,
  a relative 6e-8 of the coordinate) of the true one at the world's tick; one a snapshot
  set is exact at the snapshot's tick (and dead-reckoned from it after). A snapshot that
  deltas overtook is extrapolated from its own tick: without the deltas' bound, so the
  error grows with |dv| over the gap (a fresh connector on a backlog; the next snapshot
  read in order restores the bound).
- **Owners** are only in snapshots: a body a delta brings has a NULL owner until the next
  snapshot; a body that persists keeps the owner of the last snapshot.
- A delta whose tick is **not newer** than its world's, or a snapshot not newer than the
  last snapshot applied, is a replay and changes nothing.

Effectively once: records are applied in each partition's order, and a batch is one
transaction with the partitions' next offsets in ``connector_offsets`` (compare and set,
as :mod:`connectors.postgres_sink` does), so a crash between write and commit re-delivers
records that the tick rule and the stored positions turn into no-ops.

Without PostGIS in the server the sink (and ``cosmic db migrate``) stop with a
:class:`~connectors.errors.MigrationError` naming the package to install.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from connectors.base import Batch, Connector, check_routes
from connectors.errors import MigrationError, StoreRejected, StoreUnavailable
from connectors.migrate import SQL_ROOT, discover, for_variant, split_statements
from connectors.postgres_sink import PostgresSink
from connectors.stores import PostgresConnection, postgres_connect
from cosmic import topics
from cosmic.settings import Settings
from cosmic.topics import Topic
from schemas import columnar
from schemas.models import BodyKind

log = logging.getLogger(__name__)

SQL_DIR = SQL_ROOT / "bodies"
TOPICS: tuple[Topic, ...] = (topics.STATE_SNAPSHOTS, topics.STATE_DELTAS)
KINDS: tuple[str, ...] = tuple(k.value for k in BodyKind)  # by the schema's ordinal
# Any constant works; it only has to be the same for every migrating process.
_MIGRATION_LOCK = 0x626F64696573  # "bodies"
POSTGIS_HINT = ("the PostGIS extension is not installed in this PostgreSQL: install "
                "Debian's postgresql-15-postgis-3 (infra/local/install.sh does)")

_UPSERT = """
INSERT INTO celestial_bodies (world_id, body_id, kind, owner, mass, radius, position,
                              vx, vy, vz, updated_tick, sim_time)
SELECT %(world)s, u.id, u.kind, u.owner, u.mass, u.radius, ST_MakePoint(u.x, u.y, u.z),
       u.vx, u.vy, u.vz, %(tick)s, %(sim_time)s
FROM unnest(%(ids)s::bigint[], %(kinds)s::text[], %(owners)s::text[], %(masses)s::float8[],
            %(radii)s::float8[], %(xs)s::float8[], %(ys)s::float8[], %(zs)s::float8[],
            %(vxs)s::float8[], %(vys)s::float8[], %(vzs)s::float8[])
     AS u(id, kind, owner, mass, radius, x, y, z, vx, vy, vz)
WHERE NOT EXISTS (SELECT 1 FROM celestial_removals r
                  WHERE r.world_id = %(world)s AND r.body_id = u.id AND r.tick > %(tick)s)
ON CONFLICT (world_id, body_id) DO UPDATE SET
    kind = EXCLUDED.kind, owner = {owner}, mass = EXCLUDED.mass, radius = EXCLUDED.radius,
    position = EXCLUDED.position, vx = EXCLUDED.vx, vy = EXCLUDED.vy, vz = EXCLUDED.vz,
    updated_tick = EXCLUDED.updated_tick, sim_time = EXCLUDED.sim_time
WHERE celestial_bodies.updated_tick < EXCLUDED.updated_tick
"""
UPSERT_SNAPSHOT = _UPSERT.format(owner="EXCLUDED.owner")
UPSERT_DELTA = _UPSERT.format(owner="celestial_bodies.owner")  # owners come from snapshots
# Dead reckoning: every body not set at the world's time moves along its velocity to it.
EXTRAPOLATE = """
UPDATE celestial_bodies SET
    position = ST_MakePoint(ST_X(position) + vx * (%(t)s - sim_time),
                            ST_Y(position) + vy * (%(t)s - sim_time),
                            ST_Z(position) + vz * (%(t)s - sim_time)),
    sim_time = %(t)s
WHERE world_id = %(world)s AND sim_time < %(t)s
"""


@dataclass(slots=True)
class _World:
    tick: int
    sim_time: float
    owners_tick: int | None


def migrate(settings: Settings) -> list[str]:
    """Apply the bodies migrations not yet applied; one line per action.

    Raises :class:`MigrationError` when PostGIS is not installed in the server."""
    with postgres_connect(settings) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            require_postgis(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS bodies_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            applied = {v for (v,) in conn.execute("SELECT version FROM bodies_migrations")}
            done = []
            for m in for_variant(discover(SQL_DIR), None):
                if m.version in applied:
                    continue
                try:
                    with conn.transaction():
                        for statement in split_statements(m.text):
                            conn.execute(statement)
                        conn.execute("INSERT INTO bodies_migrations (version, name) "
                                     "VALUES (%s, %s)", (m.version, m.name))
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    raise StoreUnavailable(f"PostgreSQL: {exc}") from None
                except psycopg.Error as exc:
                    # e.g. a role that may not CREATE EXTENSION postgis (it needs a superuser,
                    # or the extension created beforehand by one)
                    raise MigrationError(f"{m.path.name}: {type(exc).__name__}: {exc}") from None
                done.append(f"applied {m.path.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return done


def require_postgis(conn: PostgresConnection) -> None:
    """Raise :class:`MigrationError` unless PostGIS can be created in this server."""
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone():
        return
    raise MigrationError(POSTGIS_HINT)


class BodiesSink(PostgresSink):
    """Snapshots and deltas into ``celestial_bodies``, positions by compare and set."""

    name = "bodies"

    def open(self) -> str:
        for line in migrate(self.settings):
            log.info("bodies migrations: %s", line)
        version = self._connection().execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
        return f"celestial_bodies in PostgreSQL with PostGIS {version[0] if version else '?'}"

    def write_rows(self, cur: psycopg.Cursor[Any], batch: Batch) -> None:
        worlds: dict[str, _World | None] = {}
        for item in batch.items:
            record = item.value
            world = str(record["world_id"])
            if world not in worlds:
                worlds[world] = _load_world(cur, world)
            if item.carries.name == topics.STATE_SNAPSHOTS.name:
                worlds[world] = _apply_snapshot(cur, record, worlds[world])
            else:
                worlds[world] = _apply_delta(cur, record, worlds[world])
        for world, state in worlds.items():
            if state is not None:
                cur.execute(EXTRAPOLATE, {"t": state.sim_time, "world": world})


def _load_world(cur: psycopg.Cursor[Any], world: str) -> _World | None:
    row = cur.execute("SELECT tick, sim_time, owners_tick FROM celestial_worlds "
                      "WHERE world_id = %s FOR UPDATE", (world,)).fetchone()
    return None if row is None else _World(int(row[0]), float(row[1]), row[2])


def _columns(record: dict[str, Any]) -> dict[str, Any]:
    bodies = columnar.unpack_bodies(record)
    kinds = np.asarray(KINDS)
    if len(bodies) and int(bodies.kinds.max()) >= len(KINDS):
        raise StoreRejected(f"unknown body kind {int(bodies.kinds.max())}")
    pos = bodies.positions.astype(np.float64)
    vel = bodies.velocities.astype(np.float64)
    return {"ids": bodies.ids.tolist(), "kinds": kinds[bodies.kinds].tolist(),
            "masses": bodies.masses.tolist(), "radii": bodies.radii.tolist(),
            "xs": pos[:, 0].tolist(), "ys": pos[:, 1].tolist(), "zs": pos[:, 2].tolist(),
            "vxs": vel[:, 0].tolist(), "vys": vel[:, 1].tolist(), "vzs": vel[:, 2].tolist()}


def _save_world(cur: psycopg.Cursor[Any], world: str, state: _World) -> None:
    cur.execute("INSERT INTO celestial_worlds (world_id, tick, sim_time, owners_tick) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (world_id) DO UPDATE SET "
                "tick = EXCLUDED.tick, sim_time = EXCLUDED.sim_time, "
                "owners_tick = EXCLUDED.owners_tick, updated_at = now()",
                (world, state.tick, state.sim_time, state.owners_tick))


def _apply_snapshot(cur: psycopg.Cursor[Any], record: dict[str, Any],
                    state: _World | None) -> _World | None:
    """Apply a snapshot newer than the last one applied; older ones are replays.

    Each body takes the snapshot's state unless a newer delta set it; bodies not in the
    snapshot that no newer delta set are deleted; bodies a newer delta removed stay gone.
    Read in order (no newer delta yet) that is a plain replacement of the world's rows."""
    world, tick = str(record["world_id"]), int(record["tick"])
    if state is not None and state.owners_tick is not None and tick <= state.owners_tick:
        return state
    ids = columnar.unpack(record["ids"], columnar.ID_DTYPE, "ids").tolist()
    # An empty list says no body has an owner (WorldSnapshot.owners): all the world's.
    owners = [o or None for o in record["owners"]] if record["owners"] else [None] * len(ids)
    if len(owners) != len(ids):
        raise StoreRejected(f"snapshot {world}@{tick}: {len(owners)} owners for {len(ids)} bodies")
    cur.execute("DELETE FROM celestial_bodies WHERE world_id = %s AND updated_tick <= %s "
                "AND body_id <> ALL(%s)", (world, tick, ids))
    cur.execute(UPSERT_SNAPSHOT, {"world": world, "tick": tick, "sim_time": record["sim_time"],
                                  "owners": owners, **_columns(record)})
    cur.execute("UPDATE celestial_bodies b SET owner = u.owner "
                "FROM unnest(%s::bigint[], %s::text[]) AS u(id, owner) "
                "WHERE b.world_id = %s AND b.body_id = u.id AND b.owner IS DISTINCT FROM u.owner",
                (ids, owners, world))
    cur.execute("DELETE FROM celestial_removals WHERE world_id = %s AND tick <= %s",
                (world, tick))
    if state is None or tick > state.tick:
        state = _World(tick, float(record["sim_time"]), tick)
    else:
        state.owners_tick = tick
    _save_world(cur, world, state)
    return state


def _apply_delta(cur: psycopg.Cursor[Any], record: dict[str, Any],
                 state: _World | None) -> _World | None:
    world, tick = str(record["world_id"]), int(record["tick"])
    if state is not None and tick <= state.tick:
        return state  # a replay: this tick or a newer one is already in place
    columns = _columns(record)
    cur.execute(UPSERT_DELTA, {"world": world, "tick": tick, "sim_time": record["sim_time"],
                               "owners": [None] * len(columns["ids"]), **columns})
    removed = columnar.removed_ids(record).tolist()
    if removed:
        cur.execute("DELETE FROM celestial_bodies WHERE world_id = %s AND body_id = ANY(%s)",
                    (world, removed))
        cur.execute("INSERT INTO celestial_removals (world_id, body_id, tick) "
                    "SELECT %s, id, %s FROM unnest(%s::bigint[]) AS id "
                    "ON CONFLICT (world_id, body_id) DO UPDATE SET "
                    "tick = greatest(celestial_removals.tick, EXCLUDED.tick)",
                    (world, tick, removed))
    state = _World(tick, float(record["sim_time"]), None if state is None else state.owners_tick)
    _save_world(cur, world, state)
    return state


def build(settings: Settings, routes: Mapping[str, Topic] | None = None,
          group_id: str = "cosmic-connector-bodies", dlq_topic: Topic = topics.DLQ,
          instance_id: str | None = None) -> Connector:
    """The bodies connector over ``routes`` (Kafka topic -> what it carries)."""
    routes = routes or {t.name: t for t in TOPICS}
    check_routes("bodies", routes, TOPICS)
    sink = BodiesSink(settings, connector_id=group_id)
    return Connector(settings, sink, routes, group_id=group_id, dlq_topic=dlq_topic,
                     instance_id=instance_id)


__all__ = ["KINDS", "TOPICS", "BodiesSink", "build", "migrate", "require_postgis"]
