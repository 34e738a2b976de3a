"""Security benchmark: what the token and policy checks cost per command, and what the
gateway's submit throughput is with security on and off, in one run.

1. Per command, the gateway's check (:meth:`Guard.authenticate` then
   :func:`policy.check_role`) for a token it has not seen (signature verified) and
   for one it has (the verified-token cache; expiry and the denylist rechecked),
   for EdDSA and HS256, p50 and p99. The anchor is PyJWT's own ``jwt.decode`` of
   the same tokens with the same key: the library's floor under our checks.
   Goals: <= 100 us (HS256), <= 500 us (EdDSA), first sight.
2. Submit throughput through the real gRPC face in this process (concurrent
   clients on one channel; the command log is in memory, so the gateway is the
   whole cost): security on (a fresh token per client, rate limits high enough
   not to refuse, role policy, command signing, one audit record per command
   hashed and chained, handed to a sink) against security off (the same gateway
   whose guard admits everyone and does nothing else: no token, limit, policy,
   signature, audit record or decision metric), alternating rounds, the same
   clients, commands and clocks. The in-memory log frames each command's record
   as the real one does before it would produce it (the guard's encoding of the
   signed record when there is one, else it encodes the command): only the
   broker is missing. Printed as commands per second of wall clock and per
   CPU-second of this process (all its threads): on a shared machine the second
   is what the gateway itself costs, whatever else runs; and each call's latency
   as its client saw it (p50, p99 over every call of every round).
   Goal: on >= 0.9x off.
   With ``--kafka`` the same again with the gateway's real command log (the
   serializer, an idempotent producer, the broker's acknowledgement) writing to
   a private topic of the running stack, deleted afterwards: the deployed shape.

    .venv/bin/python bench/auth.py [--tokens 3000] [--commands 3000] [--clients 16]
        [--rounds 5] [--kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import numpy as np
import orjson
from report import result

from cosmic.settings import GatewaySettings
from schemas import models
from schemas.models import Role
from schemas.serde import AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry
from streams.gateway import grpc_face
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.core import GatewayCore
from streams.gateway.guard import Caller, Guard
from streams.gateway.log import command_value
from streams.gateway.testing import SyntheticWorld, TestAuth
from streams.security import policy, signing, tokens
from streams.security.audit import AuditChain

COMMAND = models.RemoveBody(body_id=7)


def percentiles(ns: list[int]) -> tuple[float, float]:
    a = np.asarray(ns, dtype=np.float64) / 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def check_costs(n: int) -> None:
    print(f"token + policy check per command ({n} tokens each, microseconds):")
    print(f"  {'':28}{'p50':>8}{'p99':>8}   anchor (PyJWT decode) p50  ratio   goal")
    for alg, goal in (("HS256", 100), ("EdDSA", 500)):
        auth = TestAuth()
        minted = [auth.token(f"p{i}", algorithm=alg) for i in range(n)]
        key: Any = auth.keys.hs256_secret if alg == "HS256" else \
            auth.keys.public[auth.keys.signing_kid]
        sec = auth.security
        anchor = []
        for t in minted:
            t0 = time.perf_counter_ns()
            jwt.decode(t, key, algorithms=[alg], audience=sec.token_audience,
                       issuer=sec.token_issuer)
            anchor.append(time.perf_counter_ns() - t0)
        guard = Guard(sec, auth.verifier, auth.ring, auth.chain)
        for label in ("first sight", "seen before (cached)"):  # the same guard, twice
            costs = []
            for t in minted:
                caller = Caller("grpc", t, "peer")
                t0 = time.perf_counter_ns()
                identity = guard.authenticate(caller)
                policy.check_role(identity.role, COMMAND)
                costs.append(time.perf_counter_ns() - t0)
            p50, p99 = percentiles(costs)
            a50, _ = percentiles(anchor)
            line = (f"  {alg} {label:<22}{p50:8.1f}{p99:8.1f}   {a50:24.1f}  {p50 / a50:5.2f}x"
                    f"   <= {goal} us {'ok' if p50 <= goal and label == 'first sight' else ''}")
            first = label == "first sight"
            result("auth", f"{alg} token + policy check, {label}, p50",
                   f"{n} tokens", p50, "PyJWT decode p50", a50, p50 / a50,
                   goal=f"<= {goal} us" if first else None, met=p50 <= goal if first else None,
                   unit="us", line=line)


class Open(Guard):
    """Security off: everyone is admitted as an operator, nothing signed or recorded."""

    IDENTITY = tokens.Identity("bench", Role.OPERATOR, "", "bench", float("inf"))

    def authenticate(self, caller: Caller) -> tokens.Identity:
        return self.IDENTITY

    def check_sender(self, identity: tokens.Identity, claimed_player: str) -> None:
        pass

    def admit(self, identity: tokens.Identity, command: models.PlayerCommand,
              new_world: bool) -> signing.Signed:
        return signing.Signed(command, None)  # unsigned, not encoded: the log encodes it

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass


async def throughput(guard: Guard, tokens_: list[str], commands: int, clients: int,
                     kafka_topic: str | None = None, latencies: list[int] | None = None
                     ) -> tuple[float, float]:
    """(commands per wall second, commands per CPU second); each call's nanoseconds
    appended to ``latencies``."""
    appended = 0
    encode = AvroSerializer(LocalRegistry(), "PlayerCommand")
    ctx = SerializationContext("cosmic.commands.v1")

    async def in_memory(command: models.PlayerCommand, avro: bytes | None) -> tuple[int, int]:
        nonlocal appended
        command_value(encode, ctx, command, avro)  # what the real log hands the producer
        appended += 1
        return 0, appended

    log = None
    append: Any = in_memory
    if kafka_topic is not None:
        from cosmic.settings import get_settings
        from schemas.registry.client import RegistryClient
        from streams.gateway.log import CommandLog

        registry = RegistryClient.from_settings(get_settings())
        log = CommandLog(get_settings(), registry, asyncio.get_running_loop(), topic=kafka_topic)
        append = log.append
    settings = GatewaySettings(max_commands=10 * commands)
    core = GatewayCore(settings, append, guard)
    core.publish(SyntheticWorld(1, 10).step())
    server, port = await grpc_face.serve(core, "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(f"/{grpc_face.SERVICE}/SubmitCommand",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    body = orjson.dumps({"type": "RemoveBody", "body_id": 7}).decode()
    request = pb.SubmitCommandRequest(world_id="w", command_json=body).SerializeToString()
    per_client = commands // clients

    took: list[int] = []

    async def client(i: int) -> None:
        metadata = (("authorization", f"Bearer {tokens_[i]}"),)
        clock = time.perf_counter_ns
        for _ in range(per_client):
            t0 = clock()
            await call(request, metadata=metadata)
            took.append(clock() - t0)

    await client(0)  # warm up: channel, caches
    took.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(clients)))
    n = per_client * clients
    rate = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    if latencies is not None:
        latencies.extend(took)
    await channel.close()
    await server.stop(None)
    if log is not None:
        log.close()
        registry.close()
    return rate


def submit_throughput(commands: int, clients: int, rounds: int = 5,
                      kafka_topic: str | None = None, audit_topic: str | None = None) -> None:
    auth = TestAuth(commands_per_s=1e9, command_burst=10**9)
    minted = [auth.token(f"client-{i}", Role.OPERATOR) for i in range(clients)]
    on_rates, off_rates = [], []
    on_took: list[int] = []
    off_took: list[int] = []
    # Records built, hashed and chained, then handed to a sink that drops them (a list
    # would keep them all alive and bill the collector's walks over them to the audit).
    chain, sink = AuditChain("bench-gw", lambda _gid, _record: None), None
    if audit_topic is not None:  # the audit records go to Kafka too, as a gateway's do
        from cosmic.settings import get_settings
        from schemas.registry.client import RegistryClient
        from streams.security.audit import KafkaAuditSink

        registry = RegistryClient.from_settings(get_settings())
        sink = KafkaAuditSink(get_settings(), registry, topic=audit_topic)
        chain = AuditChain("bench-gw", sink)
    for _ in range(rounds):
        on = Guard(auth.security, auth.verifier, auth.ring, chain)
        on_rates.append(asyncio.run(throughput(on, minted, commands, clients, kafka_topic,
                                               on_took)))
        off = Open(auth.security, auth.verifier, auth.ring, chain)
        off_rates.append(asyncio.run(throughput(off, minted, commands, clients, kafka_topic,
                                                off_took)))
    if sink is not None:
        sink.close()
        registry.close()
    where = ("in memory" if kafka_topic is None
             else f"Kafka, topics {kafka_topic} and {audit_topic} (audit)")
    print(f"gateway submit over gRPC ({clients} clients, {commands} commands, median of "
          f"{rounds} alternating rounds; command log {where}; {chain.seq} audit "
          "records chained):")
    print(f"  {'':14}{'per wall s':>12}{'per CPU s':>12}{'call p50 ms':>13}{'p99 ms':>9}")
    on = [statistics.median(r[k] for r in on_rates) for k in (0, 1)]
    off = [statistics.median(r[k] for r in off_rates) for k in (0, 1)]
    on_l = [p / 1000 for p in percentiles(on_took)]
    off_l = [p / 1000 for p in percentiles(off_took)]
    print(f"  security on   {on[0]:12.0f}{on[1]:12.0f}{on_l[0]:13.2f}{on_l[1]:9.2f}"
          "   (tokens, limits, policy, signing, audit)")
    print(f"  security off  {off[0]:12.0f}{off[1]:12.0f}{off_l[0]:13.2f}{off_l[1]:9.2f}")
    line = (f"  on / off      {on[0] / off[0]:11.2f}x{on[1] / off[1]:11.2f}x"
            f"{on_l[0] / off_l[0]:12.2f}x{on_l[1] / off_l[1]:8.2f}x   (goal >= 0.90x)")
    log = "in-memory log" if kafka_topic is None else "Kafka log"
    work = f"{clients} clients, {commands} commands, {rounds} rounds, {log}"
    result("auth", f"submit/s per CPU s, security on vs off ({log})", work, on[1],
           "security off", off[1], on[1] / off[1], goal=">= 0.90x", met=on[1] / off[1] >= 0.9,
           unit="commands/CPU s", line=line)
    result("auth", f"submit/s per wall s, security on vs off ({log})", work, on[0],
           "security off", off[0], on[0] / off[0], goal=">= 0.90x", met=on[0] / off[0] >= 0.9,
           unit="commands/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="alternating on/off rounds")
    parser.add_argument("--kafka", action="store_true",
                        help="also measure with the real command log (needs the stack)")
    args = parser.parse_args()
    check_costs(args.tokens)
    submit_throughput(args.commands, args.clients, args.rounds)
    if args.kafka:
        with private_topic() as topic, private_topic() as audit_topic:
            submit_throughput(args.commands, args.clients, args.rounds, kafka_topic=topic,
                              audit_topic=audit_topic)


@contextlib.contextmanager
def private_topic() -> Iterator[str]:
    import uuid

    from confluent_kafka.admin import NewTopic

    from cosmic import kafka
    from cosmic.settings import get_settings

    admin = kafka.admin(get_settings())
    name = f"bench.auth.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    try:
        yield name
    finally:
        admin.delete_topics([name])[name].result(30)


if __name__ == "__main__":
    main()
