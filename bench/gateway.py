"""Gateway core benchmark: bytes per body update, and clients per core at 20 Hz.

A belt of bodies on circular orbits (the demo's units: AU, years, dt = DAY/4 per
tick) goes through the gateway's core exactly as deltas do (WorldFeed: fold in,
quantize once per tick), and N subscribers with views of ~``--in-view`` bodies
take one frame each per tick. Printed in one run:

- median bytes per body update (the update section of a frame over the bodies it
  names), in the PREDICTED encoding the clients ask for (residuals against the
  client's dead reckoning) and in DELTAS (changes since the last state sent),
  beside a naive float32 encoding (id + 3 x float32 = 16 B), JSON, and 11 B (what
  Colyseus's published per-entity costs imply for a quantized 3-D position). Every
  body is in every delta with a new velocity (the orbits curve), so nearly every
  body in view is named in every frame: the figure is per body sent, not averaged
  over bodies left out;
- the core's cost per client per tick (``Subscriber.frame_bytes``: the frame's
  wire bytes, what the core hands its faces; the kernels are loaded first, as the
  gateway does when it starts), the clients one core could serve at 20 Hz, and
  p50/p99 latency from a tick's arrival to each client's frame, for that many
  clients served one after the other (the bench's own byte counting left out).

Measured on the core only: no sockets, no WebSocket or gRPC framing, no
permessage-deflate (which shrinks these frames further).

With ``--websocket N`` the same run then serves the same belt through the real
WebSocket face to N real clients in another process for ``--ws-seconds``, and
prints the cores the gateway used, clients per core and p50/p99 latency from
tick produced to frame read (see ``bench/gateway_ws.py``).

    .venv/bin/python bench/gateway.py [--bodies 10000] [--in-view 250] [--clients 200]
        [--websocket 1000 [--ws-seconds 10] [--ws-deflate isal|zlib] [--ws-views K]]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import gateway_ws
import numpy as np
import orjson
from report import result

from schemas import columnar
from streams.gateway._proto.gateway_pb2 import Frame
from streams.gateway.session import Subscriber, warm
from streams.gateway.world import Grid, View, WorldFeed

DT = 1 / 365.25 / 4
HZ = 20.0


def belt(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(2.2, 3.3, n)
    phase = rng.uniform(0, 2 * math.pi, n)
    z = rng.normal(0, 0.05, n)
    return a, phase, z


def delta(tick: int, a: np.ndarray, phase: np.ndarray, z: np.ndarray) -> dict:
    t = tick * DT
    omega = 2 * math.pi / a**1.5
    ang = phase + omega * t
    pos = np.stack((a * np.cos(ang), a * np.sin(ang), z), axis=1)
    vel = np.stack((-a * omega * np.sin(ang), a * omega * np.cos(ang), np.zeros_like(a)), axis=1)
    n = len(a)
    bodies = columnar.Bodies(ids=np.arange(1, n + 1, dtype=np.int64), kinds=np.full(n, 3, np.uint8),
                             masses=np.full(n, 1e-12), radii=np.full(n, 5e-7),
                             positions=pos.astype(np.float32), velocities=vel.astype(np.float32))
    return {"world_id": "bench", "tick": tick, "sim_time": t, "ts": int(tick * 1000 / HZ),
            **columnar.delta_fields(bodies)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bodies", type=int, default=10_000)
    ap.add_argument("--in-view", type=int, default=250)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=40)
    ap.add_argument("--websocket", type=int, default=0, metavar="N",
                    help="then serve N real WebSocket clients (another process) and measure")
    ap.add_argument("--ws-seconds", type=float, default=10.0)
    ap.add_argument("--ws-views", type=int, default=0, metavar="K",
                    help="only K distinct views among the WebSocket clients (clients "
                         "watching the same places; default: each client its own)")
    ap.add_argument("--ws-deflate", choices=("isal", "zlib"), default="isal",
                    help="the gateway's deflate: its own (ISA-L) or aiohttp's default (zlib)")
    args = ap.parse_args()

    warm()  # as the gateway does when it starts: the frame kernels load before any client
    a, phase, z = belt(args.bodies)
    feed = WorldFeed("bench", Grid(1e-5, 1e-4))
    # Belt area ~ pi (3.3^2 - 2.2^2): a view radius that holds ~in_view bodies.
    radius = math.sqrt(args.in_view / args.bodies * (3.3**2 - 2.2**2))
    rng = np.random.default_rng(2)
    subs = []
    for _ in range(args.clients):
        r, ang = rng.uniform(2.4, 3.1), rng.uniform(0, 2 * math.pi)
        subs.append(Subscriber(View((r * math.cos(ang), r * math.sin(ang), 0.0), radius),
                               bytes_per_s=256 * 1024, predicted=True))
    # The same views of the first few clients in DELTAS, for its bytes only (not timed).
    deltas = [Subscriber(s.view, bytes_per_s=s.bytes_per_s) for s in subs[:20]]
    per_update, json_sizes, per_client, latencies, in_view, feed_s = [], [], [], [], [], []
    named, delta_update = [], []
    for tick in range(1, args.ticks + 1):
        record = delta(tick, a, phase, z)
        t0 = time.perf_counter()
        shared = feed.apply(record)
        assert shared is not None
        t1 = time.perf_counter()
        feed_s.append(t1 - t0)
        served = t1 - t0  # the clients are served in turn once the tick is in
        for sub in subs:
            s0 = time.perf_counter()
            data = sub.frame_bytes(shared)  # what the core hands its faces
            s1 = time.perf_counter()
            per_client.append(s1 - s0)
            served += s1 - s0
            latencies.append(served)
            frame = Frame.FromString(data)  # for the byte counts only: not timed
            n = len(frame.update.id_steps)
            if tick > 1 and n:
                per_update.append(frame.update.ByteSize() / n)
                named.append(n / len(sub.ids))
            in_view.append(len(sub.ids))
        for sub in deltas:
            frame = sub.frame(shared)
            n = len(frame.update.id_steps)
            if tick > 1 and n:
                delta_update.append(frame.update.ByteSize() / n)
        if tick == 2:
            s = subs[0]
            idx = np.searchsorted(shared.ids, s.ids)
            json_sizes = [len(orjson.dumps({"id": int(i), "x": float(p[0]), "y": float(p[1]),
                                            "z": float(p[2])}))
                          for i, p in zip(shared.ids[idx], shared.positions[idx], strict=True)]
    cost = float(np.median(per_client))
    budget = 1 / HZ - float(np.median(feed_s))
    print(f"world: {args.bodies} bodies, {args.clients} clients, median {np.median(in_view):.0f} "
          f"bodies in view, {args.ticks} ticks at {HZ:g} Hz")
    print("bytes per body update (median):")
    print(f"  gateway, PREDICTED (protobuf)         {np.median(per_update):6.2f} B  "
          f"({np.median(named):.0%} of the bodies in view named per frame)")
    print(f"  gateway, DELTAS (protobuf)            {np.median(delta_update):6.2f} B")
    print(f"  naive float32 (id + xyz)              {16:6.2f} B")
    print(f"  JSON                                  {np.median(json_sizes):6.2f} B")
    print(f"  Colyseus-implied quantized 3-D        {11:6.2f} B")
    work = (f"{args.bodies} bodies, {args.clients} clients, ~{np.median(in_view):.0f} in view, "
            f"{args.ticks} ticks at {HZ:g} Hz")
    pred = float(np.median(per_update))
    result("gateway", "bytes per body update, PREDICTED (lower is better)", work, pred,
           "Colyseus-implied quantized 3-D", 11.0, pred / 11, unit="B")
    result("gateway", "bytes per body update, PREDICTED (lower is better)", work, pred,
           "naive float32 (id + xyz)", 16.0, pred / 16, unit="B")
    print(f"core: quantize once per tick {np.median(feed_s) * 1e3:.2f} ms; "
          f"{cost * 1e6:.0f} us per client per tick")
    print(f"clients per core at {HZ:g} Hz: {int(budget / cost)} "
          f"(core only; sockets and compression not counted)")
    lat = np.array(latencies) * 1e3
    print(f"latency tick -> frame for {args.clients} clients in turn: "
          f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    if args.websocket:
        websocket(args, int(budget / cost), a, phase, z)


def websocket(args: argparse.Namespace, core_only: int, a: np.ndarray, phase: np.ndarray,
              z: np.ndarray) -> None:
    m = gateway_ws.measure(args.websocket, args.ws_seconds, args.bodies, args.in_view,
                           lambda tick: delta(tick, a, phase, z), args.ws_deflate,
                           args.ws_views)
    cpus = os.cpu_count() or 1
    print(f"websocket: {m.connected}/{m.clients} real clients (aiohttp, permessage-deflate: "
          f"{args.ws_deflate} on the gateway, zlib on the clients, "
          f"PREDICTED) in another process, {m.seconds:.1f} s window, {m.ticks} ticks "
          f"({m.ticks / m.seconds:.1f} Hz)")
    expected = m.ticks * m.clients
    print(f"  gateway process: {m.cores:.2f} cores for {m.clients} clients "
          f"(bench's delta building, {m.build_s / max(m.ticks, 1) * 1e3:.1f} ms/tick, left out)")
    print(f"  clients per core at {HZ:g} Hz: {m.per_core:.0f} over WebSocket "
          f"({m.frames / m.cpu_s:.0f} frames per CPU second / {HZ:g}; core only, above: "
          f"{core_only})")
    print(f"  frames shared (computed once for clients that hold the same): {m.shared:.0%}")
    print(f"  frames read {m.frames} of {expected} ticks x clients "
          f"({m.frames / max(expected, 1):.0%}); {m.skipped} ticks coalesced away")
    print(f"  latency tick produced -> frame read: p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms, "
          f"max {m.max_ms:.1f} ms")
    print(f"  this machine has {cpus} cores; the clients' process shares them, so the "
          f"latency includes that contention")
    work = (f"{args.bodies} bodies, {m.clients} WebSocket clients (another process), "
            f"~{args.in_view} in view, {m.seconds:.0f} s at {HZ:g} Hz, deflate {args.ws_deflate}, "
            f"{cpus} cores shared")
    if args.ws_views:
        work += f", {args.ws_views} distinct views"
    kept_up = m.frames >= 0.95 * expected
    met = m.per_core >= 1000 and m.p99_ms <= 100 and kept_up
    note = (f"p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms tick produced -> frame read; "
            f"{m.frames / max(expected, 1):.0%} of frames read (the rest coalesced); "
            f"{cpus} cores shared with the clients' process")
    result("gateway", "WebSocket clients per core at 20 Hz (higher is better)", work,
           m.per_core, "core only, same run", float(core_only), m.per_core / core_only,
           goal=">= 1000 clients per core, p99 <= 100 ms", met=met, unit="clients", note=note)
    result("gateway", "WebSocket latency tick produced -> frame read, p99 (lower is better)",
           work, m.p99_ms, "one tick (50 ms)", 1000 / HZ, m.p99_ms / (1000 / HZ),
           goal="<= 100 ms", met=m.p99_ms <= 100, unit="ms")


if __name__ == "__main__":
    main()
