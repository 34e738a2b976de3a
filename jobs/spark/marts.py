"""The marts, computed inside ClickHouse from the day-partitioned facts.

Why here and not in Spark: every mart of day D needs history the lake would
have to rescan (30-day windows for MAU, each player's first day for cohorts,
every species ever seen for growth), while the facts already hold it,
aggregated, in ClickHouse. Each statement writes only day D's partition and
reads only days <= D, so building the days in order gives the same marts as
building them all at once.

Every statement runs on ClickHouse 18.16 and current releases: no window
functions, no WITH-subqueries, no JOINs (per-world figures from several
facts are combined with UNION ALL and one GROUP BY).
"""

from __future__ import annotations

from jobs.spark.definitions import RETENTION_HORIZON

D = "toDate(%(day)s)"

ACTIVE_USERS = f"""
INSERT INTO wh_active_users (date, dau, wau, mau)
SELECT {D}, uniqExactIf(player_id, date = {D}), uniqExactIf(player_id, date >= {D} - 6),
       uniqExact(player_id)
FROM wh_player_hourly
WHERE date >= {D} - 29 AND date <= {D}
"""

RETENTION = f"""
INSERT INTO wh_retention (date, cohort_date, day_n, cohort_size, retained)
SELECT {D}, first_date, toUInt16({D} - first_date), count(), sum(active)
FROM (
    SELECT player_id, min(date) AS first_date, max(date = {D}) AS active
    FROM wh_player_hourly
    WHERE date <= {D}
    GROUP BY player_id
)
WHERE first_date >= {D} - {RETENTION_HORIZON}
GROUP BY first_date
"""

SESSIONS_DAILY = f"""
INSERT INTO wh_sessions_daily (date, sessions, players, sessions_per_player, avg_length_s,
                               median_length_s, p90_length_s, max_length_s, commands)
SELECT {D}, count(), uniqExact(player_id),
       if(count() = 0, 0., count() / uniqExact(player_id)),
       if(count() = 0, 0., avg(length_s)),
       if(count() = 0, 0., quantileExact(0.5)(length_s)),
       if(count() = 0, 0., quantileExact(0.9)(length_s)),
       if(count() = 0, 0., max(length_s)),
       sum(commands)
FROM wh_sessions
WHERE date = {D}
"""

# Species are (world, species id); a species is alive while some planet still has it.
_SPECIES_STATE = f"""
    SELECT world_id, species_id, min(gone) AS all_gone, max(gone_today) AS gone_today
    FROM (
        SELECT world_id, species_id, planet_id,
               max(event_type = 'SpeciesExtinct') AS gone,
               max(event_type = 'SpeciesExtinct' AND date = {D}) AS gone_today
        FROM wh_ecosystem_events
        WHERE date <= {D} AND isNotNull(species_id)
        GROUP BY world_id, species_id, planet_id
    )
    GROUP BY world_id, species_id
"""

WORLD_GROWTH = f"""
INSERT INTO wh_world_growth (date, world_id, bodies, ticks, species_seen, species_alive,
                             extinctions, civilizations_founded, civilizations_alive,
                             active_players)
SELECT {D}, world_id, max(bodies), max(ticks), max(seen), max(alive), max(extinct_today),
       max(founded_today), max(civs_alive), max(players)
FROM (
    SELECT world_id, argMax(bodies_last, hour) AS bodies, sumIf(ticks, date = {D}) AS ticks,
           toUInt64(0) AS seen, toUInt64(0) AS alive, toUInt64(0) AS extinct_today,
           toUInt64(0) AS founded_today, toUInt64(0) AS civs_alive, toUInt64(0) AS players
    FROM wh_world_ticks_hourly
    WHERE date <= {D}
    GROUP BY world_id
    UNION ALL
    SELECT world_id, toInt64(0), toUInt64(0), count(), countIf(all_gone = 0),
           countIf(gone_today = 1), toUInt64(0), toUInt64(0), toUInt64(0)
    FROM ({_SPECIES_STATE})
    GROUP BY world_id
    UNION ALL
    SELECT world_id, toInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0),
           countIf(founded_today = 1), countIf(collapsed = 0), toUInt64(0)
    FROM (
        SELECT world_id, civilization_id,
               max(event_type = 'CivilizationCollapsed') AS collapsed,
               max(event_type = 'CivilizationFounded' AND date = {D}) AS founded_today
        FROM wh_civilization_events
        WHERE date <= {D}
        GROUP BY world_id, civilization_id
    )
    GROUP BY world_id
    UNION ALL
    SELECT world_id, toInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0),
           toUInt64(0), toUInt64(0), uniqExact(player_id)
    FROM wh_player_hourly
    WHERE date = {D}
    GROUP BY world_id
)
GROUP BY world_id
"""

# Shannon H = ln T - (1/T) sum n_i ln n_i and Simpson 1 - sum n_i^2 / T^2 need only sums,
# so one GROUP BY computes them without a per-world total joined back in.
SPECIES_DIVERSITY = f"""
INSERT INTO wh_species_diversity (date, world_id, species, population, shannon, simpson)
SELECT {D}, world_id, count(), sum(pop),
       log(sum(pop)) - sum(pop * log(pop)) / sum(pop),
       1 - sum(pop * pop) / (sum(pop) * sum(pop))
FROM (
    SELECT world_id, species_id, sum(p) AS pop
    FROM (
        SELECT world_id, species_id, planet_id,
               assumeNotNull(argMaxIf(population, ts_ms, isNotNull(population))) AS p,
               max(event_type = 'SpeciesExtinct') AS gone
        FROM wh_ecosystem_events
        WHERE date <= {D} AND isNotNull(species_id)
        GROUP BY world_id, species_id, planet_id
    )
    WHERE gone = 0
    GROUP BY world_id, species_id
)
WHERE pop > 0
GROUP BY world_id
"""

# table -> statement, in build order (all read facts only).
MARTS: dict[str, str] = {
    "wh_active_users": ACTIVE_USERS,
    "wh_retention": RETENTION,
    "wh_sessions_daily": SESSIONS_DAILY,
    "wh_world_growth": WORLD_GROWTH,
    "wh_species_diversity": SPECIES_DIVERSITY,
}
