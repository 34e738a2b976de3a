-- cosmic: no-transaction
-- Continuous aggregates cannot be created inside a transaction block.
-- Per world per minute, refreshed every minute over the last 7 days (only the minutes
-- whose raw rows changed are recomputed, so the wide window costs little). Real-time
-- (materialized_only = false): minutes past the last refresh are computed from the raw
-- rows, so recent data shows at once, as in the native path's date_bin() views.
-- Rows written more than 7 days back (a replay of old history) show only after
--   CALL refresh_continuous_aggregate('<view>', <from>, <to>);
-- and the aggregates keep their minutes after retention drops the raw rows.

CREATE MATERIALIZED VIEW IF NOT EXISTS physics_ticks_per_world_minute
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 minute', ts) AS bucket,
       world_id,
       count(*)              AS ticks,
       max(tick)             AS last_tick,
       avg(step_duration_us) AS avg_step_us,
       max(step_duration_us) AS max_step_us,
       avg(total_energy)     AS avg_energy,
       max(body_count)       AS max_bodies,
       sum(n_applied)        AS commands_applied,
       sum(n_rejected)       AS commands_rejected
FROM physics_ticks
GROUP BY bucket, world_id
WITH NO DATA;
SELECT add_continuous_aggregate_policy('physics_ticks_per_world_minute', start_offset => interval '7 days', end_offset => interval '1 minute', schedule_interval => interval '1 minute', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS ecosystem_events_per_world_minute
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 minute', ts) AS bucket,
       world_id, event_type,
       count(*)        AS events,
       sum(population) AS population_sum
FROM ecosystem_events
GROUP BY bucket, world_id, event_type
WITH NO DATA;
SELECT add_continuous_aggregate_policy('ecosystem_events_per_world_minute', start_offset => interval '7 days', end_offset => interval '1 minute', schedule_interval => interval '1 minute', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS civilization_events_per_world_minute
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 minute', ts) AS bucket,
       world_id, event_type,
       count(*)    AS events,
       sum(amount) AS resource_amount
FROM civilization_events
GROUP BY bucket, world_id, event_type
WITH NO DATA;
SELECT add_continuous_aggregate_policy('civilization_events_per_world_minute', start_offset => interval '7 days', end_offset => interval '1 minute', schedule_interval => interval '1 minute', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_points_per_world_minute
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 minute', ts) AS bucket,
       world_id, name,
       count(*)   AS points,
       avg(value) AS avg_value,
       max(value) AS max_value
FROM metric_points
GROUP BY bucket, world_id, name
WITH NO DATA;
SELECT add_continuous_aggregate_policy('metric_points_per_world_minute', start_offset => interval '7 days', end_offset => interval '1 minute', schedule_interval => interval '1 minute', if_not_exists => TRUE);
