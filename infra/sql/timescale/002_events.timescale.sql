-- With TimescaleDB: hypertables chunked by day, compressed after 7 days, and
-- dropped after their retention (Kafka and the archive lake keep the full history).
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS physics_ticks (
    ts                   timestamptz      NOT NULL,
    ts_ms                bigint           NOT NULL,
    world_id             text             NOT NULL,
    tick                 bigint           NOT NULL,
    sim_time             double precision NOT NULL,
    command_partition    integer,
    first_command_offset bigint,
    last_command_offset  bigint,
    n_applied            integer          NOT NULL,
    n_rejected           integer          NOT NULL,
    body_count           integer          NOT NULL,
    total_energy         double precision NOT NULL,
    state_hash           text             NOT NULL,
    step_duration_us     bigint           NOT NULL
);
SELECT create_hypertable('physics_ticks', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS physics_ticks_lookup ON physics_ticks (world_id, ts);
ALTER TABLE physics_ticks SET (timescaledb.compress, timescaledb.compress_segmentby = 'world_id', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('physics_ticks', interval '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('physics_ticks', interval '30 days', if_not_exists => TRUE);

CREATE TABLE IF NOT EXISTS metric_points (
    ts         timestamptz      NOT NULL,  -- window start
    window_end timestamptz      NOT NULL,
    name       text             NOT NULL,
    world_id   text,
    value      double precision NOT NULL,
    labels     jsonb            NOT NULL
);
SELECT create_hypertable('metric_points', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS metric_points_lookup ON metric_points (name, world_id, ts);
ALTER TABLE metric_points SET (timescaledb.compress, timescaledb.compress_segmentby = 'name', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('metric_points', interval '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('metric_points', interval '30 days', if_not_exists => TRUE);

CREATE TABLE IF NOT EXISTS ecosystem_events (
    ts                  timestamptz NOT NULL,
    ts_ms               bigint      NOT NULL,
    event_id            uuid        NOT NULL,
    world_id            text        NOT NULL,
    planet_id           bigint      NOT NULL,
    tick                bigint      NOT NULL,
    event_type          text        NOT NULL,
    species_id          bigint,
    population          bigint,
    previous_population bigint,
    cause               text,
    detail              jsonb       NOT NULL
);
SELECT create_hypertable('ecosystem_events', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS ecosystem_events_lookup ON ecosystem_events (world_id, ts);
ALTER TABLE ecosystem_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'world_id', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('ecosystem_events', interval '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('ecosystem_events', interval '180 days', if_not_exists => TRUE);

CREATE TABLE IF NOT EXISTS civilization_events (
    ts              timestamptz      NOT NULL,
    ts_ms           bigint           NOT NULL,
    event_id        uuid             NOT NULL,
    world_id        text             NOT NULL,
    planet_id       bigint           NOT NULL,
    civilization_id bigint           NOT NULL,
    tick            bigint           NOT NULL,
    event_type      text             NOT NULL,
    name            text,
    tech            text,
    level           integer,
    resource        text,
    amount          double precision,
    remaining       double precision,
    reason          text,
    detail          jsonb            NOT NULL
);
SELECT create_hypertable('civilization_events', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS civilization_events_lookup ON civilization_events (world_id, ts);
ALTER TABLE civilization_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'world_id', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('civilization_events', interval '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('civilization_events', interval '180 days', if_not_exists => TRUE);
