-- Raw event tables for analysts. Runs on ClickHouse 18.16 (Debian) and current releases:
-- no DateTime64/LowCardinality/TTL/CODEC; times are DateTime('UTC') plus epoch-ms integers.
-- _topic/_partition/_offset say where each row came from in Kafka: a connector restarting
-- reads max(_offset) per partition and skips what is already here.

CREATE TABLE IF NOT EXISTS commands (
    ts                 DateTime('UTC'),
    ts_ms              Int64,
    client_ms          Int64,
    command_id         String,
    world_id           String,
    player_id          String,
    command_type       String,
    body_id            Nullable(Int64),
    planet_id          Nullable(Int64),
    species_id         Nullable(Int64),
    civilization_id    Nullable(Int64),
    kind               Nullable(String),
    name               Nullable(String),
    mass               Nullable(Float64),
    radius             Nullable(Float64),
    x                  Nullable(Float64),
    y                  Nullable(Float64),
    z                  Nullable(Float64),
    vx                 Nullable(Float64),
    vy                 Nullable(Float64),
    vz                 Nullable(Float64),
    initial_population Nullable(Int64),
    detail             String,
    _topic             String,
    _partition         Int32,
    _offset            Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (world_id, ts, command_type, _partition, _offset);

CREATE TABLE IF NOT EXISTS physics_ticks (
    ts                   DateTime('UTC'),
    ts_ms                Int64,
    world_id             String,
    tick                 Int64,
    sim_time             Float64,
    command_partition    Nullable(Int32),
    first_command_offset Nullable(Int64),
    last_command_offset  Nullable(Int64),
    n_applied            Int32,
    n_rejected           Int32,
    body_count           Int32,
    total_energy         Float64,
    state_hash           String,
    step_duration_us     Int64,
    _topic               String,
    _partition           Int32,
    _offset              Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (world_id, ts, tick);

CREATE TABLE IF NOT EXISTS ecosystem_events (
    ts                  DateTime('UTC'),
    ts_ms               Int64,
    event_id            String,
    world_id            String,
    planet_id           Int64,
    tick                Int64,
    event_type          String,
    species_id          Nullable(Int64),
    population          Nullable(Int64),
    previous_population Nullable(Int64),
    cause               Nullable(String),
    detail              String,
    _topic              String,
    _partition          Int32,
    _offset             Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (world_id, ts, planet_id, event_type);

CREATE TABLE IF NOT EXISTS civilization_events (
    ts              DateTime('UTC'),
    ts_ms           Int64,
    event_id        String,
    world_id        String,
    planet_id       Int64,
    civilization_id Int64,
    tick            Int64,
    event_type      String,
    name            Nullable(String),
    tech            Nullable(String),
    level           Nullable(Int32),
    resource        Nullable(String),
    amount          Nullable(Float64),
    remaining       Nullable(Float64),
    reason          Nullable(String),
    detail          String,
    _topic          String,
    _partition      Int32,
    _offset         Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (world_id, ts, civilization_id, event_type);
