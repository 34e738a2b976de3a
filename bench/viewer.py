"""Browser viewer benchmark: frame time and draw calls in software rendering, 1280x720.

A belt of bodies on circular orbits (a star, a few planets and moons, the rest
asteroids) ticks at 10 Hz through the gateway's own core and faces (WebSocket, REST,
the viewer's bundle) on loopback; no Kafka: what is measured is the page. Debian's
chromium draws it with SwiftShader (software WebGL, as on a machine without a GPU)
with every body in view, and the page times frames back to back, each waited for to
its last pixel (``cosmicViewer.timeFrames``: move every instance by dead reckoning,
draw, read a pixel back), in three rounds, keeping the quietest (see ``ROUNDS``).
Printed in one run, for 1,000 and 5,000 bodies in view:

- p50 / p95 frame time and draw calls of the viewer (one layer of lit-sphere sprites
  per kind), beside the goal (p95 <= 50 ms at 5,000 bodies; a handful of draw calls);
- the same scene drawn with one InstancedMesh per kind (``?draw=instanced``), and
  with one mesh per body (``?draw=meshes``, the way a first three.js client would
  draw it: the anchor), measured in the same run, and the anchor's p95 over ours.

    .venv/bin/python bench/viewer.py [--bodies 1000 5000] [--frames 60]

Needs the viewer built (scripts/build-viewer), chromium at /usr/bin/chromium
(COSMIC_CHROMIUM elsewhere) and Playwright for Python (the dev extras).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import threading
import time
from typing import Any

import numpy as np
from aiohttp import web
from playwright import sync_api
from report import result

from cosmic.settings import Settings
from schemas import columnar, models
from streams.gateway import rest, viewer, ws_face
from streams.gateway.core import GatewayCore
from streams.gateway.testing import TestAuth
from streams.gateway.world import Grid, WorldFeed

HZ = 10.0
DT = 1 / 365.25 / 4
GOAL_P95_MS = 50.0
GOAL_CALLS = 8
# Rounds of frames per renderer; the figures are the quietest round's (lowest p95): the
# box is shared and software rendering is CPU-bound, so the least disturbed round is
# the one that measures the renderer rather than the neighbours (bench/nbody.py keeps
# its fastest chunk for the same reason). The p95 over all rounds is printed beside.
ROUNDS = 3
CHROMIUM = os.environ.get("COSMIC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--use-angle=swiftshader", "--use-gl=angle", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist", "--no-sandbox"]


class Belt:
    """N bodies on circular orbits around a star at the origin (AU, years)."""

    def __init__(self, n: int, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.uniform(0.4, 3.3, n)
        self.a[0] = 0.0
        self.phase = rng.uniform(0, 2 * math.pi, n)
        self.z = rng.normal(0, 0.04, n)
        self.kinds = np.full(n, 3, np.uint8)
        self.kinds[0] = 0
        self.kinds[1:9] = 1
        self.kinds[9:30] = 2
        self.radii = np.where(self.kinds == 0, 4.65e-3, np.where(self.kinds == 1, 4e-5, 1e-6))
        self.ids = np.arange(1, n + 1, dtype=np.int64)

    def delta(self, tick: int) -> dict[str, Any]:
        t = tick * DT
        a = np.maximum(self.a, 1e-9)
        omega = np.where(self.a > 0, 2 * math.pi / a**1.5, 0.0)
        ang = self.phase + omega * t
        pos = np.stack((self.a * np.cos(ang), self.a * np.sin(ang), self.z), axis=1)
        vel = np.stack((-self.a * omega * np.sin(ang), self.a * omega * np.cos(ang),
                        np.zeros_like(a)), axis=1)
        n = len(self.ids)
        bodies = columnar.Bodies(ids=self.ids, kinds=self.kinds, masses=np.full(n, 1e-12),
                                 radii=self.radii, positions=pos.astype(np.float32),
                                 velocities=vel.astype(np.float32))
        return {"world_id": "bench", "tick": tick, "sim_time": t,
                "ts": int(time.time() * 1000), **columnar.delta_fields(bodies)}


class Server:
    """The gateway's faces over one synthetic world, on a loop in a thread."""

    def __init__(self, n: int) -> None:
        self.belt = Belt(n)
        self.auth = TestAuth()  # its own keys: the page gets a token of them
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _refuse(self, command: models.PlayerCommand, avro: bytes | None
                      ) -> tuple[int, int]:
        raise RuntimeError("the benchmark takes no commands")

    async def _serve(self) -> None:
        settings = Settings().gateway.model_copy(update={"client_bytes_per_s": 4 * 1024 * 1024})
        core = GatewayCore(settings, self._refuse, self.auth.guard)
        feed = WorldFeed("bench", Grid(settings.position_step, settings.velocity_step))
        app = web.Application(middlewares=[rest.problems])
        ws_face.setup(app, core)
        app.add_routes(rest.routes(core) + viewer.routes())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        tick = 0
        while not self._stop.is_set():
            tick += 1
            shared = feed.apply(self.belt.delta(tick))
            assert shared is not None
            core.publish(shared)
            self._ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1 / HZ)
        await runner.cleanup()

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(30), "the benchmark's gateway did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def measure(browser: Any, server: Server, n: int, frames: int, draw: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.port}/?world=bench&dist=4.2&el=50&draw={draw}"
              f"&token={server.auth.token('bench')}")
    page.wait_for_function(f"window.cosmicViewer && window.cosmicViewer.stats().drawn === {n}",
                           timeout=120_000, polling=100)
    page.evaluate("window.cosmicViewer.timeFrames(10)")  # warm up: shaders, buffers
    rounds = [np.array(page.evaluate(f"window.cosmicViewer.timeFrames({frames})"))
              for _ in range(ROUNDS)]
    times = min(rounds, key=lambda r: float(np.percentile(r, 95)))
    stats = page.evaluate("window.cosmicViewer.stats()")
    page.goto("about:blank")  # the socket closes cleanly before the tab goes
    context.close()
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95)),
            "p95_all": float(np.percentile(np.concatenate(rounds), 95)),
            "calls": float(stats["drawCalls"]), "drawn": float(stats["drawn"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bodies", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    if not (viewer.STATIC / "index.html").is_file():
        raise SystemExit("bench/viewer.py: the viewer is not built: run scripts/build-viewer")

    # The figures are CPU-bound (software rendering): say how busy the machine was.
    load = os.getloadavg()[0]
    print(f"viewer at 1280x720, chromium with SwiftShader (software WebGL), {args.frames} "
          f"frames each, every body in view; {os.cpu_count()} CPUs, load average {load:.1f}")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for n in args.bodies:
            with Server(n) as server:
                ours = measure(browser, server, n, args.frames, "sprites")
                instanced = measure(browser, server, n, args.frames, "instanced")
                naive = measure(browser, server, n, args.frames, "meshes")
            goal = f"p95 <= {GOAL_P95_MS:.0f} ms" if n >= 5000 else "none for p95 below 5,000"
            verdict = "" if n < 5000 else (
                " (met)" if ours["p95"] <= GOAL_P95_MS else " (NOT met)")
            print(f"{n:,} bodies in view ({int(ours['drawn'])} drawn):")
            for label, r in (("viewer (sprites per kind)", ours),
                             ("InstancedMesh per kind", instanced),
                             ("one mesh per body (anchor)", naive)):
                print(f"  {label:28s}  p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms "
                      f"(all rounds {r['p95_all']:6.1f})  {int(r['calls']):5d} draw calls")
            print(f"  goal: {goal}{verdict}; a handful of draw calls (<= {GOAL_CALLS}): "
                  f"{'met' if ours['calls'] <= GOAL_CALLS else 'NOT met'}")
            big = n >= 5000
            result("viewer", "frame time p95, 1280x720 SwiftShader (anchor / ours)",
                   f"{n:,} bodies in view, {args.frames} frames x 3 rounds, load {load:.1f}",
                   ours["p95"], "one mesh per body", naive["p95"], naive["p95"] / ours["p95"],
                   goal=f"p95 <= {GOAL_P95_MS:.0f} ms" if big else None,
                   met=ours["p95"] <= GOAL_P95_MS if big else None, unit="ms",
                   line=f"  anchor p95 / viewer p95: {naive['p95'] / ours['p95']:.1f}x")
        browser.close()


if __name__ == "__main__":
    main()
