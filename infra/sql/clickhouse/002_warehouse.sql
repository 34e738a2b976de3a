-- The BI warehouse, built by jobs/spark/warehouse.py (`cosmic jobs run warehouse --date D`).
-- Runs on ClickHouse 18.16 (Debian) and current releases: no DateTime64/LowCardinality/TTL/
-- CODEC, no window functions, no WITH-subquery CTEs. runbooks/analyst-guide.md documents
-- every column.
--
-- Every wh_ table is partitioned by day (toYYYYMMDD(date)): a build of day D drops D's
-- partition of each table and inserts D again, so re-running a day replaces exactly that day.
-- Facts come from Spark over the archive lake; marts are computed from the facts by the
-- same job (they need history: 30-day windows, first-seen dates); dimensions are views over
-- the facts, so they are never stale and never need rebuilding.

-- Facts -------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS wh_player_hourly (
    date                Date,
    hour                DateTime('UTC'),
    world_id            String,
    player_id           String,
    commands            UInt64,
    spawn_body          UInt64,
    apply_impulse       UInt64,
    remove_body         UInt64,
    seed_species        UInt64,
    found_civilization  UInt64,
    other_commands      UInt64,
    first_ms            Int64,
    last_ms             Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, world_id, player_id, hour);

CREATE TABLE IF NOT EXISTS wh_world_ticks_hourly (
    date                Date,
    hour                DateTime('UTC'),
    world_id            String,
    ticks               UInt64,
    first_tick          Int64,
    last_tick           Int64,
    bodies_last         Int64,
    bodies_max          Int64,
    commands_applied    Int64,
    commands_rejected   Int64,
    energy_last         Float64,
    step_us_p50         Float64,
    step_us_p90         Float64,
    step_us_p99         Float64,
    step_us_max         Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, world_id, hour);

CREATE TABLE IF NOT EXISTS wh_ecosystem_events (
    date                Date,
    ts                  DateTime('UTC'),
    ts_ms               Int64,
    world_id            String,
    planet_id           Int64,
    tick                Int64,
    event_type          String,
    species_id          Nullable(Int64),
    parent_species_id   Nullable(Int64),
    population          Nullable(Int64),
    previous_population Nullable(Int64),
    diet                Nullable(String),
    cause               Nullable(String),
    player_id           Nullable(String),
    event_id            String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, world_id, planet_id, ts_ms);

CREATE TABLE IF NOT EXISTS wh_civilization_events (
    date                Date,
    ts                  DateTime('UTC'),
    ts_ms               Int64,
    world_id            String,
    planet_id           Int64,
    civilization_id     Int64,
    tick                Int64,
    event_type          String,
    name                Nullable(String),
    founder_player_id   Nullable(String),
    species_id          Nullable(Int64),
    tech                Nullable(String),
    level               Nullable(Int32),
    resource            Nullable(String),
    amount              Nullable(Float64),
    remaining           Nullable(Float64),
    reason              Nullable(String),
    peak_population     Nullable(Int64),
    event_id            String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, world_id, civilization_id, ts_ms);

CREATE TABLE IF NOT EXISTS wh_sessions (
    date                Date,
    player_id           String,
    session_start       DateTime('UTC'),
    session_end         DateTime('UTC'),
    start_ms            Int64,
    end_ms              Int64,
    length_s            Float64,
    commands            UInt64,
    worlds              UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, player_id, start_ms);

-- Marts -------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS wh_active_users (
    date                Date,
    dau                 UInt64,
    wau                 UInt64,
    mau                 UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY date;

CREATE TABLE IF NOT EXISTS wh_retention (
    date                Date,
    cohort_date         Date,
    day_n               UInt16,
    cohort_size         UInt64,
    retained            UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, cohort_date);

CREATE TABLE IF NOT EXISTS wh_sessions_daily (
    date                Date,
    sessions            UInt64,
    players             UInt64,
    sessions_per_player Float64,
    avg_length_s        Float64,
    median_length_s     Float64,
    p90_length_s        Float64,
    max_length_s        Float64,
    commands            UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY date;

CREATE TABLE IF NOT EXISTS wh_world_growth (
    date                  Date,
    world_id              String,
    bodies                Int64,
    ticks                 UInt64,
    species_seen          UInt64,
    species_alive         UInt64,
    extinctions           UInt64,
    civilizations_founded UInt64,
    civilizations_alive   UInt64,
    active_players        UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, world_id);

CREATE TABLE IF NOT EXISTS wh_species_diversity (
    date                Date,
    world_id            String,
    species             UInt64,
    population          Int64,
    shannon             Float64,
    simpson             Float64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(date)
ORDER BY (date, world_id);

-- Dimensions (views over the facts) ---------------------------------------------------------

CREATE VIEW IF NOT EXISTS wh_dim_players AS
SELECT
    player_id,
    toDateTime(intDiv(min(first_ms), 1000), 'UTC') AS first_seen,
    toDateTime(intDiv(max(last_ms), 1000), 'UTC') AS last_seen,
    min(date) AS first_date,
    max(date) AS last_date,
    uniqExact(date) AS active_days,
    sum(commands) AS commands,
    uniqExact(world_id) AS worlds,
    argMin(world_id, first_ms) AS first_world
FROM wh_player_hourly
GROUP BY player_id;

CREATE VIEW IF NOT EXISTS wh_dim_worlds AS
SELECT
    world_id,
    min(hour) AS first_seen,
    max(hour) AS last_seen,
    max(last_tick) AS last_tick,
    argMax(bodies_last, hour) AS bodies,
    max(bodies_max) AS bodies_peak,
    sum(ticks) AS ticks
FROM wh_world_ticks_hourly
GROUP BY world_id;

CREATE VIEW IF NOT EXISTS wh_dim_species AS
SELECT
    world_id,
    species_id,
    argMin(planet_id, ts_ms) AS home_planet_id,
    argMin(event_type, ts_ms) AS origin,
    max(parent_species_id) AS parent_species_id,
    max(diet) AS diet,
    toDateTime(intDiv(min(ts_ms), 1000), 'UTC') AS first_seen,
    countIf(event_type = 'SpeciesExtinct') > 0 AS extinct,
    argMaxIf(population, ts_ms, isNotNull(population)) AS last_population,
    uniqExact(planet_id) AS planets
FROM wh_ecosystem_events
WHERE isNotNull(species_id)
GROUP BY world_id, species_id;

CREATE VIEW IF NOT EXISTS wh_dim_civilizations AS
SELECT
    world_id,
    civilization_id,
    argMin(planet_id, ts_ms) AS planet_id,
    max(name) AS name,
    max(founder_player_id) AS founder_player_id,
    max(species_id) AS species_id,
    toDateTime(intDiv(minIf(ts_ms, event_type = 'CivilizationFounded'), 1000), 'UTC') AS founded_at,
    countIf(event_type = 'CivilizationCollapsed') > 0 AS collapsed,
    max(level) AS max_tech_level,
    uniqExactIf(tech, isNotNull(tech)) AS techs,
    sumIf(amount, event_type = 'ResourceUsed') AS resources_used
FROM wh_civilization_events
GROUP BY world_id, civilization_id;
