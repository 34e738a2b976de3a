-- Per world per minute, without TimescaleDB: plain views over date_bin() (same names and
-- columns as the continuous aggregates, so dashboards work on either path).

CREATE OR REPLACE VIEW physics_ticks_per_world_minute AS
SELECT date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY bucket, world_id;

CREATE OR REPLACE VIEW ecosystem_events_per_world_minute AS
SELECT date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket,
       world_id, event_type,
       count(*)        AS events,
       sum(population) AS population_sum
FROM ecosystem_events
GROUP BY bucket, world_id, event_type;

CREATE OR REPLACE VIEW civilization_events_per_world_minute AS
SELECT date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket,
       world_id, event_type,
       count(*)    AS events,
       sum(amount) AS resource_amount
FROM civilization_events
GROUP BY bucket, world_id, event_type;

CREATE OR REPLACE VIEW metric_points_per_world_minute AS
SELECT date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket,
       world_id, name,
       count(*)   AS points,
       avg(value) AS avg_value,
       max(value) AS max_value
FROM metric_points
GROUP BY bucket, world_id, name;
