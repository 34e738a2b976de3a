-- Fallback without TimescaleDB: native declarative range partitioning by day (UTC).
-- Partitions are created ahead and on demand by cosmic_ensure_day_partitions().

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
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS physics_ticks_lookup ON physics_ticks (world_id, ts);

CREATE TABLE IF NOT EXISTS metric_points (
    ts         timestamptz      NOT NULL,  -- window start
    window_end timestamptz      NOT NULL,
    name       text             NOT NULL,
    world_id   text,
    value      double precision NOT NULL,
    labels     jsonb            NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS metric_points_lookup ON metric_points (name, world_id, ts);

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
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS ecosystem_events_lookup ON ecosystem_events (world_id, ts);

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
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS civilization_events_lookup ON civilization_events (world_id, ts);

-- Create the daily partitions of `parent` covering first_day..last_day (UTC days).
-- The advisory lock keeps two connectors from racing to create the same partition.
CREATE OR REPLACE FUNCTION cosmic_ensure_day_partitions(parent regclass, first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d    date;
    part text;
    made integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cosmic_partitions:' || parent::text));
    FOR d IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        part := format('%s_p%s', parent::text, to_char(d, 'YYYYMMDD'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                           part, parent,
                           d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END
$$;

-- Retention without TimescaleDB: drop whole daily partitions older than keep_days.
CREATE OR REPLACE FUNCTION cosmic_drop_day_partitions(parent regclass, keep_days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part    record;
    dropped integer := 0;
    cutoff  text := to_char((now() AT TIME ZONE 'UTC')::date - keep_days, 'YYYYMMDD');
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent AND right(c.relname, 8) ~ '^[0-9]{8}$'
          AND right(c.relname, 8) < cutoff
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
