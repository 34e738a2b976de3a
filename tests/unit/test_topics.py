from __future__ import annotations

import pytest

from cosmic import topics
from cosmic.errors import CosmicError, TopicError


def test_registry_holds_every_design_topic_once():
    names = [t.name for t in topics.ALL]
    assert len(names) == len(set(names))
    assert set(names) == {
        "cosmic.commands.v1", "cosmic.commands.rejected.v1", "cosmic.physics.ticks.v1", "cosmic.state.deltas.v1",
        "cosmic.state.snapshots.v1", "cosmic.state.snapshots.history.v1", "cosmic.worlds.v1",
        "cosmic.ecosystem.events.v1",
        "cosmic.civilization.events.v1", "cosmic.living.planets.v1", "cosmic.metrics.v1",
        "cosmic.security.flags.v1", "cosmic.dlq.v1", "cosmic.security.revocations.v1",
        "cosmic.audit.v1",
    }


def test_retention_follows_the_design():
    assert topics.STATE_SNAPSHOTS.configs()["cleanup.policy"] == "compact"
    assert topics.COMMANDS.configs()["retention.ms"] == "-1"  # the source of truth
    assert 0 < int(topics.STATE_DELTAS.configs()["retention.ms"]) <= 24 * 3_600_000
    assert topics.get("cosmic.dlq.v1") is topics.DLQ
    assert topics.REVOCATIONS.configs()["cleanup.policy"] == "compact"  # latest per key
    assert topics.AUDIT.configs()["retention.ms"] == "-1"  # the proof is kept


def test_compacted_topics_roll_their_segments_so_they_really_compact():
    compacted = [t for t in topics.ALL if "compact" in t.cleanup_policy]
    assert {t.name for t in compacted} >= {topics.STATE_SNAPSHOTS.name, topics.WORLDS.name,
                                           topics.REVOCATIONS.name}
    for t in compacted:
        assert 0 < int(t.configs()["segment.ms"]) <= 3_600_000, t.name
    assert "segment.ms" not in topics.COMMANDS.configs()  # the broker's default elsewhere


def test_unknown_topic_is_a_typed_error_listing_known_ones():
    with pytest.raises(TopicError) as err:
        topics.get("cosmic.comands.v1")
    assert isinstance(err.value, CosmicError)
    assert "cosmic.commands.v1" in str(err.value)


def test_routes_map_kafka_topics_to_the_registered_topic_they_carry():
    routes = topics.parse_routes(["copy-of-ticks=cosmic.physics.ticks.v1", "cosmic.metrics.v1"],
                          bare=True)
    assert routes == {"copy-of-ticks": topics.PHYSICS_TICKS, "cosmic.metrics.v1": topics.METRICS}


def test_routes_refuse_unknown_topics_and_missing_pairs():
    with pytest.raises(TopicError, match=r"unknown topic 'cosmic\.nope'"):
        topics.parse_routes(["mine=cosmic.nope"])
    # The old DECLARED=ACTUAL order fails loudly instead of reading the wrong topic.
    with pytest.raises(TopicError, match="unknown topic 'private-ticks'"):
        topics.parse_routes(["cosmic.physics.ticks.v1=private-ticks"])
    with pytest.raises(TopicError, match="expected KAFKA_TOPIC=REGISTERED_TOPIC"):
        topics.parse_routes(["cosmic.metrics.v1"])
