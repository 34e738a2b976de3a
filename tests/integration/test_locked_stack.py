"""The locked-down local stack, proved against the real services.

Kafka takes only SCRAM-authenticated clients and grants each identity what
cosmic/acls.py says and nothing more; the registry takes writes only with its
credentials; ClickHouse and PostgreSQL refuse a connection without the
generated password; every listening socket is on loopback.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import psycopg
import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from cosmic import acls, kafka, tls, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.errors import Unauthorized
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext
from streams.worlds import scenario

pytestmark = pytest.mark.integration

_AVRO_STRING = '{"type": "string"}'


@pytest.fixture(autouse=True)
def _secured(settings: Settings, stack: Stack) -> None:
    if not settings.kafka.secured:
        pytest.fail("these tests prove the locked-down stack; this one runs with "
                    "COSMIC_KAFKA__SECURITY_PROTOCOL=PLAINTEXT")


def _deliver(conf: dict[str, Any], topic: str, value: bytes, key: bytes | None = None,
             timeout_s: float = 20.0) -> KafkaError | None:
    """Produce one record; the delivery error (None: written), and any client errors."""
    outcome: list[KafkaError | None] = []
    producer = Producer(conf | {"message.timeout.ms": int(timeout_s * 1000)})
    producer.produce(topic, value=value, key=key,
                     on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(timeout_s + 5)
    assert outcome, f"no delivery report for {topic} within {timeout_s}s"
    return outcome[0]


def _first_error(conf: dict[str, Any], topic: str, timeout_s: float = 15.0) -> KafkaError | None:
    """Poll a consumer of ``topic`` until it reports an error (None: none came)."""
    errors: list[KafkaError] = []
    consumer = Consumer(conf | {"error_cb": errors.append})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(int(timeout_s / 0.5)):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error():
                return msg.error()
            if errors:
                return errors[0]
    finally:
        consumer.close()
    return None


def _command(registry: RegistryClient) -> tuple[bytes, bytes]:
    """A valid command for a world of a shard no worker runs: it changes nothing."""
    world = f"aclprobe{uuid.uuid4().hex[:8]}:w"
    cmd = next(iter(scenario.star_system(world, asteroids=0, tick_rate_hz=1.0,
                                         snapshot_every=10)))
    value = AvroSerializer(registry, "PlayerCommand")(cmd.to_avro(),
                                                      SerializationContext(topics.COMMANDS.name))
    return world.encode(), value


def test_a_client_without_credentials_cannot_produce_or_consume(settings: Settings):
    errors: list[KafkaError] = []
    plain = {"bootstrap.servers": settings.kafka.bootstrap_servers, "error_cb": errors.append}
    # No SASL at all: the broker's only client listener speaks SASL, so nothing gets through.
    err = _deliver(plain, topics.STATE_DELTAS.name, b"x", timeout_s=5)
    assert err is not None and err.code() == KafkaError._MSG_TIMED_OUT
    assert _first_error(plain | {"group.id": "nobody"}, topics.COMMANDS.name) is not None

    # SASL with a wrong password, and with a user that does not exist: authentication fails.
    for user, password in (("gateway", "not-the-password"), ("mallory", "guess")):
        errors.clear()
        wrong = kafka.producer_config(settings) | {"sasl.username": user,
                                                   "sasl.password": password,
                                                   "error_cb": errors.append}
        err = _deliver(wrong, topics.STATE_DELTAS.name, b"x", timeout_s=5)
        assert err is not None
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
        got = _first_error(kafka.consumer_config(settings, "nobody") | {
            "sasl.username": user, "sasl.password": password}, topics.COMMANDS.name)
        assert got is not None and got.code() == KafkaError._AUTHENTICATION, got


def test_the_player_identity_may_not_write_deltas_or_read_anything(settings: Settings):
    player = settings.as_identity(acls.PLAYER)
    err = _deliver(kafka.producer_config(player), topics.STATE_DELTAS.name, b"forged delta")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    err = _deliver(kafka.producer_config(player), topics.COMMANDS.name, b"raw command")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    got = _first_error(kafka.consumer_config(player, "player-snoop"), topics.STATE_DELTAS.name)
    # Refused by the broker's authorizer: for the group it names first, or for the topic.
    assert got is not None and got.code() in (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                              KafkaError.TOPIC_AUTHORIZATION_FAILED), got


def test_the_gateway_writes_commands_but_not_deltas(settings: Settings):
    gateway = settings.as_identity("gateway")
    with RegistryClient.from_settings(settings) as registry:
        key, value = _command(registry)
    conf = kafka.producer_config(gateway)
    assert _deliver(conf, topics.COMMANDS.name, value, key) is None
    err = _deliver(conf, topics.STATE_DELTAS.name, b"forged delta", key)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # It reads what it serves, in its own groups only.
    assert _first_error(kafka.consumer_config(gateway, "cosmic-gateway-probe"),
                        topics.STATE_DELTAS.name, timeout_s=3) is None


def test_the_registry_takes_writes_only_with_credentials(settings: Settings):
    subject = f"test-auth-{uuid.uuid4().hex[:8]}-value"
    url = settings.registry.url
    body = {"schema": _AVRO_STRING}
    headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    refused = httpx.post(f"{url}/subjects/{subject}/versions", json=body, headers=headers)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.post(f"{url}/subjects/{subject}/versions", json=body, headers=headers,
                       auth=(settings.registry.username, "not-the-password"))
    assert wrong.status_code == 401
    assert httpx.put(f"{url}/config", json={"compatibility": "NONE"},
                     headers=headers).status_code == 401
    assert httpx.delete(f"{url}/subjects/{subject}").status_code == 401
    with RegistryClient(url) as anonymous, pytest.raises(Unauthorized):
        anonymous.register(subject, _AVRO_STRING)

    with RegistryClient.from_settings(settings) as client:
        schema_id = client.register(subject, _AVRO_STRING)
        assert client.versions(subject) == [1]
    # Reads stay open: any consumer resolves a schema id without credentials.
    assert httpx.get(f"{url}/schemas/ids/{schema_id}").status_code == 200
    assert httpx.get(f"{url}/subjects/{subject}/versions").json() == [1]


def _refused(connect: Callable[[], Any]) -> Exception:
    # Each driver raises its own type; the caller checks which.
    with pytest.raises(Exception) as caught:
        connect()
    return caught.value


def test_clickhouse_and_postgres_refuse_connections_without_the_password(settings: Settings):
    ch, pg = settings.clickhouse, settings.postgres
    # ClickHouse 18.16's codes: REQUIRED_PASSWORD (194) for none, WRONG_PASSWORD (193);
    # later releases answer AUTHENTICATION_FAILED (516) to both.
    for password, codes in (("", {194, 516}), ("wrong", {193, 516})):
        err = _refused(lambda pw=password: Client(host=ch.host, port=ch.port, user=ch.user,
                                                  password=pw, connect_timeout=5)
                       .execute("SELECT 1"))
        assert isinstance(err, ServerException) and err.code in codes, err
        err = _refused(lambda pw=password: psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pw, dbname=pg.database,
            connect_timeout=5))
        assert isinstance(err, psycopg.OperationalError)
        assert "password" in str(err), err
    # The settings' own (generated) passwords work.
    client = Client(host=ch.host, port=ch.port, user=ch.user, password=ch.secret(),
                    connect_timeout=5)
    try:
        assert client.execute("SELECT 1") == [(1,)]
    finally:
        client.disconnect()
    with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_every_service_listens_on_loopback_only_and_secrets_are_private(
        settings: Settings, stack: Stack):
    checked = 0
    for svc in stack.services:
        pid = svc.pid()
        if pid is None:
            continue  # a stack this session did not start: not ours to inspect
        root = psutil.Process(pid)
        for proc in (root, *root.children(recursive=True)):
            for conn in proc.net_connections(kind="inet"):
                if conn.status != psutil.CONN_LISTEN:
                    continue
                ip = ipaddress.ip_address(conn.laddr.ip)
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                    ip = ip.ipv4_mapped
                assert ip.is_loopback, f"{svc.name} listens on {conn.laddr}"
                checked += 1
    assert checked >= 4 or all(s.pid() is None for s in stack.services)
    folder = settings.state_dir / "secrets"
    # Certificates are public (clients read the CA's to trust it); everything else there,
    # keys included, is its owner's alone.
    public = {tls.ca_path(settings.state_dir)}
    if folder.exists():
        for path in folder.rglob("*"):
            mode = path.stat().st_mode & 0o777
            want = 0o700 if path.is_dir() else 0o644 if path in public else 0o600
            assert mode == want, f"{path}: {oct(mode)}"
