-- Players the cheat detector flagged (cosmic.security.flags.v1), with the evidence as JSON.
-- The detector writes at least once; the same finding has the same flag_id, and
-- ReplacingMergeTree keeps one of its copies (query with FINAL for an exact count).

CREATE TABLE IF NOT EXISTS security_flags (
    ts            DateTime('UTC'),
    ts_ms         Int64,
    flag_id       String,
    player_id     String,
    world_id      String,
    kind          String,
    score         Float64,
    window_start  DateTime('UTC'),
    window_end    DateTime('UTC'),
    evidence      String,
    _topic        String,
    _partition    Int32,
    _offset       Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (player_id, world_id, kind, window_start, flag_id);
