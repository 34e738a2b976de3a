"""A replicated local cluster: three KRaft nodes on loopback (a private stack on ports of
its own), replication factor 3, ``min.insync.replicas`` 2. One node is SIGKILLed in the
middle of a transactional stream: the producer goes on (aborting and retrying what the
failure caught), a consumer group reading committed records goes on, and what it read is
every record exactly once, in order per key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from cosmic import kafka
from cosmic.settings import KafkaSettings, Settings
from cosmic.stack import Stack
from cosmic.stack.kafka import KafkaService

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

TOPIC = "cluster.test.stream"
KEYS = 12
TRANSACTIONS = 40
PER_TRANSACTION = 48  # a multiple of KEYS: every key gets as many records


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("cluster")
    private = Settings(state_dir=state, cache_dir=settings.cache_dir, startup_timeout_s=180,
                       kafka=KafkaSettings(port=39092, controller_port=39093, brokers=3,
                                           heap="256m"))
    stack = Stack(private, factories=[KafkaService])
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def _partitions_led(admin: Any, count: int, timeout_s: float = 30.0) -> dict[int, Any]:
    """The topic's partitions once metadata lists all ``count`` of them with a leader: just
    after creation a node may answer with none yet (CI saw partition 0 missing)."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions
        if len(meta) == count and all(p.leader >= 0 for p in meta.values()):
            return dict(meta)
        assert time.monotonic() < deadline, f"partitions without a leader after {timeout_s}s"
        time.sleep(0.2)


def test_three_nodes_replicate_and_a_killed_one_loses_nothing(cluster: Stack):
    s = cluster.settings
    assert [svc.name for svc in cluster.services] == ["kafka", "kafka-2", "kafka-3"]
    assert s.kafka.bootstrap_servers == "127.0.0.1:39092,127.0.0.1:39094,127.0.0.1:39096"
    assert kafka.wait_for_cluster(s, 30) == 3
    admin = kafka.admin(s)
    for f in admin.create_topics([NewTopic(TOPIC, 3, s.kafka.replication_factor,
                                           config={"min.insync.replicas": "2"})]).values():
        f.result(30)
    meta = _partitions_led(admin, 3)
    assert sorted(meta) == [0, 1, 2] and all(len(p.replicas) == 3 for p in meta.values())
    # The leader of partition 0 dies: the fault lands on a partition in use, whichever
    # node the cluster made its leader.
    (victim,) = [svc for svc in cluster.services
                 if isinstance(svc, KafkaService) and svc.node == meta[0].leader]
    led = [p for p, m in meta.items() if m.leader == victim.node]

    consumed: list[tuple[str, int]] = []
    stop = threading.Event()
    reader = threading.Thread(target=_consume, args=(s, consumed, stop), daemon=True)
    reader.start()
    aborted = _produce(s, kill_at=TRANSACTIONS // 4, victim=victim)
    deadline = time.monotonic() + 120
    while len(consumed) < TRANSACTIONS * PER_TRANSACTION and time.monotonic() < deadline:
        time.sleep(0.5)
    stop.set()
    reader.join(30)

    # The fault landed where it matters: the node led partitions of the stream, and the
    # survivors lead them all now.
    after = admin.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions
    print(f"\nkilled node {victim.node} (leader of partitions {led}); "
          f"{aborted} transaction(s) aborted and retried")
    survivors = {1, 2, 3} - {victim.node}
    assert all(m.leader in survivors for m in after.values())
    by_key: dict[str, list[int]] = {}
    for key, seq in consumed:
        by_key.setdefault(key, []).append(seq)
    want = TRANSACTIONS * PER_TRANSACTION // KEYS
    assert sorted(by_key) == sorted(f"k{i}" for i in range(KEYS))
    for key, seqs in by_key.items():
        assert seqs == list(range(want)), f"{key}: lost, duplicated or out of order"


def _produce(s: Settings, kill_at: int, victim: KafkaService) -> int:
    producer = kafka.producer(s, transactional_id="cluster-test-tx",
                              **{"transaction.timeout.ms": 30_000})
    producer.init_transactions(60)
    aborted, seq = 0, dict.fromkeys(range(KEYS), 0)
    for t in range(TRANSACTIONS):
        if t == kill_at:
            pid = victim.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        batch = [(i % KEYS, seq[i % KEYS] + i // KEYS) for i in range(PER_TRANSACTION)]
        while True:
            try:
                producer.begin_transaction()
                for key, n in batch:
                    producer.produce(TOPIC, key=f"k{key}".encode(), value=str(n).encode())
                producer.commit_transaction(60)
                break
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.txn_requires_abort():
                    producer.abort_transaction(60)
                    aborted += 1
                elif not err.retriable():
                    raise
                time.sleep(0.5)
        for key, _ in batch:
            seq[key] += 1
    producer.flush(30)
    return aborted


def _consume(s: Settings, out: list[tuple[str, int]], stop: threading.Event) -> None:
    consumer = kafka.consumer(s, "cluster-test-readers")
    consumer.subscribe([TOPIC])
    try:
        while not stop.is_set():
            msgs = consumer.consume(500, timeout=0.5)
            good = [m for m in msgs if not m.error()]
            out.extend(((m.key() or b"").decode(), int(m.value() or b"0")) for m in good)
            if good:
                # A commit caught by the coordinator's failover is retried by the next
                # one; the position, in this process, moves on regardless.
                with contextlib.suppress(KafkaException):
                    consumer.commit(asynchronous=False)
    finally:
        consumer.close()
