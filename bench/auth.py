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
   hashed and kept in memory) against security off (a guard that admits everyone
   and does nothing else), alternating rounds. Goal: on >= 0.9x off.

    .venv/bin/python bench/auth.py [--tokens 3000] [--commands 3000] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import grpc
import jwt
import numpy as np
import orjson

from cosmic.settings import GatewaySettings
from schemas import models
from schemas.models import Role
from streams.gateway import grpc_face
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.core import GatewayCore
from streams.gateway.guard import Caller, Guard
from streams.gateway.testing import SyntheticWorld, TestAuth
from streams.security import policy, tokens

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
            print(f"  {alg} {label:<22}{p50:8.1f}{p99:8.1f}   {a50:24.1f}  {p50 / a50:5.2f}x"
                  f"   <= {goal} us {'ok' if p50 <= goal and label == 'first sight' else ''}")


class Open(Guard):
    """Security off: everyone is admitted as an operator, nothing signed or recorded."""

    IDENTITY = tokens.Identity("bench", Role.OPERATOR, "", "bench", float("inf"))

    def authenticate(self, caller: Caller) -> tokens.Identity:
        return self.IDENTITY

    def check_sender(self, identity: tokens.Identity, claimed_player: str) -> None:
        pass

    def admit(self, identity: tokens.Identity, command: models.PlayerCommand,
              new_world: bool) -> models.PlayerCommand:
        return command

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass


async def throughput(guard: Guard, tokens_: list[str], commands: int, clients: int) -> float:
    appended = 0

    async def append(command: models.PlayerCommand) -> tuple[int, int]:
        nonlocal appended
        appended += 1
        return 0, appended

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

    async def client(i: int) -> None:
        metadata = (("authorization", f"Bearer {tokens_[i]}"),)
        for _ in range(per_client):
            await call(request, metadata=metadata)

    await client(0)  # warm up: channel, caches
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    rate = per_client * clients / (time.perf_counter() - t0)
    await channel.close()
    await server.stop(None)
    return rate


def submit_throughput(commands: int, clients: int, rounds: int = 3) -> None:
    auth = TestAuth(commands_per_s=1e9, command_burst=10**9)
    minted = [auth.token(f"client-{i}", Role.OPERATOR) for i in range(clients)]
    on_rates, off_rates = [], []
    for _ in range(rounds):
        on = Guard(auth.security, auth.verifier, auth.ring, auth.chain)
        on_rates.append(asyncio.run(throughput(on, minted, commands, clients)))
        off = Open(auth.security, auth.verifier, auth.ring, auth.chain)
        off_rates.append(asyncio.run(throughput(off, minted, commands, clients)))
    on_r, off_r = statistics.median(on_rates), statistics.median(off_rates)
    print(f"gateway submit over gRPC ({clients} clients, {commands} commands, median of "
          f"{rounds} alternating rounds; command log in memory):")
    print(f"  security on   {on_r:8.0f} commands/s  (tokens, limits, policy, signing, audit: "
          f"{len(auth.records)} records chained)")
    print(f"  security off  {off_r:8.0f} commands/s")
    print(f"  on / off      {on_r / off_r:8.2f}x  (goal >= 0.90x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    check_costs(args.tokens)
    submit_throughput(args.commands, args.clients)


if __name__ == "__main__":
    main()
