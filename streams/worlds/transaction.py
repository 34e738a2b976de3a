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
# A broker away (restarting: tens of seconds) makes the transaction's calls time out, a
# retriable error; an abort is asked again with backoff for this long before giving up.
ABORT_WITHIN_S = 120.0
_ABORT_BACKOFF_S = (0.5, 5.0)


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

    def init(self, timeout_s: float = 60.0, within_s: float = ABORT_WITHIN_S) -> None:
        """``init_transactions``, asked again while the broker cannot answer in time."""
        _retried(lambda t: self.init_transactions(t), "init_transactions", timeout_s, within_s)

    def abort(self, timeout_s: float = 30.0, within_s: float = ABORT_WITHIN_S) -> int:
        """Abort the open transaction, asked again while the broker cannot answer (a
        timeout is retriable: librdkafka allows the same call again); the retries made.
        A fatal error (fenced) or one still there after ``within_s`` is raised."""
        return _retried(lambda t: self.abort_transaction(t), "abort", timeout_s, within_s)

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


def _retried(call: Callable[[float], None], what: str, timeout_s: float, within_s: float) -> int:
    """``call(timeout)`` until it succeeds; a retriable error (the broker away) is asked
    again with backoff, up to ``within_s``; the retries made. Others are raised."""
    deadline = time.monotonic() + within_s
    pause, retries = _ABORT_BACKOFF_S[0], 0
    while True:
        try:
            call(max(1.0, min(timeout_s, deadline - time.monotonic())))
            return retries
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal() or not err.retriable() or time.monotonic() + pause > deadline:
                raise
            log.warning("%s not answered (%s): asked again in %.1fs", what, err.str(), pause)
        time.sleep(pause)
        pause, retries = min(pause * 2, _ABORT_BACKOFF_S[1]), retries + 1
