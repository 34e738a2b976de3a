"""The local services' generated configuration, checked without starting anything."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cosmic.errors import StackError
from cosmic.settings import ClickHouseSettings, KafkaSettings, Settings
from cosmic.stack import Stack
from cosmic.stack.clickhouse import ClickHouseService
from cosmic.stack.kafka import TOOLS, KafkaService


@pytest.fixture
def private(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:39092", port=39092,
                            controller_port=39093),
        clickhouse=ClickHouseSettings(port=39000, http_port=38123),
    )


def test_kafka_runs_kraft_combined_on_loopback(private: Settings):
    props = dict(
        line.split("=", 1)
        for line in KafkaService(private)._server_properties().splitlines()
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:39093"
    # Locked down: only SASL on the client listener, deny by default, admin the super user.
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:39092"
    assert props["listeners"] == ("SASL_PLAINTEXT://127.0.0.1:39092,"
                                  "CONTROLLER://127.0.0.1:39093")
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT")
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    admin = (private.state_dir / "secrets" / "kafka" / "admin")
    assert admin.stat().st_mode & 0o777 == 0o600
    assert props["log.dirs"].startswith(str(private.state_dir))
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_kafka_tool_names_map_to_kafka_classes(private: Settings, monkeypatch):
    svc = KafkaService(private)
    monkeypatch.setattr(svc, "classpath", lambda: "/x/*")
    monkeypatch.setattr(svc, "_java_prefix", lambda heap="256m": ["java", "-cp", "/x/*"])
    cmd = svc.tool_command("kafka-consumer-groups.sh", ["--list"])
    # The tools log in as admin with the client properties the stack writes.
    assert cmd[-6:] == [TOOLS["consumer-groups"], "--bootstrap-server", "127.0.0.1:39092",
                        "--list", "--command-config", str(svc.home / "admin-client.properties")]
    perf = svc.tool_command("producer-perf-test", ["--topic", "t", "--num-records", "1"])
    assert "--bootstrap-server" not in perf
    assert perf[-2:] == ["--producer.config", str(svc.home / "admin-client.properties")]
    with pytest.raises(StackError, match="known tools"):
        svc.tool_command("no-such-tool", [])


def test_clickhouse_config_is_loopback_xml_in_the_state_folder(private: Settings):
    svc = ClickHouseService(private)
    svc.home.mkdir(parents=True)
    svc.prepare()
    root = ET.parse(svc.home / "config.xml").getroot()
    assert root.tag == "yandex"  # the root element both 18.16 and current releases accept
    assert root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("tcp_port") == "39000"
    assert root.findtext("http_port") == "38123"
    assert root.findtext("path", "").startswith(str(private.state_dir))
    users = ET.parse(svc.home / "users.xml").getroot()
    assert users.find("users/default/networks/ip") is not None


def test_unknown_service_and_stale_pid_file(private: Settings):
    st = Stack(private)
    with pytest.raises(StackError, match="services: kafka, registry, postgres, clickhouse, prometheus"):
        st.service("zookeeper")
    ch = st.service("clickhouse")
    ch.pid_file.parent.mkdir(parents=True)
    ch.pid_file.write_text("999999999")  # no such process
    assert ch.pid() is None
    assert ch.stop() is False
    assert not ch.pid_file.exists()


def _props(service: KafkaService) -> dict[str, str]:
    return dict(line.split("=", 1) for line in service._server_properties().splitlines())


def test_three_kafka_nodes_form_one_replicated_quorum(tmp_path: Path):
    s = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                 kafka=KafkaSettings(port=39092, controller_port=39093, brokers=3))
    assert s.kafka.bootstrap_servers == "127.0.0.1:39092,127.0.0.1:39094,127.0.0.1:39096"
    assert s.kafka.replication_factor == 3
    nodes = [svc for svc in Stack(s).services if isinstance(svc, KafkaService)]
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    second = _props(nodes[1])
    assert second["node.id"] == "2"
    assert second["controller.quorum.voters"] == (
        "1@127.0.0.1:39093,2@127.0.0.1:39095,3@127.0.0.1:39097")
    assert second["listeners"] == "SASL_PLAINTEXT://127.0.0.1:39094,CONTROLLER://127.0.0.1:39095"
    assert second["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:39094"
    assert second["log.dirs"] == str(s.state_dir / "kafka-2" / "data")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "default.replication.factor"):
        assert second[key] == "3", key
    assert second["min.insync.replicas"] == second["transaction.state.log.min.isr"] == "2"
    # Explicit settings win over what the node count implies.
    mine = KafkaSettings(brokers=3, bootstrap_servers="kafka:9092", replication_factor=2)
    assert (mine.bootstrap_servers, mine.replication_factor) == ("kafka:9092", 2)
    # One node: as before.
    assert _props(KafkaService(Settings(state_dir=tmp_path / "one")))["min.insync.replicas"] == "1"


def test_a_formatted_quorum_refuses_another_node_count(tmp_path: Path):
    three = Settings(state_dir=tmp_path / "state", kafka=KafkaSettings(brokers=3))
    first = KafkaService(three)._cluster_id()
    assert KafkaService(three, 2)._cluster_id() == first  # every node, one cluster id
    one = Settings(state_dir=tmp_path / "state")
    with pytest.raises(StackError, match="formatted as 3 node"):
        KafkaService(one)._cluster_id()


def test_kafka_with_a_tls_port_adds_a_sasl_ssl_listener_and_clients_verify_it(tmp_path: Path):
    from cosmic import kafka, tls

    private = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                       kafka=KafkaSettings(port=39092, controller_port=39093, tls_port=39094))
    props = dict(line.split("=", 1)
                 for line in KafkaService(private)._server_properties().splitlines())
    assert props["listeners"] == ("SASL_PLAINTEXT://127.0.0.1:39092,SASL_SSL://127.0.0.1:39094,"
                                  "CONTROLLER://127.0.0.1:39093")
    assert props["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    keystore = Path(props["listener.name.sasl_ssl.ssl.keystore.location"])
    assert keystore.stat().st_mode & 0o777 == 0o600
    issued = keystore.read_bytes()
    assert (tls.folder(private.state_dir) / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    # The same certificate on the next prepare; a new one once it names other hosts.
    again = tls.server_identity(private.state_dir, "kafka", ["127.0.0.1", "localhost"])
    assert again.keystore.read_bytes() == issued
    other = tls.server_identity(private.state_dir, "kafka", ["127.0.0.1"])
    assert other.keystore.read_bytes() != issued
    client = private.with_overrides(kafka=private.kafka.model_copy(
        update={"security_protocol": "SASL_SSL"}))
    assert kafka.security_config(client)["ssl.ca.location"] == str(tls.ca_path(private.state_dir))
    assert kafka.security_config(client)["ssl.endpoint.identification.algorithm"] == "https"
    java = kafka.java_security_properties(client)
    assert java["ssl.truststore.type"] == "PEM"
    assert java["ssl.truststore.location"] == str(tls.ca_path(private.state_dir))
    # Only SASL_SSL clients are told about a CA; a plaintext stack has no TLS listener.
    assert "ssl.ca.location" not in kafka.security_config(private)
    unsecured = private.with_overrides(kafka=private.kafka.model_copy(
        update={"security_protocol": "PLAINTEXT"}))
    with pytest.raises(StackError, match="SASL_SSL"):
        KafkaService(unsecured)._server_properties()
