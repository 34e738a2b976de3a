-- wh_dim_civilizations again, its `techs` the same number on every ClickHouse release.
-- `uniqExactIf(tech, ...)` over the Nullable column is Nullable(UInt64) on 18.16 and NULL
-- for a civilization without a tech advance, while current releases say UInt64 0 (the
-- ClickHouse compatibility test found it). The filter already drops the NULLs, so the
-- argument can be made non-nullable: UInt64 and 0 on both. Views hold no data, so
-- replacing one loses nothing.

DROP TABLE IF EXISTS wh_dim_civilizations;

CREATE VIEW wh_dim_civilizations AS
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
    uniqExactIf(assumeNotNull(tech), isNotNull(tech)) AS techs,
    sumIf(amount, event_type = 'ResourceUsed') AS resources_used
FROM wh_civilization_events
GROUP BY world_id, civilization_id;
