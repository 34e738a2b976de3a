"""Gateway over real WebSockets: clients per core, and latency tick produced -> frame read.

The gateway side runs in the calling process on one event loop: the real
:class:`GatewayCore` behind the real aiohttp WebSocket face (permessage-deflate
as the face negotiates it), fed with the belt world of ``bench/gateway.py``, one
tick every 1/20 s folded in and published as the delta reader would. N clients
run in ONE other process (this file run as a script, ``--clients-side``): each a
real aiohttp WebSocket client that offers permessage-deflate, subscribes with
its own ~250-body view in PREDICTED, and reads and decodes every frame.

Over a window after every client has its snapshot:

- the gateway process's CPU seconds per wall second (``time.process_time``, all
  its threads) are the cores it used for N clients; clients per core at 20 Hz =
  frames delivered per CPU second / 20 (N / cores when every frame arrives). The
  ticks come from a thread of their own at 20 Hz whatever the loop does, handed
  over with ``call_soon_threadsafe`` as the delta reader's are; the bench's own
  building of each delta (the orbits' trig, which the physics worker would do)
  is timed and left out; folding it in and quantizing it, as the gateway does, is
  counted;
- frames read per client against ticks published: the core coalesces a slow
  reader's frames (a frame's ``base_tick`` says which ticks it skipped);
- latency from the tick's ``produced_ms`` (the delta's timestamp, stamped when
  the bench hands the delta to the gateway) to the client's read of the frame,
  p50/p99, measured in the clients' process on the same clock.

The clients' process shares the machine's cores with the gateway, so the
latency includes that contention.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import ClientSession, TCPConnector, WSMsgType, set_zlib_backend, web

from cosmic.settings import GatewaySettings
from streams.gateway import ws_face
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.core import GatewayCore
from streams.gateway.testing import TestAuth
from streams.gateway.world import WorldFeed

HZ = 20.0
WORLD = "bench"


@dataclass
class Measured:
    clients: int
    seconds: float
    cpu_s: float  # the gateway process's, the bench's delta building left out
    build_s: float  # the bench's delta building, left out of cpu_s
    ticks: int  # published in the window
    frames: int  # read by all clients in the window
    skipped: int  # ticks the clients' frames coalesced away
    p50_ms: float
    p99_ms: float
    max_ms: float
    connected: int  # clients that got their snapshot
    shared: float  # of the frames the gateway handed out, those computed for another client

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def per_core(self) -> float:
        """Clients one core serves at 20 Hz: frames delivered per CPU second / 20. When every
        frame arrives this is N / cores; when the gateway coalesces, what it sustained."""
        return self.frames / self.cpu_s / HZ if self.cpu_s > 0 else float("inf")


def views(n: int, bodies: int, in_view: int, seed: int = 2, distinct: int = 0
          ) -> list[tuple[float, float, float]]:
    """(x, y, radius) of each client's view: the same draw as the core-only section.
    ``distinct``: only that many different views, client i taking view i % distinct
    (clients watching the same place, whose frames the gateway computes once); 0: each
    client its own."""
    radius = math.sqrt(in_view / bodies * (3.3**2 - 2.2**2))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(min(n, distinct) if distinct else n):
        r, ang = rng.uniform(2.4, 3.1), rng.uniform(0, 2 * math.pi)
        out.append((r * math.cos(ang), r * math.sin(ang), radius))
    return [out[i % len(out)] for i in range(n)] if out else out


# ---------------------------------------------------------------- the clients' process

async def _clients(url: str, n: int, bodies: int, in_view: int, distinct: int) -> None:
    lines: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def stdin() -> None:
        while line := await reader.readline():
            await lines.put(line.decode().strip())

    measuring = False
    latencies: list[float] = []
    frames = [0] * n
    skipped = [0] * n
    snapshot = [asyncio.Event() for _ in range(n)]
    failed: list[str] = []

    async def client(i: int, x: float, y: float, r: float, session: ClientSession) -> None:
        request = pb.ClientMessage(subscribe=pb.SubscribeRequest(
            world_id=WORLD, view=pb.View(center=pb.Vec3(x=x, y=y, z=0.0), radius=r),
            encoding=pb.PREDICTED))
        try:
            async with session.ws_connect(url, compress=15, max_msg_size=0) as ws:
                await ws.send_bytes(request.SerializeToString())
                async for msg in ws:
                    if msg.type != WSMsgType.BINARY:
                        break
                    now = time.time() * 1000
                    frame = pb.Frame.FromString(msg.data)
                    if frame.base_tick == 0:
                        snapshot[i].set()
                    elif measuring:
                        frames[i] += 1
                        skipped[i] += frame.tick - frame.base_tick - 1
                        latencies.append(now - frame.produced_ms)
        except Exception as exc:  # noqa: BLE001 - reported, the other clients go on
            failed.append(repr(exc))
        finally:
            snapshot[i].set()

    tasks = [asyncio.create_task(stdin())]  # held, and cancelled at the end, with the clients'
    connector = TCPConnector(limit=0)
    async with ClientSession(connector=connector) as session:
        for i, (x, y, r) in enumerate(views(n, bodies, in_view, distinct=distinct)):
            tasks.append(asyncio.create_task(client(i, x, y, r, session)))
            if i % 50 == 49:  # in batches: the listen backlog is finite
                await asyncio.gather(*(e.wait() for e in snapshot[i - 49:i + 1]))
        await asyncio.gather(*(e.wait() for e in snapshot))
        print(json.dumps({"connected": n - len(failed), "failed": failed[:3]}), flush=True)
        while await lines.get() != "start":
            pass
        measuring = True
        while await lines.get() != "stop":
            pass
        measuring = False
        lat = np.asarray(latencies) if latencies else np.zeros(1)
        print(json.dumps({"frames": sum(frames), "skipped": sum(skipped),
                          "p50": float(np.percentile(lat, 50)),
                          "p99": float(np.percentile(lat, 99)), "max": float(lat.max()),
                          "failed": failed[:3]}), flush=True)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------- the gateway's process

async def _serve(n: int, seconds: float, bodies: int, in_view: int, orbit: Any,
                 deflater: str, distinct: int) -> Measured:
    """``orbit(tick) -> StateDelta record`` builds the world's deltas (bench/gateway.py's)."""
    auth = TestAuth(anonymous_watch=True, subscriptions_per_player=10 * n + 10)
    core = GatewayCore(GatewaySettings(), _no_commands, auth.guard)
    feed = WorldFeed(WORLD, core.grid)
    loop = asyncio.get_running_loop()
    build = {"s": 0.0, "ticks": 0}

    def produce(tick: int) -> Any:
        """As the delta reader does, in its own thread: fold in, quantize, hand over."""
        c0 = time.thread_time()
        record = orbit(tick)
        build["s"] += time.thread_time() - c0
        record["ts"] = int(time.time() * 1000)  # produced now: the latency's start
        shared = feed.apply(record)
        assert shared is not None
        return shared

    core.publish(produce(1))
    app = web.Application()
    ws_face.setup(app, core)  # the gateway's deflate (ISA-L), unless told otherwise:
    if deflater == "zlib":
        set_zlib_backend(zlib)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--clients-side", f"ws://127.0.0.1:{port}/ws", str(n),
        str(bodies), str(in_view), str(distinct), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert child.stdin is not None and child.stdout is not None
    stop = threading.Event()

    def ticker() -> None:
        # Due at start + k / HZ whatever the loop is doing: a loop that falls behind gets
        # the latest tick when it looks (the core coalesces), as from the real reader.
        tick, start = 1, time.perf_counter()
        while not stop.is_set():
            tick += 1
            stop.wait(max(0.0, start + (tick - 1) / HZ - time.perf_counter()))
            loop.call_soon_threadsafe(core.publish, produce(tick))
            build["ticks"] += 1

    thread = threading.Thread(target=ticker, name="bench-deltas", daemon=True)
    thread.start()
    try:
        hello = json.loads(await child.stdout.readline())
        await asyncio.sleep(1.0)  # settle: the last snapshots' sockets drain
        child.stdin.write(b"start\n")
        await child.stdin.drain()
        t0, c0, b0, k0 = time.perf_counter(), time.process_time(), build["s"], build["ticks"]
        await asyncio.sleep(seconds)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        built, ticks = build["s"] - b0, build["ticks"] - k0
        child.stdin.write(b"stop\n")
        await child.stdin.drain()
        done = json.loads(await child.stdout.readline())
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
        if child.returncode is None:
            child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
        await runner.cleanup()
    made = core._shared[WORLD]
    shared = made.shared / max(1, made.shared + made.computed)
    if hello["failed"] or done["failed"]:
        print(f"  clients failed: {hello['failed'] or done['failed']}")
    return Measured(n, wall, cpu - built, built, ticks, done["frames"], done["skipped"],
                    done["p50"], done["p99"], done["max"], hello["connected"], shared)


async def _no_commands(command: Any, avro: bytes | None) -> tuple[int, int]:
    raise AssertionError("the bench sends no commands")


def measure(n: int, seconds: float, bodies: int, in_view: int, orbit: Any,
            deflater: str = "isal", distinct: int = 0) -> Measured:
    """``deflater``: "isal" (the gateway's) or "zlib" (aiohttp's own) for the gateway's side;
    the clients inflate with zlib either way. ``distinct``: as :func:`views`."""
    return asyncio.run(_serve(n, seconds, bodies, in_view, orbit, deflater, distinct))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--clients-side":
        asyncio.run(_clients(sys.argv[2], *(int(a) for a in sys.argv[3:7])))
    else:
        sys.exit("run by bench/gateway.py --websocket N")
