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
        "cosmic.dlq.v1",
    }


def test_retention_follows_the_design():
    assert topics.STATE_SNAPSHOTS.configs()["cleanup.policy"] == "compact"
    assert topics.COMMANDS.configs()["retention.ms"] == "-1"  # the source of truth
    assert 0 < int(topics.STATE_DELTAS.configs()["retention.ms"]) <= 24 * 3_600_000
    assert topics.get("cosmic.dlq.v1") is topics.DLQ


def test_unknown_topic_is_a_typed_error_listing_known_ones():
    with pytest.raises(TopicError) as err:
        topics.get("cosmic.comands.v1")
    assert isinstance(err.value, CosmicError)
    assert "cosmic.commands.v1" in str(err.value)
