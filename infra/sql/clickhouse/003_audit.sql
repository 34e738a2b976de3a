-- The gateways' audit trail (cosmic.audit.v1) for analysts: one row per attempt.
-- The chain itself is checked on the topic (`cosmic audit verify`); here the hashes ride
-- along so a row can be matched with its record.

CREATE TABLE IF NOT EXISTS audit_log (
    ts             DateTime('UTC'),
    ts_ms          Int64,
    gateway_id     String,
    seq            Int64,
    action         String,
    face           String,
    outcome        String,
    player_id      Nullable(String),
    role           Nullable(String),
    token_id       Nullable(String),
    world_id       Nullable(String),
    command_id     String,
    command_type   Nullable(String),
    peer           String,
    reason         String,
    command_offset Nullable(Int64),
    prev_hash      String,
    hash           String,
    _topic         String,
    _partition     Int32,
    _offset        Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (gateway_id, seq, _partition, _offset);
