"""The local broker's optional SASL_SSL listener, on a private broker (own state, own ports).

A client that trusts the stack's development CA logs in over TLS and round-trips a
record; one that trusts another CA, or only the system's, is refused with a certificate
verification error; a client speaking SASL without TLS to the TLS port gets nowhere.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import NewTopic

from cosmic import acls, kafka, tls
from cosmic.settings import KafkaSettings, Settings
from cosmic.stack.kafka import KafkaService

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORT, CONTROLLER, TLS_PORT = 29292, 29293, 29294


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    shared = Settings()
    private = Settings(
        state_dir=tmp_path_factory.mktemp("kafka-tls") / "state", cache_dir=shared.cache_dir,
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{PORT}", port=PORT,
                            controller_port=CONTROLLER, tls_port=TLS_PORT, heap="256m"),
        startup_timeout_s=120)
    svc = KafkaService(private)
    try:
        assert svc.start() == "started"  # never someone else's broker on these ports
        yield private
    finally:
        svc.stop()


def _over_tls(private: Settings, **kafka_fields: Any) -> Settings:
    """The admin identity of the private stack, through its TLS listener."""
    admin = private.as_identity(acls.ADMIN)
    return admin.with_overrides(kafka=admin.kafka.model_copy(update={
        "security_protocol": "SASL_SSL", "bootstrap_servers": f"127.0.0.1:{TLS_PORT}",
        **kafka_fields}))


def _refusal(config: dict[str, Any]) -> str:
    """What a client with ``config`` is told (its error callbacks) when it cannot get the
    broker's metadata; fails if it can."""
    errors: list[str] = []
    client = Producer({**config, "error_cb": lambda e: errors.append(str(e)),
                       "log_level": 0, "socket.timeout.ms": 3000,
                       "reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 2000})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=4)
    for _ in range(8):
        if errors:
            break
        client.poll(0.5)
    return " | ".join(errors)


def test_the_tls_material_is_private_and_the_listener_is_sasl_ssl(broker: Settings):
    where = tls.folder(broker.state_dir)
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    for key in ("ca-key.pem", "kafka.pem"):
        assert stat.S_IMODE((where / key).stat().st_mode) == 0o600, key
    props = dict(line.split("=", 1) for line in
                 (broker.state_dir / "kafka" / "server.properties").read_text().splitlines())
    assert f"SASL_SSL://127.0.0.1:{TLS_PORT}" in props["listeners"]
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"


def test_a_client_trusting_the_stack_ca_round_trips_a_record_over_tls(broker: Settings):
    over_tls = _over_tls(broker)
    config = kafka.security_config(over_tls)
    assert config["ssl.ca.location"] == str(tls.ca_path(broker.state_dir))
    topic = f"tls.{uuid.uuid4().hex[:8]}"
    admin = kafka.admin(over_tls)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer(kafka.producer_config(over_tls))
    value = uuid.uuid4().bytes
    producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    consumer = Consumer({**kafka.consumer_config(over_tls, f"g-{topic}"),
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        got = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got = msg.value()
                break
        assert got == value
    finally:
        consumer.close()


def test_a_client_trusting_another_ca_or_none_is_refused_by_certificate(broker: Settings,
                                                                       tmp_path: Path):
    tls.server_identity(tmp_path, "other", ["127.0.0.1"])  # another development CA
    wrong = kafka.security_config(_over_tls(broker, ssl_ca_location=tls.ca_path(tmp_path)))
    assert "certificate verify failed" in _refusal(
        {**wrong, "bootstrap.servers": f"127.0.0.1:{TLS_PORT}"})
    system_only = {k: v for k, v in wrong.items() if k != "ssl.ca.location"}
    assert "certificate verify failed" in _refusal(
        {**system_only, "bootstrap.servers": f"127.0.0.1:{TLS_PORT}"})


def test_sasl_without_tls_gets_nothing_from_the_tls_port(broker: Settings):
    plain = kafka.security_config(broker.as_identity(acls.ADMIN))
    assert plain["security.protocol"] == "SASL_PLAINTEXT"
    assert _refusal({**plain, "bootstrap.servers": f"127.0.0.1:{TLS_PORT}"})  # told why
