-- Where every body of every world is now: the bodies connector's projection of the
-- snapshot and delta topics (connectors/bodies.py says how it is kept current).
--
-- Positions are in AU in each world's own Cartesian frame, so the points carry no SRID
-- (0): an SRID names a frame on the Earth, and none applies. With SRID 0 PostGIS treats
-- the coordinates as plain Cartesian numbers, and ST_3DDistance / ST_3DDWithin measure
-- in AU, which is what "bodies within r of p" asks.
CREATE EXTENSION IF NOT EXISTS postgis;

-- Where the connector has written up to (the same table the TimescaleDB sink uses).
CREATE TABLE IF NOT EXISTS connector_offsets (
    connector       text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    next_offset     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, topic, kafka_partition)
);

-- Per world: the newest tick applied (records at or below it are replays, ignored) and
-- the tick of the snapshot the owners came from.
CREATE TABLE celestial_worlds (
    world_id    text             PRIMARY KEY,
    tick        bigint           NOT NULL,
    sim_time    double precision NOT NULL,
    owners_tick bigint,
    updated_at  timestamptz      NOT NULL DEFAULT now()
);

CREATE TABLE celestial_bodies (
    world_id     text                   NOT NULL,
    body_id      bigint                 NOT NULL,
    kind         text                   NOT NULL,
    -- From snapshots only: NULL for a body a delta brought, until the next snapshot.
    owner        text,
    mass         double precision       NOT NULL,
    radius       double precision       NOT NULL,
    position     geometry(PointZ)       NOT NULL,
    vx           double precision       NOT NULL,
    vy           double precision       NOT NULL,
    vz           double precision       NOT NULL,
    -- The tick of the record that last set this body.
    updated_tick bigint                 NOT NULL,
    -- The simulation time the position is at (the world's, after extrapolation).
    sim_time     double precision       NOT NULL,
    PRIMARY KEY (world_id, body_id)
);

-- Bodies deltas removed, by the tick that removed them: a snapshot of an earlier tick read
-- after those deltas (the two topics are not ordered between them) must not bring them
-- back. Pruned when a snapshot at or past that tick is applied.
CREATE TABLE celestial_removals (
    world_id text   NOT NULL,
    body_id  bigint NOT NULL,
    tick     bigint NOT NULL,
    PRIMARY KEY (world_id, body_id)
);

-- The n-D operator class: ST_3DDWithin's index test (&&&) is answered by it, not by the
-- default 2-D one.
CREATE INDEX celestial_bodies_position_gist ON celestial_bodies USING gist (position gist_geometry_ops_nd);
