"""The Faust apps' exactly-once commit: the offsets a transaction commits cover every
event whose outputs it holds (streams.living.faustapp._commit_what_each_transaction_holds).

No broker: a real Faust app and consumer (their offset bookkeeping is what is under
test), with a recorder in place of the transactional producer, and the race staged
by hand: the commit picks its offsets while an event's sends hold the transaction's
lock; the event is acknowledged before the lock is free.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer
from faust.types import TP

from cosmic.settings import Settings
from streams.living import faustapp


class Transaction:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def send_offsets_to_transaction(self, offsets: dict[TP, int], group: str) -> None:
        self.calls.append(("offsets", dict(offsets)))

    async def commit_transaction(self) -> None:
        self.calls.append(("commit", None))

    async def begin_transaction(self) -> None:
        self.calls.append(("begin", None))


def producer(tid: str, lock: asyncio.Lock, transaction: Transaction) -> SimpleNamespace:
    """The transport producer's transaction state, with Faust's own commit_transactions
    (what an unpatched commit calls) working on it."""
    ns = SimpleNamespace(_trn_locks={tid: lock}, _transaction_producers={tid: transaction})
    ns.commit_transactions = functools.partial(AiokafkaProducer.commit_transactions, ns)
    return ns


def ack(consumer: Any, tp: TP, *offsets: int) -> None:
    """Acknowledge ``offsets`` as Faust does when an agent is done with their events."""
    for o in offsets:
        consumer._acked[tp].append(o)
        consumer._acked_index[tp].add(o)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def app(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    settings = Settings(state_dir=tmp_path, kafka={"security_protocol": "PLAINTEXT"})
    app = faustapp.make_app(settings, "test-commit")
    yield app
    # The consumer's thread owns a loop even when, as here, it never starts.
    thread = getattr(app.consumer, "_thread", None)
    if thread is not None:
        thread.thread_loop.close()


def test_an_event_acknowledged_while_the_commit_waits_is_committed_with_its_outputs(
        app: Any, loop: asyncio.AbstractEventLoop) -> None:
    consumer = app.consumer
    manager = consumer.transactions
    tp = TP("cosmic.commands.v1", 1)
    app.assignor._topic_groups = {tp.topic: 0}  # what the assignor learns at assignment
    tid = "test-commit-0-1"
    transaction = Transaction()
    lock = asyncio.Lock()

    manager.producer = producer(tid, lock, transaction)

    async def race() -> dict[TP, int]:
        consumer._committed_offset[tp] = 10
        ack(consumer, tp, 10, 11, 12, 13, 14)
        offsets = consumer._filter_committable_offsets([tp])
        assert offsets == {tp: 15}  # picked before event 15 is done
        await lock.acquire()  # event 15's outputs are being sent (the Outbox holds it)
        committing = asyncio.ensure_future(manager.commit(offsets))
        await asyncio.sleep(0)  # the commit now waits for the lock
        ack(consumer, tp, 15)  # event 15 sent everything and is acknowledged
        lock.release()
        await committing
        return offsets

    offsets = loop.run_until_complete(race())
    assert transaction.calls == [("offsets", {tp: 16}), ("commit", None), ("begin", None)]
    # Faust records what it committed from the same mapping, and goes on from there.
    assert offsets == {tp: 16}
    consumer._committed_offset.update(offsets)
    ack(consumer, tp, 16, 17)
    assert consumer._filter_committable_offsets([tp]) == {tp: 18}


def test_without_new_acknowledgements_the_offsets_picked_are_committed(
        app: Any, loop: asyncio.AbstractEventLoop) -> None:
    consumer = app.consumer
    tp = TP("cosmic.commands.v1", 0)
    app.assignor._topic_groups = {tp.topic: 0}
    tid = "test-commit-0-0"
    transaction = Transaction()

    consumer.transactions.producer = producer(tid, asyncio.Lock(), transaction)
    consumer._committed_offset[tp] = 3
    ack(consumer, tp, 3, 4)
    offsets = consumer._filter_committable_offsets([tp])
    loop.run_until_complete(consumer.transactions.commit(offsets))
    assert transaction.calls[0] == ("offsets", {tp: 5})
    assert consumer._filter_committable_offsets([tp]) == {}


class Sending(Transaction):
    async def send(self, topic: str, value: Any, key: Any = None, partition: int | None = None,
                   headers: Any = None) -> None:
        self.calls.append(("send", (topic, partition)))


def test_table_writes_of_an_aborted_transaction_are_taken_back_and_kept_once_committed(
        app: Any, loop: asyncio.AbstractEventLoop) -> None:
    """A rebalance aborts the open transaction and Faust replays its events: the tables
    must be as the last commit left them, else the replay applies each event twice."""
    app.in_worker = True  # as in a worker: exactly-once sends join the transactions
    consumer = app.consumer
    tp = TP("cosmic.living.planets.v1", 2)
    app.assignor._topic_groups = {tp.topic: 0}
    tid = "test-commit-0-2"
    transaction = Sending()
    consumer.transactions.producer = producer(tid, asyncio.Lock(), transaction)
    table = app.Table("civs", default=None, schema=faustapp.table_schema())
    outbox = faustapp.Outbox(app, None, Settings(kafka={"security_protocol": "PLAINTEXT"}))
    event = SimpleNamespace(message=SimpleNamespace(tp=tp, partition=tp.partition))

    def process(key: str, value: Any) -> None:
        staged = faustapp.StagedTable(table, outbox)
        staged[key] = value
        staged.commit()
        loop.run_until_complete(outbox.flush(event))

    process("w/1", {"advances": 1})
    loop.run_until_complete(consumer.transactions.commit({tp: 1}))  # committed: kept
    process("w/1", {"advances": 2})
    process("w/2", {"advances": 1})
    assert dict(table.data) == {"w/1": {"advances": 2}, "w/2": {"advances": 1}}
    faustapp._undo(tid)  # what the rebalance's abort does
    assert dict(table.data) == {"w/1": {"advances": 1}}
    assert ("send", (table.changelog_topic.get_topic_name(), tp.partition)) in transaction.calls
    faustapp._undo(tid)  # nothing left to take back
    assert dict(table.data) == {"w/1": {"advances": 1}}
