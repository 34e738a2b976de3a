"""The worker's transactional producer, and a commit that survives a rebalance elsewhere.

Every loop iteration of the worker is one transaction that ends with the consumer
offsets, sent with the group's metadata (generation, member id): the broker
refuses them when the group has moved to a new generation, which is how a
zombie is fenced (KIP-447). But a member that stays in the group sees the same
refusal whenever another worker joins or leaves, if its commit races the new
generation. Its partitions are still its own — in a cooperative rebalance no
partition moves before its owner gives it up in a rebalance callback, and those
run only between iterations — so the work is not lost: the transaction is
aborted and made again, the same records under the new generation, instead of
rebuilding every world from the log (which would pause every world of the
worker for a membership change that moved none of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

log = logging.getLogger(__name__)

# The group moved to a new generation under the commit; membership itself still holds
# (UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID mean it does not: those are never redone).
_GENERATION_MOVED = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS})
_REDO_ATTEMPTS = 5
_REDO_BACKOFF_S = 0.05


class JournaledProducer(Producer):
    """A transactional producer that keeps the records of its open transaction."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.journal: list[dict[str, Any]] = []
        self.redone = 0

    def begin_transaction(self, *args: Any) -> None:
        super().begin_transaction(*args)
        self.journal = []

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                callback: Any = None, on_delivery: Any = None, timestamp: int = 0,
                headers: Any = None) -> None:
        record = {"topic": topic, "value": value, "key": key, "partition": partition,
                  "on_delivery": on_delivery or callback, "timestamp": timestamp,
                  "headers": headers}
        super().produce(**record)
        self.journal.append(record)

    def commit_offsets(self, consumer: Consumer, offsets: Callable[[], list[TopicPartition]],
                       timeout_s: float = 30.0) -> None:
        """Send ``offsets()`` with the consumer's group metadata and commit; when the
        group's generation moved under it, abort and make the same transaction again."""
        for attempt in range(_REDO_ATTEMPTS + 1):
            try:
                self.send_offsets_to_transaction(offsets(), consumer.consumer_group_metadata(),
                                                 timeout_s)
                self.commit_transaction(timeout_s)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if (attempt == _REDO_ATTEMPTS or err.fatal() or not err.txn_requires_abort()
                        or err.code() not in _GENERATION_MOVED):
                    raise
                log.info("commit refused (%s): the group has a new generation; the same "
                         "transaction again (%d records)", err.name(), len(self.journal))
            self._redo(timeout_s, _REDO_BACKOFF_S * (attempt + 1))

    def _redo(self, timeout_s: float, wait_s: float) -> None:
        records = self.journal
        self.abort_transaction(timeout_s)
        # The consumer learns its new generation in its own thread: give it a moment.
        time.sleep(wait_s)
        self.begin_transaction()
        for record in records:
            self.produce(**record)
        self.poll(0)
        self.redone += 1
