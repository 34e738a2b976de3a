"""Kafka client factory: every producer, consumer and admin client is built here.

Builders take the settings explicitly, so nothing is constructed at import time
and tests can point a client anywhere. Defaults follow the processing
guarantee: idempotent producers, manual offset commits, ``read_committed``.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cosmic import tls
from cosmic.errors import ServiceUnavailable
from cosmic.settings import Settings

_SILENT = logging.getLogger("cosmic.kafka.probe")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def security_config(settings: Settings) -> dict[str, Any]:
    """How a librdkafka client proves who it is: ``settings.kafka.identity`` over SASL.

    Every client of the platform gets these keys, so there is one place that knows
    the mechanism and where passwords come from.
    """
    k = settings.kafka
    if not k.secured:
        return {"security.protocol": "PLAINTEXT"}
    return {
        "security.protocol": k.security_protocol,
        "sasl.mechanism": k.sasl_mechanism,
        "sasl.username": k.identity,
        "sasl.password": k.password(),
    } | _tls_config(settings)


def ca_location(settings: Settings) -> Path | None:
    """The CA a SASL_SSL client trusts: the configured one, else the local stack's
    development CA if it made one (else None: the system's, which will not know it)."""
    configured = settings.kafka.ssl_ca_location
    if configured is not None:
        return configured
    local = tls.ca_path(settings.state_dir)
    return local if local.exists() else None


def _tls_config(settings: Settings) -> dict[str, Any]:
    if settings.kafka.security_protocol != "SASL_SSL":
        return {}
    # The broker's certificate is verified, its name included (librdkafka's default
    # too, spelled out here: turning it off would make TLS no proof of who answers).
    out: dict[str, Any] = {"ssl.endpoint.identification.algorithm": "https"}
    ca = ca_location(settings)
    if ca is not None:
        out["ssl.ca.location"] = str(ca)
    return out


def java_security_properties(settings: Settings, *,
                             package: str = "org.apache.kafka") -> dict[str, str]:
    """The same for a JVM Kafka client (Kafka's tools, Spark's and Flink's sources).

    ``package`` is where the client's Kafka classes live: Flink's SQL connector
    relocates them, and the JAAS line must name the login module it really has.
    """
    k = settings.kafka
    if not k.secured:
        return {"security.protocol": "PLAINTEXT"}
    module = {"PLAIN": "plain.PlainLoginModule"}.get(k.sasl_mechanism, "scram.ScramLoginModule")
    # Generated passwords are URL-safe: nothing in them needs escaping in a JAAS line.
    jaas = (f"{package}.common.security.{module} required "
            f'username="{k.identity}" password="{k.password()}";')
    out = {"security.protocol": k.security_protocol, "sasl.mechanism": k.sasl_mechanism,
           "sasl.jaas.config": jaas}
    ca = ca_location(settings) if k.security_protocol == "SASL_SSL" else None
    if ca is not None:
        out |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca)}
    return out


def _base(settings: Settings, client_id: str | None) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "client.id": client_id or settings.kafka.client_id,
    } | security_config(settings)


def producer_config(
    settings: Settings,
    *,
    client_id: str | None = None,
    transactional_id: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    conf = _base(settings, client_id) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        # Java clients' partitioner: a key lands on the same partition whichever
        # client (ours, kcat, a JVM service) produced it.
        "partitioner": "murmur2_random",
    }
    if transactional_id:
        conf["transactional.id"] = transactional_id
    conf.update(overrides)
    return conf


def consumer_config(
    settings: Settings,
    group_id: str,
    *,
    client_id: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    conf = _base(settings, client_id) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": False,
    }
    conf.update(overrides)
    return conf


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as its Java client computes it), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition our producers (and Java's) choose for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def home_partition(world_id: str, partitions: int) -> int:
    """A world's home: the one partition of the command topic (and of every topic the
    worker writes for it) where its history lives, whichever client produced to it."""
    return partition_for(world_id.encode(), partitions)


def producer(settings: Settings, **kwargs: Any) -> Producer:
    return Producer(producer_config(settings, **kwargs))


def consumer(settings: Settings, group_id: str, **kwargs: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **kwargs))


def reader(settings: Settings, purpose: str, **overrides: Any) -> Consumer:
    """A throwaway consumer for reading a log by assignment (tail, stats, replay, export):
    a unique group that never commits, and short fetch waits, since such readers
    mostly wait at the end of a partition."""
    conf = {"fetch.wait.max.ms": 20, "client.id": f"cosmic-{purpose}"} | overrides
    return consumer(settings, f"cosmic-{purpose}-{uuid.uuid4().hex[:8]}", **conf)


def admin(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient(_base(settings, None) | overrides)


def high_watermark(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30.0,
                   cached: bool = False) -> int:
    """The partition's end offset, asked again while the cluster says so (a partition
    just created, or whose leader just moved, answers NOT_LEADER for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=10, cached=cached)[1])
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            # librdkafka flags NOT_LEADER as retriable on produce, not on this query (seen on
            # a broker just started: its new partitions' leaders not elected yet).
            again = isinstance(err, KafkaError) and (err.retriable() or err.code() in _MOVING)
            if not again or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# Answers of a partition whose leader is being elected or moved, or that was just created
# (the client's metadata does not have it yet): asked again.
_MOVING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                     KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART})


def wait_for_cluster(settings: Settings, timeout_s: float = 10.0) -> int:
    """Ask the cluster for metadata; return its broker count or raise ServiceUnavailable."""
    # Connection refusals while a broker boots are expected: keep librdkafka quiet.
    client = admin(settings, log_level=0, logger=_SILENT)
    try:
        md = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        detail = err.str() if isinstance(err, KafkaError) else str(exc)
        raise ServiceUnavailable(
            "kafka", settings.kafka.bootstrap_servers, timeout_s, detail
        ) from None
    return len(md.brokers)
