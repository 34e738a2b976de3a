"""The ACL table (cosmic/acls.py) against the topic registry: nothing unreadable, unwritable,
or writable by someone who should not write it."""

from __future__ import annotations

from pathlib import Path

from cosmic import acls, security, topics
from cosmic.settings import Settings


def _who(settings: Settings, topic: topics.Topic, op: acls.Operation) -> set[str]:
    return {i.name for i in acls.identities(settings) if i.allowed("topic", topic.name, op)}


def test_every_declared_topic_has_a_writer_and_a_reader():
    s = Settings()
    for topic in topics.ALL:
        if topic.name not in acls.ADMIN_WRITES:
            assert _who(s, topic, "WRITE"), f"nobody but admin may write {topic.name}"
        else:
            assert not _who(s, topic, "WRITE"), f"{topic.name} is written by admin only"
        assert _who(s, topic, "READ"), f"nobody but admin may read {topic.name}"


def test_only_the_world_service_writes_world_events():
    s = Settings()
    for topic in (topics.PHYSICS_TICKS, topics.STATE_DELTAS, topics.STATE_SNAPSHOTS,
                  topics.STATE_SNAPSHOT_HISTORY, topics.WORLDS):
        assert _who(s, topic, "WRITE") == {"physics"}, topic.name
    assert _who(s, topics.COMMANDS, "WRITE") == {"gateway", "physics", "players"}
    assert _who(s, topics.COMMANDS, "READ") >= {"physics", "connectors", "jobs"}


def test_the_player_identity_has_no_rights_and_admin_is_the_super_user():
    by_name = acls.by_name(Settings())
    assert by_name[acls.PLAYER].grants == ()
    assert by_name[acls.ADMIN].grants == ()  # a super user needs none
    for topic in topics.ALL:
        for op in ("READ", "WRITE", "DESCRIBE", "CREATE"):
            assert not by_name[acls.PLAYER].allowed("topic", topic.name, op)


def test_gateway_writes_commands_and_reads_what_it_serves_but_writes_nothing_else():
    gw = acls.by_name(Settings())["gateway"]
    assert gw.allowed("topic", topics.COMMANDS.name, "WRITE")
    for topic in (topics.STATE_DELTAS, topics.STATE_SNAPSHOTS, topics.PHYSICS_TICKS,
                  topics.COMMANDS_REJECTED, topics.WORLDS):
        assert gw.allowed("topic", topic.name, "READ")
        assert not gw.allowed("topic", topic.name, "WRITE")


def test_the_detector_reads_in_the_group_it_uses():
    from streams.security.detector import GROUP

    detector = acls.by_name(Settings())["detector"]
    assert detector.allowed("group", GROUP, "READ")
    assert detector.allowed("topic", topics.SECURITY_FLAGS.name, "WRITE")
    assert not detector.allowed("topic", topics.COMMANDS.name, "WRITE")


def test_group_and_transaction_names_follow_the_settings():
    s = Settings()
    s = s.with_overrides(physics=s.physics.model_copy(update={"group_id": "renamed-physics"}))
    physics = acls.by_name(s)["physics"]
    assert physics.allowed("group", "renamed-physics", "READ")
    assert physics.allowed("group", "renamed-physics.shard-a", "READ")  # a shard's group
    assert physics.allowed("transactional_id", "cosmic-physics-physics-0", "WRITE")
    assert not physics.allowed("group", "cosmic-connector-clickhouse", "READ")


def test_bindings_are_allow_rules_for_every_grant():
    s = Settings()
    bindings = security.desired_bindings(s)
    granted = sum(len(g.operations) for i in acls.identities(s) for g in i.grants)
    assert len(bindings) == granted
    assert {b.principal for b in bindings} == {
        f"User:{i.name}" for i in acls.identities(s) if i.grants}
    assert all(b.host == "*" for b in bindings)


def test_the_documentation_table_names_every_identity():
    s = Settings()
    text = acls.markdown(s)
    for ident in acls.identities(s):
        assert f"`{ident.name}`" in text


def test_the_compose_file_makes_a_user_for_every_identity():
    """docker-compose.kafka.yml creates the SCRAM users itself: the same names as the table."""
    import yaml

    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.kafka.yml").read_text())
    users = compose["services"]["kafka-users"]
    names = {i.name for i in acls.identities(Settings())}
    assert set(users["environment"]) == {n.upper() for n in names}
    loop = users["command"][0]
    listed = loop[loop.index("for name in ") + len("for name in "):loop.index("; do")]
    assert set(listed.split()) == names
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == f"User:{acls.ADMIN}"
