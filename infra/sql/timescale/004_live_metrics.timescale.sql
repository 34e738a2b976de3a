-- The live-metrics job's windows, as a hypertable. One row per (metric, world, label,
-- window start): the job upserts, so a window recomputed after late data or a restart
-- replaces its row.
CREATE TABLE IF NOT EXISTS live_metrics (
    ts         timestamptz      NOT NULL,  -- window start
    window_end timestamptz      NOT NULL,
    name       text             NOT NULL,
    world_id   text             NOT NULL,
    label      text             NOT NULL DEFAULT '',
    value      double precision NOT NULL,
    updated_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (name, world_id, label, ts)
);
SELECT create_hypertable('live_metrics', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS live_metrics_world ON live_metrics (world_id, ts);
-- Compressed once its windows are a week old (upserts into compressed chunks still work);
-- the primary key's columns are all segment-by or order-by columns, as compression needs.
ALTER TABLE live_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'name, world_id', timescaledb.compress_orderby = 'label, ts');
SELECT add_compression_policy('live_metrics', interval '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('live_metrics', interval '30 days', if_not_exists => TRUE);
