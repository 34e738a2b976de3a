-- The live-metrics job's windows, without TimescaleDB: daily range partitions (created
-- on demand by the job through cosmic_ensure_day_partitions, dropped with
-- cosmic_drop_day_partitions). One row per (metric, world, label, window start): the job
-- upserts, so a window recomputed after late data or a restart replaces its row.
CREATE TABLE IF NOT EXISTS live_metrics (
    ts         timestamptz      NOT NULL,  -- window start
    window_end timestamptz      NOT NULL,
    name       text             NOT NULL,
    world_id   text             NOT NULL,
    label      text             NOT NULL DEFAULT '',
    value      double precision NOT NULL,
    updated_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (name, world_id, label, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS live_metrics_world ON live_metrics (world_id, ts);
