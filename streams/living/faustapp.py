"""What both Faust apps share: the app configuration, topic names and codecs.

Every setting comes from :class:`cosmic.settings.Settings`; nothing here reads
the environment. Tables live in memory and are rebuilt from their changelog
topics on start, which is what makes a restarted worker whole again.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator, MutableMapping
from typing import Any

import faust

from cosmic import topics
from cosmic.settings import Settings
from schemas.serde import SchemaSource

from .faust_codec import AvroCodec, Undecodable, dead_letter_headers

logger = logging.getLogger(__name__)


def topic_name(settings: Settings, topic: topics.Topic) -> str:
    return f"{settings.living.topic_prefix}{topic.name}"


# Table writes of each open transaction, by transactional id: (store, key, held before,
# value before), in the order made. A transaction aborted on a rebalance takes its
# events' table writes back with it (:func:`_abort_what_a_rebalance_replays`); one
# committed drops them.
_UNDO: dict[str, list[tuple[Any, str, bool, Any]]] = {}


def _undo(tid: str) -> None:
    """Put the tables back as they were before transaction ``tid``'s events wrote them."""
    for store, key, held, before in reversed(_UNDO.pop(tid, [])):
        if held:
            store[key] = before
        elif key in store:
            del store[key]


def _recover_from_broker_offsets() -> None:
    """Make exactly-once table recovery ask the broker where each changelog ends.

    With transactions, faust-streaming 0.15 takes a changelog's end from the
    consumer's cached last stable offset, which is unknown (-1) until that
    partition's first fetch: a worker restarted quickly then believes its
    changelogs are empty, skips recovery and carries on with empty tables
    (seen here as wrong events after a crash). A ListOffsets request at
    ``read_committed`` returns the same last stable offset, from the broker,
    always known.
    """
    from faust.transport.drivers import aiokafka as driver

    async def _highwaters(self: Any, partitions: Any) -> Any:
        return await self._ensure_consumer().end_offsets(list(partitions))

    driver.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]


def _commit_what_each_transaction_holds() -> None:
    """Make each exactly-once commit carry the offset of every event whose outputs it holds.

    faust-streaming 0.15 picks the offsets to commit first and only then waits for
    the transaction's lock. The :class:`Outbox` sends an event's outputs under that
    lock: an event whose sends hold it at that moment finishes, is acknowledged, and
    its outputs are committed in the transaction, its offset not. After a crash (or
    a rebalance) before the next commit the event is processed again, on tables
    that already hold its effect, and its outputs are committed twice (seen here
    under load as a civilization's founding refused a second time). Here each
    partition's offset is taken again once the lock is held: by then every event
    acknowledged has sent all it made, and no event can send until the commit is done.
    """
    from aiokafka.errors import ProducerFenced
    from faust.transport.consumer import TransactionManager

    async def commit(self: Any, offsets: dict[Any, int],
                     start_new_transaction: bool = True) -> bool:
        producer, consumer = self.producer, self.consumer
        group_id = self.app.conf.id
        by_tid: dict[str, list[Any]] = {}
        for tp in offsets:
            group = self.app.assignor.group_for_topic(tp.topic)
            by_tid.setdefault(f"{group_id}-{group}-{tp.partition}", []).append(tp)
        for tid, tps in by_tid.items():
            async with producer._trn_locks[tid]:
                transaction = producer._transaction_producers.get(tid)
                if transaction is None:
                    continue  # revoked meanwhile: its events will be processed again
                for tp in tps:
                    # Acknowledged since the offsets were picked: commit those too (the
                    # consumer's bookkeeping then continues from there, as Faust's does
                    # from ``offsets`` once the commit returns).
                    before = consumer._committed_offset[tp]
                    consumer._committed_offset[tp] = offsets[tp]
                    later = consumer._new_offset(tp)
                    consumer._committed_offset[tp] = before
                    if later is not None and later > offsets[tp]:
                        offsets[tp] = later
                try:
                    await transaction.send_offsets_to_transaction(
                        {tp: offsets[tp] for tp in tps}, group_id)
                    await transaction.commit_transaction()
                    _UNDO.pop(tid, None)
                    if start_new_transaction:
                        await transaction.begin_transaction()
                except ProducerFenced as exc:
                    await self.app.crash(exc)
        return True

    TransactionManager.commit = commit  # type: ignore[method-assign,assignment]


def _abort_what_a_rebalance_replays() -> None:
    """Abort each partition's open transaction when the group rebalances.

    After a rebalance faust-streaming 0.15 seeks every partition it holds back to
    the committed offsets and processes again what followed, but a partition kept
    through the rebalance keeps its transaction open, with the outputs of that
    first processing in it: both copies are committed at the next commit (the
    fault matrix's rebalance and broker-restart cells, which a restart of the
    broker causes too). Aborted here, before Faust begins the next transaction,
    only the second processing is committed. The tables, in memory, already hold what
    the aborted events wrote (:class:`StagedTable` applies a write at once, for the
    events after it): those writes are taken back too, so the replay starts from
    the state the committed transactions left.
    """
    from faust.transport.consumer import TransactionManager

    original = TransactionManager.on_rebalance
    if getattr(original, "aborts_replayed", False):
        return  # patched already (one process may build several apps)

    async def on_rebalance(self: Any, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        producer = self.producer
        for tid in sorted(self._tps_to_transactional_ids(set(assigned) | set(revoked))):
            transaction = producer._transaction_producers.get(tid)
            manager = getattr(transaction, "_txn_manager", None)
            if manager is None or not manager.is_in_transaction():
                continue
            async with producer._trn_locks[tid]:
                try:
                    await transaction.abort_transaction()
                except Exception as exc:  # noqa: BLE001 - a fenced producer is replaced below
                    logger.warning("could not abort transaction %s on rebalance: %s", tid, exc)
                # Replayed next, the aborted events must find the tables as they were
                # before them (else each one's effect is applied twice).
                _undo(tid)
        await original(self, assigned, revoked, newly_assigned)

    on_rebalance.aborts_replayed = True  # type: ignore[attr-defined]
    TransactionManager.on_rebalance = on_rebalance  # type: ignore[method-assign]


def make_app(settings: Settings, app_id: str) -> faust.App:
    servers = [f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")]
    timeout = settings.living.session_timeout_s
    _recover_from_broker_offsets()
    _commit_what_each_transaction_holds()
    _abort_what_a_rebalance_replays()
    k = settings.kafka
    # Faust's aiokafka clients log in like every other client: this process's identity.
    # A TLS context (SASL_SSL) is what makes Faust use TLS under SASL.
    tls = ssl.create_default_context() if k.security_protocol == "SASL_SSL" else None
    credentials = faust.SASLCredentials(
        username=k.identity, password=k.password(), mechanism=k.sasl_mechanism,
        ssl_context=tls,
    ) if k.secured else None
    datadir = settings.state_dir / "faust" / app_id
    # Faust makes its data folder but not the folders above it: a fresh state folder
    # has no faust/ yet, and the worker would die at start.
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=servers,
        broker_credentials=credentials,
        processing_guarantee="exactly_once",
        store="memory://",
        # Changelogs must have as many partitions as the topics the tables follow.
        topic_partitions=settings.kafka.default_partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        datadir=str(datadir),
        web_enabled=False,
        # A crashed worker's partitions move after this, not after Faust's 60 s default.
        broker_session_timeout=timeout,
        broker_heartbeat_interval=max(1.0, timeout / 4),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset=settings.living.start_from,
        # No standby copies of the tables on other workers: with two workers or more,
        # faust-streaming 0.15 seeks a standby of an empty changelog to offset -1 and
        # its recovery crashes (the fault matrix's rebalance cell). An active worker
        # rebuilds a table from its changelog, which holds only the latest per key.
        table_standby_replicas=0,
    )


def table_schema() -> faust.Schema:
    """Table keys are strings ("world/planet"); values plain JSON-able rule state.

    JSON keys, not raw bytes, so a key read back from the changelog equals the
    string it was written with.
    """
    return faust.Schema(key_type=str, key_serializer="json", value_serializer="json")


class Outbox:
    """Sends an agent's outputs inside the transaction of the record being processed.

    Faust's own ``topic.send`` picks the transaction by the *destination*
    topic's partition, and only for topics its consumer subscribes to; for
    any other topic it sends outside every transaction, so a crash between
    that send and the offset commit duplicates the output (the faust-streaming
    exactly-once reports). Here the output joins the transaction that will
    commit the source partition's offset and table changelog: all or nothing.
    Outputs therefore go to the source's partition number, which keeps a
    world's records together across topics, as the physics worker does.
    """

    def __init__(self, app: faust.App, registry: SchemaSource, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._registry = registry
        self._codecs: dict[str, AvroCodec] = {}
        self._staged: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self._writes: list[tuple[Any, str, bool, Any]] = []  # table writes, for _UNDO

    def wrote(self, store: Any, key: str, held: bool, before: Any) -> None:
        """A table write of the event being processed, to take back if its transaction
        is aborted."""
        self._writes.append((store, key, held, before))

    def _encode(self, topic: topics.Topic, value: Any) -> tuple[str, bytes]:
        name = topic_name(self.settings, topic)
        codec = self._codecs.get(name)
        if codec is None:
            codec = self._codecs[name] = AvroCodec(self._registry, name, topic.value)
        return name, codec.dumps(value)

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Any = None) -> None:
        """Stage a record; :meth:`flush` sends everything staged for the event at once."""
        self._staged.append((topic, key, value, headers))

    def send(self, topic: topics.Topic, key: bytes, value: Any) -> None:
        name, data = self._encode(topic, value)
        self.send_raw(name, key, data)

    def dead_letter(self, event: Any, bad: Undecodable) -> None:
        """Stage the record's original bytes for the DLQ with the source and error headers."""
        msg = event.message
        self.send_raw(topic_name(self.settings, topics.DLQ), msg.key, bad.data,
                      dead_letter_headers(msg, bad.error))

    async def flush(self, event: Any) -> None:
        """Send what the event produced, as one unit of the source partition's transaction.

        Every ``await`` lets Faust's commit timer run; sent one by one, an event's
        outputs could straddle a commit, and a crash right after it would keep half
        of them while the event is processed again. Holding the transaction's lock
        for the whole batch puts the commit before or after all of them.
        """
        staged, self._staged = self._staged, []
        writes, self._writes = self._writes, []
        if not staged:
            return
        source = event.message.tp
        app = self.app
        if not app.in_transaction:
            for name, key, value, headers in staged:
                await self._send(event, name, key, value, headers)
            return
        group = app.assignor.group_for_topic(source.topic)
        tid = f"{app.conf.id}-{group}-{source.partition}"
        transport: Any = app.consumer.transactions.producer  # the aiokafka driver's Producer
        async with transport._trn_locks[tid]:
            _UNDO.setdefault(tid, []).extend(writes)
            producer = transport._transaction_producers[tid]
            for name, key, value, headers in staged:
                await producer.send(name, value, key=key, partition=source.partition,
                                    headers=headers)

    async def _send(self, event: Any, name: str, key: bytes | None, value: bytes | None,
                    headers: Any) -> None:
        producer = await self.app.maybe_start_producer()
        await producer.send(name, key, value, event.message.partition, None, headers)


class StagedTable(MutableMapping[str, Any]):
    """A Faust table whose writes join the agent's transaction.

    Faust sends a table's changelog records from a background buffer, so in
    exactly-once mode they can land in the transaction *after* the one that
    commits the offset of the event that made them: a crash in between
    commits the input as consumed while its state change is lost (seen here
    as wrong events after a restart). Writes here are staged; :meth:`commit`
    sends each to the changelog through the :class:`Outbox` (same key/value
    encoding as Faust's, so Faust's recovery replays them) and only then
    sets the value in the table's store, bypassing Faust's own send.
    The outbox then sends them with the event's outputs, in one batch.
    """

    def __init__(self, table: Any, outbox: Outbox) -> None:
        self.table = table
        self.outbox = outbox
        self._staged: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._staged:
            return self._staged[key]
        value = self.table.data.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._staged[key] = value

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("living tables never delete")

    def __iter__(self) -> Iterator[str]:
        return iter(set(self.table.data.keys()) | set(self._staged))

    def __len__(self) -> int:
        return len(set(self.table.data.keys()) | set(self._staged))

    def commit(self) -> None:
        """Stage every write for the changelog in the outbox and apply it to the store."""
        changelog = self.table.changelog_topic.get_topic_name()
        store = self.table.data
        for key, value in self._staged.items():
            self.outbox.send_raw(changelog, json.dumps(key).encode(), json.dumps(value).encode())
            held = key in store
            self.outbox.wrote(store, key, held, store[key] if held else None)
            store[key] = value
        self._staged.clear()


def in_topics(app: faust.App, settings: Settings, registry: SchemaSource,
              *sources: topics.Topic) -> Any:
    return app.topic(*(topic_name(settings, t) for t in sources), key_type=bytes,
                     key_serializer="raw", value_serializer=AvroCodec(registry))
