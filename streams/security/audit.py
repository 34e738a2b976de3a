"""The audit trail: one record per attempt at a gateway, hash-chained per gateway instance.

Every attempt — a command admitted, rejected by validation, denied, rate
limited, or sent without a valid identity; a subscription; an account action —
becomes one ``AuditRecord`` on ``cosmic.audit.v1``. Each gateway *instance*
(its configured id plus a suffix drawn at start) writes one chain: record
``seq`` carries ``prev_hash``, the hash of record ``seq - 1`` (64 zeros for
the first), and its own ``hash``: SHA-256 over every other field, ``prev_hash``
included (a JSON array in a fixed order, :data:`HASHED`). All of an instance's records go to one
partition (its key's), in order, from an idempotent producer.

:func:`verify` walks the chains as read from the topic: an edited record no
longer matches its hash, a dropped one leaves a gap in ``seq``, a reordered
one runs ``seq`` backwards, and a record rewritten with a fresh hash breaks the
next record's ``prev_hash``. It names the first bad sequence of each chain.
What a chain cannot show is its own end cut off (the last records deleted):
the gateway logs its last ``seq`` when it stops, for that comparison.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cosmic.timeutil import to_ms

log = logging.getLogger(__name__)

GENESIS = "0" * 64
NO_COMMAND = "00000000-0000-0000-0000-000000000000"
OUTCOMES = ("ADMITTED", "REJECTED", "DENIED", "RATE_LIMITED", "UNAUTHENTICATED", "FAILED")
FIELDS = ("action", "face", "outcome", "player_id", "role", "token_id", "world_id",
          "command_id", "command_type", "peer", "reason", "command_offset")
Sink = Callable[[str, dict[str, Any]], None]
_OUTCOMES, _FIELDS = frozenset(OUTCOMES), frozenset(FIELDS)


# What the hash covers, in this order: every field but the hash itself. The canonical
# form is a JSON array of them (times as epoch ms, ids as text), so a record hashes the
# same however it was decoded, and a later schema version can add fields without
# changing the hashes of the records already written.
HASHED = ("gateway_id", "seq", "ts", "action", "face", "outcome", "player_id", "role",
          "token_id", "world_id", "command_id", "command_type", "peer", "reason",
          "command_offset", "prev_hash")


def _canonical(record: dict[str, Any]) -> bytes:
    values = []
    for name in HASHED:
        value = record[name]
        if isinstance(value, datetime):
            value = to_ms(value)
        elif name == "command_id":
            value = str(value)
        values.append(value)
    return orjson.dumps(values)


def record_hash(record: dict[str, Any]) -> str:
    """The hash a record must carry: SHA-256 over the canonical form of every other field
    (``prev_hash`` among them, which is what chains it)."""
    return hashlib.sha256(_canonical(record)).hexdigest()


def legacy_record_hash(record: dict[str, Any]) -> str:
    """The first format's hash (over ``prev_hash`` and the record's Avro encoding with
    ``hash`` empty), which gateways wrote for a while: still accepted by :func:`verify`."""
    import io

    from fastavro import schemaless_writer

    from schemas import catalog

    out = io.BytesIO()
    schemaless_writer(out, catalog.parsed("AuditRecord"), {**record, "hash": ""})
    return hashlib.sha256(record["prev_hash"].encode() + out.getvalue()).hexdigest()


def _hash_matches(record: dict[str, Any]) -> bool:
    return record["hash"] in (record_hash(record), legacy_record_hash(record))


def instance_id(configured: str) -> str:
    import secrets

    return f"{configured or socket.gethostname()}-{secrets.token_hex(3)}"


class AuditChain:
    """Builds one instance's chain; thread-safe, so every face can record."""

    def __init__(self, gateway_id: str, sink: Sink) -> None:
        self.gateway_id = gateway_id
        self.sink = sink
        self.seq = 0
        self.prev_hash = GENESIS
        self._lock = threading.Lock()

    def record(self, *, action: str, face: str, outcome: str, peer: str = "",
               reason: str = "", **fields: Any) -> dict[str, Any]:
        """Chain and hand over one attempt's record (``ts`` in epoch ms)."""
        if not fields.keys() <= _FIELDS:
            raise ValueError(f"unknown audit fields {sorted(fields.keys() - _FIELDS)}")
        get = fields.get
        return self.append(action, face, outcome, get("player_id"), get("role"),
                           get("token_id"), get("world_id"), get("command_id"),
                           get("command_type"), peer, reason, get("command_offset"))

    def append(self, action: str, face: str, outcome: str, player_id: str | None,
               role: str | None, token_id: str | None, world_id: str | None,
               command_id: Any, command_type: str | None, peer: str, reason: str,
               command_offset: int | None) -> dict[str, Any]:
        """:meth:`record` with every field in :data:`FIELDS` order, none by name: what the
        gateway calls on every request.

        The canonical form is built directly in :data:`HASHED` order (what
        :func:`record_hash` would build from the record; a unit test holds the two
        together), so a record is hashed once, without a second pass over it."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"unknown audit outcome {outcome!r}")
        command_id = str(command_id or NO_COMMAND)
        reason = reason[:500]
        gateway_id = self.gateway_id
        with self._lock:
            seq, prev_hash, ts = self.seq, self.prev_hash, time.time_ns() // 1_000_000
            digest = hashlib.sha256(orjson.dumps([
                gateway_id, seq, ts, action, face, outcome, player_id, role, token_id,
                world_id, command_id, command_type, peer, reason, command_offset,
                prev_hash])).hexdigest()
            record = {"gateway_id": gateway_id, "seq": seq, "ts": ts, "action": action,
                      "face": face, "outcome": outcome, "player_id": player_id, "role": role,
                      "token_id": token_id, "world_id": world_id, "command_id": command_id,
                      "command_type": command_type, "peer": peer, "reason": reason,
                      "command_offset": command_offset, "prev_hash": prev_hash,
                      "hash": digest}
            self.sink(gateway_id, record)
            self.seq = seq + 1
            self.prev_hash = digest
            return record


@dataclass(frozen=True, slots=True)
class Problem:
    gateway_id: str
    seq: int  # the first sequence number at which the chain is not what it should be
    what: str

    def __str__(self) -> str:
        return f"gateway {self.gateway_id}: seq {self.seq}: {self.what}"


@dataclass
class ChainState:
    expected: int = 0
    prev_hash: str = GENESIS
    records: int = 0
    problem: Problem | None = None


def verify(records: Iterable[dict[str, Any]], gateway: str | None = None
           ) -> tuple[dict[str, ChainState], list[Problem]]:
    """Check every chain (or ``gateway``'s) in the order read; each chain's first problem."""
    chains: dict[str, ChainState] = {}
    for r in records:
        gid = r["gateway_id"]
        if gateway is not None and gid != gateway:
            continue
        state = chains.setdefault(gid, ChainState())
        state.records += 1
        if state.problem is not None:
            continue
        seq = r["seq"]
        what = ""
        if not _hash_matches(r):
            what = f"record at position {state.expected} was changed (its hash does not match)"
        elif seq > state.expected:
            what = (f"record {state.expected} is missing (next is {seq})" if seq > state.expected + 1
                    else f"record {state.expected} is missing")
        elif seq < state.expected:
            what = f"record {seq} comes after {state.expected - 1} (reordered or repeated)"
        elif r["prev_hash"] != state.prev_hash:
            what = "its prev_hash is not the previous record's hash (a record before it changed)"
        if what:
            state.problem = Problem(gid, state.expected, what)
            continue
        state.expected += 1
        state.prev_hash = r["hash"]
    problems = [s.problem for s in chains.values() if s.problem is not None]
    return chains, problems


class KafkaAuditSink:
    """Produces a chain's records to the audit topic, all on the instance's partition."""

    def __init__(self, settings: Any, registry: Any, topic: str | None = None) -> None:
        from cosmic import kafka, topics
        from schemas.serde import AvroSerializer, SerializationContext

        self._kafka = kafka
        self.topic = topic or topics.AUDIT.name
        self._producer = kafka.producer(settings, client_id="cosmic-audit",
                                        **{"linger.ms": 5})
        self._encode = AvroSerializer(registry, "AuditRecord")
        self._ctx = SerializationContext(topics.AUDIT.name)
        self._partitions = topics.AUDIT.partitions
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="audit", daemon=True)
        self._thread.start()

    def __call__(self, gateway_id: str, record: dict[str, Any]) -> None:
        self._producer.produce(
            self.topic, key=gateway_id.encode(), value=self._encode(record, self._ctx),
            partition=self._kafka.partition_for(gateway_id.encode(), self._partitions),
            on_delivery=self._delivered)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            log.error("an audit record was not written: %s", err)

    def flush(self, timeout_s: float = 10.0) -> int:
        return int(self._producer.flush(timeout_s))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.25)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        left = self._producer.flush(10)
        if left:
            log.error("%d audit records were not confirmed at shutdown", left)
