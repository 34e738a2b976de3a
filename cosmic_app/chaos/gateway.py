"""The gateway's row: commands through gateways that are stopped, killed and replaced.

A game frontend never talks to Kafka: it submits each command to a gateway
under an id of its own and asks what became of it. When its gateway dies under
it, it submits the same command again (same id, same body) to any gateway that
answers, until one tells it the outcome. The row is that frontend
(:class:`Frontend`) in front of the gateway instances the fault acts on, and one
physics worker, a helper the fault leaves alone, on a private shard of lockstep
worlds as in :mod:`.physics`: every record of a world's commands is one tick,
so the log and the committed ticks say which copy of which command each tick
applied.

Per world the frontend submits in order (the next command once a gateway has
appended the one before), so each command's first copy is ticked in its world's
order; outcomes are awaited side by side. A retry whose first copy a dead
gateway had appended reaches the log again: the world must refuse that copy as
DUPLICATE_COMMAND, never apply it twice. Output is the outcomes the frontend was
told. The verifier (:func:`judge`) counts, per world, commands never decided
(lost), applied more than once (duplicated), decided before one sent ahead of
them (out of order), and ticked records the frontend never sent (unexpected);
it checks the ticks take the log's records one by one, that every answer the
frontend got is what the log holds, and replays each world from tick 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from cosmic import kafka, topics
from cosmic.timeutil import now_ms
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient
from streams.gateway.testing import stack_token
from streams.worlds.eventlog import KafkaLog

from .cell import Row, Verdict, launch, stop
from .physics import TickReader, replay_failure, seeded_input, start_group_at_end
from .private import free_ports
from .verify import tally

_WORLDS = 16  # per-world submission is sequential: enough worlds to keep the pace
_SUBMIT_S = 5.0  # a submit unanswered this long is tried again
_OUTCOME_S = 10.0  # a command still pending this long is submitted again
_DOWN_S = 0.5  # a gateway that failed a call is left out of the rotation this long
_TOKEN_S = 60.0  # a fresh token this often (one lasts security.token_lifetime_s)
_TICKS_S = 60.0  # the longest the verifier waits for the worker to tick the whole log
# Answers a frontend retries: the gateway is going, gone, busy or not up yet.
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
                        grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED})
DUPLICATE = models.RejectReason.DUPLICATE_COMMAND.value
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Command:
    world: str
    seq: int  # its place among its world's commands, from 1
    command_id: uuid.UUID
    body: dict[str, Any]  # the command as the gateway's JSON takes it


@dataclass(frozen=True, slots=True)
class Answer:
    """What a gateway told the frontend had become of a command."""

    applied: bool
    tick: int | None
    reason: str  # a rejection's ("" when applied)


def frontend_input(worlds: list[str], seed: int, size: int) -> list[Command]:
    """The physics row's seeded commands, each with its id and per-world place."""
    seqs: Counter[str] = Counter()
    out = []
    for world, rec in seeded_input(worlds, seed, size):
        seqs[world] += 1
        name, body = rec["command"]
        out.append(Command(world, seqs[world], rec["command_id"],
                           models.COMMAND_TYPES[name].model_validate(body).model_dump(mode="json")))
    return out


class _Fatal(Exception):
    """An answer no retry can change (the frontend is misconfigured or refused)."""


class Frontend:
    """Submits commands through whichever gateways answer, on an asyncio loop of its own."""

    def __init__(self, worlds: Sequence[str], token: Callable[[], str]) -> None:
        self.answers: dict[uuid.UUID, Answer] = {}
        self.answered_ms: list[int] = []  # when each answer came
        self.submits = self.resubmits = 0  # calls made; commands submitted again
        self.fatal: str | None = None
        self._mint = token
        self._token, self._minted = token(), time.monotonic()
        self._addresses: list[str] = []
        self._clients: dict[str, GrpcClient] = {}
        self._down: dict[str, float] = {}
        self._turn = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._queues: dict[str, asyncio.Queue[Command]] = {w: asyncio.Queue() for w in worlds}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-frontend",
                                        daemon=True)
        self._thread.start()
        for queue in self._queues.values():
            self._call(self._spawn, self._world(queue))

    # From the row's threads.

    def add_gateway(self, address: str) -> None:
        """A gateway instance's address (again on a restart: the same one)."""
        self._call(self._add, address)

    def send(self, command: Command) -> None:
        self._call(self._queues[command.world].put_nowait, command)

    def close(self) -> None:
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    # On the loop.

    def _add(self, address: str) -> None:
        if address not in self._addresses:
            self._addresses.append(address)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            if not self._closing:  # a chain must never end quietly: its commands would
                self.fatal = self.fatal or "a submitting task was cancelled"
        elif (exc := task.exception()) is not None:
            self.fatal = self.fatal or f"{type(exc).__name__}: {exc}"

    async def _close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.channel.close()

    async def _world(self, queue: asyncio.Queue[Command]) -> None:
        while True:
            command = await queue.get()
            address = await self._append(command)
            self._spawn(self._settle(command, address))

    async def _append(self, command: Command) -> str:
        """Submit until a gateway has appended the command: that gateway's address."""
        for tries in itertools.count():
            address = await self._pick()
            client = self._client(address)
            self.submits += 1
            try:
                await _call(client.submit(command.world, command.body, command.command_id),
                            _SUBMIT_S)
                return address
            except grpc.aio.UsageError:  # its channel closed after another call failed
                self._forget(address, client)
                continue
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                self._failed(address, client, exc)
            await asyncio.sleep(min(0.05 * (tries + 1), 0.5))
        raise AssertionError("unreachable")

    async def _settle(self, command: Command, address: str) -> None:
        """Wait for the outcome; when the gateway that appended the command cannot tell it
        (gone, or restarted and never admitted it), submit it again, anywhere."""
        while True:
            client = self._client(address)
            try:
                outcome = await _call(client.outcome(command.command_id, timeout=_OUTCOME_S),
                                      _OUTCOME_S + 5)
            except grpc.aio.UsageError:  # as in _append: ask again on a fresh channel
                self._forget(address, client)
                continue
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                if not (isinstance(exc, grpc.aio.AioRpcError)
                        and exc.code() == grpc.StatusCode.NOT_FOUND):
                    self._failed(address, client, exc)
                self.resubmits += 1
                address = await self._append(command)
                continue
            applied = outcome.state == pb.CommandOutcome.APPLIED
            self.answers[command.command_id] = Answer(
                applied, outcome.tick if outcome.HasField("tick") else None, outcome.reason)
            self.answered_ms.append(now_ms())
            return

    async def _pick(self) -> str:
        """The next gateway in turn among those not failing just now."""
        while True:
            now = time.monotonic()
            up = [a for a in self._addresses if self._down.get(a, 0.0) <= now]
            if up:
                return up[next(self._turn) % len(up)]
            await asyncio.sleep(0.05)

    def _client(self, address: str) -> GrpcClient:
        if time.monotonic() - self._minted > _TOKEN_S:
            self._token, self._minted = self._mint(), time.monotonic()
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = GrpcClient(address, token=self._token)
        client.token = self._token
        return client

    def _failed(self, address: str, client: GrpcClient, exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() not in _TRANSIENT:
            raise _Fatal(f"{address}: {exc.code().name}: {exc.details()}")
        self._down[address] = time.monotonic() + _DOWN_S
        self._forget(address, client)

    def _forget(self, address: str, client: GrpcClient) -> None:
        # A new channel next time: a failed one backs off its reconnects for up to minutes.
        # The old one is closed once the calls still on it have had their time.
        if self._clients.get(address) is client:
            del self._clients[address]
            self._spawn(client.channel.close(grace=_SUBMIT_S + _OUTCOME_S + 5))


async def _call(call: Awaitable[T], timeout: float) -> T:
    """A gateway call within ``timeout``; a call cancelled under the caller (its channel
    closed: the frontend's own tasks are cancelled only when it closes) reads as a
    timeout, to be tried again."""
    try:
        return await asyncio.wait_for(call, timeout)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise TimeoutError("the call was cancelled under us") from None


def judge(sent: Sequence[Command], answers: Mapping[uuid.UUID, Answer],
          log: Mapping[str, Mapping[int, uuid.UUID]],
          ticks: Mapping[str, Sequence[Mapping[str, Any]]]) -> Verdict:
    """What the log and the committed ticks say became of the sent commands.

    ``log``: each world's records in the commands log (offset: command id), copies
    included; ``ticks``: each world's committed PhysicsTick records as read. A command
    counts once at the first tick that took a copy of it (applied or rejected), and
    again at each application after its first."""
    by_id = {c.command_id: c for c in sent}
    expected: dict[str, list[int]] = defaultdict(list)
    for c in sent:
        expected[c.world].append(c.seq)
    pairs: list[tuple[str, int]] = []
    failures: list[str] = []
    applied_at: dict[uuid.UUID, list[int]] = defaultdict(list)
    decided: set[uuid.UUID] = set()
    for world in sorted(set(expected) | set(log) | set(ticks)):
        records, mine = log.get(world, {}), ticks.get(world, ())
        numbers = [t["tick"] for t in mine]
        if numbers != list(range(1, len(records) + 1)):
            failures.append(f"{world}: {len(numbers)} ticks for {len(records)} log records, "
                            f"not 1..{len(records)} in order")
        taken = [t["first_command_offset"] for t in mine]
        if taken != sorted(records) or any(t["last_command_offset"] != t["first_command_offset"]
                                           for t in mine):
            failures.append(f"{world}: the ticks did not take the log's records one by one")
        for t in mine:
            cid = records.get(t["first_command_offset"])
            command = by_id.get(cid) if cid is not None else None
            if command is None:
                pairs.append((f"{world} (not sent)", t["tick"]))
                continue
            applied = t["n_applied"] > 0
            if applied:
                applied_at[command.command_id].append(t["tick"])
            if command.command_id not in decided:
                decided.add(command.command_id)
                pairs.append((world, command.seq))
            elif applied and len(applied_at[command.command_id]) > 1:
                pairs.append((world, command.seq))  # applied a second time
    wrong = [f"{c.world} #{c.seq}: told {a}, applied at {applied_at.get(c.command_id, [])}"
             for c in sent if (a := answers.get(c.command_id)) is not None
             and not _truthful(a, applied_at.get(c.command_id, []))]
    if wrong:
        failures.append(f"{len(wrong)} answers not what the log holds, e.g. {wrong[0]}")
    unanswered = sum(1 for c in sent if c.command_id not in answers)
    if unanswered:
        failures.append(f"{unanswered} commands never answered")
    return Verdict(tally(expected, pairs), failures=failures)


def _truthful(answer: Answer, applied_at: list[int]) -> bool:
    if answer.applied:
        return answer.tick in applied_at
    # Refused as a duplicate: a copy before was applied. Refused otherwise: none ever was.
    return bool(applied_at) == (answer.reason == DUPLICATE)


class GatewayRow(Row):
    name = "gateway"
    faults = ("sigterm", "sigkill", "rebalance", "broker-restart", "registry-outage")

    def prepare(self) -> None:
        self.shard = f"chaos-gw-{uuid.uuid4().hex[:8]}"
        self.worlds = [f"{self.shard}:w{i}" for i in range(_WORLDS)]
        self.input = frontend_input(self.worlds, self.cell.seed, self.cell.size)
        self.registry = RegistryClient.from_settings(self.settings)
        self.ticks = TickReader(kafka.reader(self.settings, "chaos-gateway-ticks"),
                                {w.encode() for w in self.worlds}, AvroDeserializer(self.registry))
        self.log = KafkaLog(self.settings, self.registry)
        self.log_from = {w: self.log.end_offset(topics.COMMANDS.name, self._partition(w))
                         for w in self.worlds}
        self.ports: dict[int, tuple[int, int]] = {}
        start_group_at_end(self.settings, self.shard)
        self.worker = self._start_worker()
        self.frontend = Frontend(self.worlds, lambda: stack_token(
            self.settings, "chaos-frontend", models.Role.OPERATOR))

    def _partition(self, world: str) -> int:
        return kafka.home_partition(world, topics.COMMANDS.partitions)

    def _start_worker(self) -> subprocess.Popen[bytes]:
        """The physics worker of the shard: the gateways' faults are not its."""
        args = ["physics", "worker", "--worker-id", f"{self.shard}-worker", "--shard",
                self.shard, "--lockstep", "--hibernate-after", "0"]
        log = self.workdir / f"{self.cell.row}-{self.cell.fault}-{self.cell.seed}-worker.log"
        return launch(self.settings, args, {"COSMIC_METRICS__PORT": "0"}, log, "the worker")

    def feed(self) -> Iterator[int]:
        for n, command in enumerate(self.input, 1):
            self.frontend.send(command)
            yield n

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        if instance not in self.ports:  # the same ports on a restart: the same gateway
            grpc_port, http_port = free_ports(2)
            self.ports[instance] = (grpc_port, http_port)
        grpc_port, http_port = self.ports[instance]
        self.frontend.add_gateway(f"{self.settings.gateway.host}:{grpc_port}")
        return (["gateway", "run"], {
            "COSMIC_GATEWAY__GRPC_PORT": str(grpc_port),
            "COSMIC_GATEWAY__HTTP_PORT": str(http_port),
            # No frames are watched here: a short look back makes a start quick.
            "COSMIC_GATEWAY__LOOKBACK_S": "1",
            # One frontend sends every player's commands: no per-player rate to keep.
            "COSMIC_SECURITY__COMMANDS_PER_S": "1000000",
            "COSMIC_SECURITY__COMMAND_BURST": "1000000",
            "COSMIC_SECURITY__GATEWAY_ID": f"{self.shard}-{instance}",
            "COSMIC_METRICS__PORT": "0"})

    @property
    def expected(self) -> int:
        return self.cell.size

    def output(self, since_ms: int | None = None) -> int:
        if (code := self.worker.poll()) is not None:
            raise RuntimeError(f"the physics worker (not under the fault) exited {code}")
        if self.frontend.fatal is not None:
            raise RuntimeError(f"the frontend stopped: {self.frontend.fatal}")
        if since_ms is None:
            return len(self.frontend.answered_ms)
        return sum(1 for ms in list(self.frontend.answered_ms) if ms >= since_ms)

    def verify(self) -> Verdict:
        self.frontend.close()
        log = {w: {offset: uuid.UUID(str(rec["command_id"])) for offset, _, rec in self.log.read(
            topics.COMMANDS.name, self._partition(w), self.log_from[w], key=w.encode())}
            for w in self.worlds}
        deadline = time.monotonic() + _TICKS_S
        while time.monotonic() < deadline:
            seen = Counter(t["world_id"] for t in self.ticks.records)
            if all(seen[w] >= len(log[w]) for w in self.worlds):
                break
            self.ticks.poll(0.2)
        ticks = {w: [t for t in self.ticks.records if t["world_id"] == w] for w in self.worlds}
        verdict = judge(self.input, self.frontend.answers, log, ticks)
        for w in self.worlds:
            mine = sorted(ticks[w], key=lambda t: t["tick"])
            if (broken := replay_failure(self.log, w, mine)) is not None:
                verdict.failures.append(broken)
        records = sum(len(r) for r in log.values())
        refused = sum(1 for a in self.frontend.answers.values() if a.reason == DUPLICATE)
        verdict.notes.append(
            f"frontend: {self.frontend.submits} submit calls, {self.frontend.resubmits} "
            f"commands submitted again after their gateway could not answer; the log holds "
            f"{records} records for {len(self.input)} commands; {refused} answers were "
            f"DUPLICATE_COMMAND (a retry of a command applied already)")
        return verdict

    def cleanup(self) -> None:
        if hasattr(self, "frontend"):
            with contextlib.suppress(Exception):
                self.frontend.close()
        if hasattr(self, "worker"):
            stop(self.worker, signal.SIGTERM)
        for name in ("ticks", "registry"):
            if hasattr(self, name):
                getattr(self, name).close()

