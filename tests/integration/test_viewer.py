"""The browser viewer in a real browser (Debian's chromium, software WebGL) on the real stack.

An in-process physics worker (a shard of its own) runs two worlds with gravity all but off,
so every body stays where it was spawned: ``fixed`` (a star, planets, moons, a ring
of asteroids and a far cluster), which nothing ever commands again, and ``sandbox``,
which the page nudges and spawns into. One gateway serves both on a port picked once,
so that the restart test can bring it back where the page expects it.

What is checked is what a person sees, read from the page (its HUD, its panels, the
instances it draws, the pixels of its canvas), against what the gateway holds for that
page's subscription and against the worlds' geometry.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright import sync_api

from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas import models
from schemas.registry.client import RegistryClient
from streams.gateway import GatewayService, build_gateway
from streams.gateway.testing import stack_token
from streams.gateway.viewer import STATIC
from streams.worlds.scenario import DAY
from streams.worlds.worker import PhysicsWorker, WorkerConfig, build_worker
from tests.liveworld import LiveWorld

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM = os.environ.get("COSMIC_CHROMIUM", "/usr/bin/chromium")
# Software WebGL: SwiftShader through ANGLE (current Chromium refuses it without the
# "unsafe" flag, and would otherwise have no WebGL at all on a machine with no GPU).
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--use-gl=angle", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist", "--no-sandbox"]
VIEWPORT = {"width": 960, "height": 540}
HERE = Path(__file__).parent
REFERENCE = HERE / "data" / "viewer-frame.png"
README_SHOT = HERE.parents[1] / "docs" / "images" / "viewer.png"
# Rewrite the reference frame and the README's screenshot instead of comparing.
UPDATE = os.environ.get("COSMIC_UPDATE_SCREENSHOTS") == "1"
TICK_HZ = 10.0
CLUSTER_AT = (12.0, 0.0, 0.0)
# The one body that moves (in the sandbox): straight along x, at MOVER_SPEED AU/yr.
MOVER = 22
MOVER_SPEED = 0.3
KIND_NAMES = [k.value for k in models.BodyKind]
# The page's player; the sandbox's body 20 belongs to someone else.
PLAYER = "viewer-test"
OTHER = "someone-else"


@dataclass(frozen=True)
class Body:
    id: int
    kind: models.BodyKind
    mass: float
    radius: float
    position: tuple[float, float, float]
    owner: str = ""  # "": spawned by the operator (nobody's)


def fixed_bodies() -> list[Body]:
    """A small system that covers every kind, and a cluster far from it (seeded)."""
    rng = np.random.default_rng(11)
    out = [Body(1, models.BodyKind.STAR, 1.0, 4.65e-3, (0.0, 0.0, 0.0))]
    for k, a in enumerate((0.6, 1.0, 1.6, 2.4)):
        ang = 1.3 * k + 0.4
        p = (a * math.cos(ang), a * math.sin(ang), 0.0)
        out.append(Body(10 + k, models.BodyKind.PLANET, 3e-6, 4.3e-5 * (1 + k), p))
        out.append(Body(100 + k, models.BodyKind.MOON, 4e-8, 1.2e-5,
                        (p[0] + 0.08, p[1] + 0.05, 0.02)))
    for k in range(60):
        a, ang = rng.uniform(2.8, 3.4), rng.uniform(0, 2 * math.pi)
        out.append(Body(1000 + k, models.BodyKind.ASTEROID, 1e-12, float(rng.uniform(2e-7, 1e-6)),
                        (a * math.cos(ang), a * math.sin(ang), float(rng.normal(0, 0.08)))))
    for k in range(25):
        off = rng.normal(0, 0.6, 3)
        out.append(Body(5000 + k, models.BodyKind.ASTEROID, 1e-12, 5e-7,
                        (CLUSTER_AT[0] + off[0], CLUSTER_AT[1] + off[1], off[2] * 0.3)))
    return out


def sandbox_bodies() -> list[Body]:
    return [Body(1, models.BodyKind.STAR, 1.0, 4.65e-3, (0.0, 0.0, 0.0)),
            Body(20, models.BodyKind.PLANET, 3e-6, 6e-5, (1.5, 0.0, 0.0), OTHER),
            Body(21, models.BodyKind.PLANET, 3e-6, 6e-5, (-1.0, 1.0, 0.0), PLAYER),
            Body(MOVER, models.BodyKind.MOON, 4e-8, 2e-5, (0.0, -2.0, 0.0))]


def opening(world: str, bodies: list[Body]) -> list[tuple[dict[str, Any], models.Role]]:
    """Gravity all but off (the engine wants G > 0: 1e-12 moves a body less than the
    position grid in a simulated century) and no mergers: the bodies stay exactly where
    they are spawned. The parameters are the operator's; a body with an owner is
    spawned by that player (signed as a player's), so that player owns it."""
    now = datetime.now(UTC)

    def envelope(body: models.Command, owner: str = "") -> tuple[dict[str, Any], models.Role]:
        record = models.PlayerCommand(command_id=uuid.uuid4(), player_id=owner or "operator",
                                      world_id=world, client_ts=now, received_ts=now,
                                      command=body).to_avro()
        return record, models.Role.PLAYER if owner else models.Role.OPERATOR

    def velocity(b: Body) -> models.Vec3:
        return models.Vec3(x=MOVER_SPEED if b.id == MOVER else 0.0, y=0, z=0)

    return [envelope(models.SetWorldParams(G=1e-12, softening=0.0, tick_rate_hz=TICK_HZ,
                                           dt=DAY / 4, merge_on_contact=False,
                                           snapshot_every=50)),
            *(envelope(models.SpawnBody(
                body_id=b.id, kind=b.kind, mass=b.mass, radius=b.radius,
                position=models.Vec3(x=b.position[0], y=b.position[1], z=b.position[2]),
                velocity=velocity(b)), b.owner) for b in bodies)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Platform:
    """The worker, the two worlds, and a gateway that can be restarted on its port."""

    def __init__(self, settings: Settings) -> None:
        run = uuid.uuid4().hex[:10]
        self.shard = f"test-viewer-{run}"
        self.fixed = f"{self.shard}:fixed"
        self.sandbox = f"{self.shard}:sandbox"
        self.bodies = {b.id: b for b in fixed_bodies()}
        self.settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(
            update={"grpc_port": 0, "http_port": free_port()})})
        self.registry = RegistryClient.from_settings(settings)
        self.worker: PhysicsWorker = build_worker(
            settings, WorkerConfig(worker_id=f"viewer-{run}", shard=self.shard), self.registry)
        self.gateway: GatewayService = self.start_gateway()
        self.worker.start()
        for world, bodies in ((self.fixed, fixed_bodies()), (self.sandbox, sandbox_bodies())):
            live = LiveWorld(settings, self.registry, world)
            for record, role in opening(world, bodies):
                live.send(record, role)
            assert live.producer.flush(30) == 0
            self.wait_for_world(world, len(bodies))

    @property
    def url(self) -> str:
        return self.gateway.http_url

    def token(self) -> str:
        """A fresh token of the page's player (tokens live minutes)."""
        return stack_token(self.settings, PLAYER)

    def get(self, path: str, **params: str) -> Any:
        """A REST read as the page's player."""
        resp = httpx.get(self.url + path, params=params,
                         headers={"Authorization": f"Bearer {self.token()}"})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def start_gateway(self) -> GatewayService:
        gateway = build_gateway(self.settings, self.registry)
        gateway.start()
        assert gateway.wait_ready(90), gateway.failure()
        return gateway

    def wait_for_world(self, world: str, n: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            core = self.gateway.core
            worlds = {w.world_id: w for w in core.worlds().worlds} if core is not None else {}
            if world in worlds and worlds[world].body_count == n:
                return
            assert time.monotonic() < deadline, f"the gateway never held {n} bodies of {world}"
            time.sleep(0.1)

    def held(self, world: str) -> list[set[int]]:
        """The body ids the gateway holds for each subscription of the world."""
        assert self.gateway.core is not None
        return [set(s.subscriber.ids.tolist()) for s in self.gateway.core.running(world)]

    def close(self) -> None:
        self.gateway.stop()
        self.worker.stop()
        self.registry.close()
        assert self.worker.failure() is None


@pytest.fixture(scope="module")
def platform(settings: Settings, stack: Stack) -> Iterator[Platform]:
    assert (STATIC / "index.html").is_file(), "the viewer is not built: run scripts/build-viewer"
    p = Platform(settings)
    yield p
    p.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """One browser tab on the viewer, with every console error and page error it shows."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[Any] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r))
        self.page.goto(url)

    def stats(self) -> dict[str, Any]:
        return dict(self.page.evaluate("window.cosmicViewer.stats()"))

    def drawn_ids(self) -> set[int]:
        return set(self.page.evaluate("window.cosmicViewer.drawnIds()"))

    def wait(self, js: str, timeout_s: float = 20) -> None:
        try:
            self.page.wait_for_function(js, timeout=timeout_s * 1000, polling=20)
        except sync_api.TimeoutError:
            shown = self.page.evaluate("window.cosmicViewer && window.cosmicViewer.stats()")
            status = self.page.locator("#command-status").inner_text()
            raise AssertionError(f"not within {timeout_s} s: {js}\npage: {shown}\n"
                                 f"status: {status!r}\nerrors: {self.errors}") from None

    def wait_live(self, timeout_s: float = 30) -> None:
        self.wait("window.cosmicViewer && window.cosmicViewer.stats().state === 'live'"
                  " && window.cosmicViewer.stats().tick > 0", timeout_s)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    pages: list[Page] = []

    def open_(url: str) -> Page:
        pages.append(Page(browser, url))
        return pages[-1]

    yield open_
    for p in pages:
        p.close()


def in_view(platform: Platform, center: tuple[float, float, float], radius: float) -> set[int]:
    c = np.asarray(center)
    return {i for i, b in platform.bodies.items()
            if np.linalg.norm(np.asarray(b.position) - c) <= radius}


def camera_query(world: str, target: tuple[float, float, float], dist: float,
                 az: float = -60, el: float = 35, **extra: str) -> str:
    """The page's query: a world, a camera, and (unless given) a token of the player."""
    q = {"world": world, "cx": target[0], "cy": target[1], "cz": target[2], "dist": dist,
         "az": az, "el": el, **extra}
    return "?" + "&".join(f"{k}={v}" for k, v in q.items())


def viewer_url(platform: Platform, world: str, target: tuple[float, float, float],
               dist: float, **extra: Any) -> str:
    extra.setdefault("token", platform.token())
    return platform.url + camera_query(world, target, dist, **extra)


def test_the_page_draws_exactly_the_bodies_the_gateway_holds_for_it(platform, open_page):
    page = open_page(viewer_url(platform, platform.fixed, (0, 0, 0), 5.0))
    page.wait_live()
    # Everything of the system within the view's radius (5 AU), none of the far cluster.
    expected = in_view(platform, (0, 0, 0), 5.0)
    assert 60 < len(expected) < len(platform.bodies)
    page.wait(f"window.cosmicViewer.stats().drawn === {len(expected)}")
    (held,) = platform.held(platform.fixed)
    drawn = page.drawn_ids()
    assert drawn == held == expected
    stats = page.stats()
    assert stats["drawn"] == stats["bodies"] == len(held)
    kinds = {name: sum(1 for i in held if platform.bodies[i].kind.value == name)
             for name in KIND_NAMES}
    assert stats["drawnByKind"] == kinds
    # One instanced mesh per kind (and the background): a handful of draw calls.
    assert stats["drawCalls"] <= 6, stats
    # The HUD says what it is looking at.
    hud = page.page.locator("#hud")
    page.wait("document.getElementById('hud-tick').textContent !== '\\u2013'")
    assert platform.fixed in page.page.locator("#world-picker").input_value()
    assert f"{len(expected)} (" in hud.locator("#hud-bodies").inner_text()
    assert hud.locator("#hud-state").inner_text().startswith("live")
    # The latency is measured when the frame is drawn, a render after the tick is shown.
    page.wait("document.getElementById('hud-latency').textContent.endsWith(' ms')")
    assert "KiB/s" in hud.locator("#hud-bytes").inner_text()
    # The picker offers both worlds; choosing the other one shows that one.
    options = page.page.locator("#world-picker option").all_inner_texts()
    assert {platform.fixed, platform.sandbox} <= set(options)
    page.page.select_option("#world-picker", platform.sandbox)
    page.wait(f"window.cosmicViewer.stats().world === '{platform.sandbox}'"
              " && window.cosmicViewer.stats().drawn >= 3")
    page.wait(f"window.cosmicViewer.stats().tick > {page.stats()['tick']}")
    (held,) = platform.held(platform.sandbox)
    assert page.drawn_ids() == held and {1, 20, 21} <= held
    deadline = time.monotonic() + 5
    while platform.held(platform.fixed):  # the old subscription ends with its socket
        assert time.monotonic() < deadline, "the page's old subscription was never closed"
        time.sleep(0.05)
    assert page.errors == []


def test_moving_the_camera_moves_the_view_within_three_ticks(platform, open_page):
    page = open_page(viewer_url(platform, platform.fixed, (0, 0, 0), 5.0))
    page.wait_live()
    central = in_view(platform, (0, 0, 0), 5.0)
    page.wait(f"window.cosmicViewer.stats().drawn === {len(central)}")
    before = page.stats()

    # Fly to the far cluster: every body of the system leaves, the cluster enters.
    tick0 = page.page.evaluate(f"""() => {{
        window.cosmicViewer.setCamera({{target: {list(CLUSTER_AT)}, distance: 3,
                                       azimuth: -60, elevation: 35}});
        return window.cosmicViewer.stats().tick; }}""")
    cluster = in_view(platform, CLUSTER_AT, 3.0)
    assert len(cluster) >= 20 and not cluster & central
    ids = sorted(cluster)
    page.wait(f"JSON.stringify(window.cosmicViewer.drawnIds()) === '{ids}'".replace(" ", ""))
    after = page.stats()
    assert after["tick"] - tick0 <= 3, (tick0, after["tick"])
    assert after["enters"] - before["enters"] == len(cluster)
    assert after["leaves"] - before["leaves"] == len(central)
    (held,) = platform.held(platform.fixed)
    assert held == cluster

    # Zoom out with the mouse wheel, as a person would: the view grows, the system
    # comes back into it, and the page and the gateway agree on every body.
    canvas = page.page.locator("#scene")
    box = canvas.bounding_box()
    page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert page.page.evaluate(
        f"document.elementFromPoint({box['width'] / 2}, {box['height'] / 2}).id") == "scene"
    for _ in range(12):
        page.page.mouse.wheel(0, 400)
        page.page.wait_for_timeout(30)
    page.wait("window.cosmicViewer.stats().view.radius > 9")
    radius = page.stats()["view"]["radius"]
    deadline = time.monotonic() + 10
    while True:
        (held,) = platform.held(platform.fixed)
        if page.drawn_ids() == held and held >= in_view(platform, CLUSTER_AT, radius):
            break
        assert time.monotonic() < deadline, "the page and the gateway never agreed after zooming"
        time.sleep(0.05)
    assert held & central, "zooming out brought none of the system back"
    assert page.errors == []


def drawn_samples(page: Page, body_id: int, n: int) -> list[tuple[int, float]]:
    """(tick, x drawn) of a body, sampled once per animation frame for n frames."""
    return [tuple(s) for s in page.page.evaluate(f"""() => new Promise((done, fail) => {{
        const out = [];
        const sample = () => {{
            try {{
                const p = window.cosmicViewer.drawnPosition({body_id});
                out.push([window.cosmicViewer.stats().tick, p[0]]);
            }} catch (err) {{
                fail(err);
                return;
            }}
            if (out.length < {n}) requestAnimationFrame(sample); else done(out);
        }};
        requestAnimationFrame(sample);
        setTimeout(() => fail(new Error(`only ${{out.length}} frames drawn in 20 s`)), 20000);
    }})""")]


def test_between_frames_bodies_move_by_dead_reckoning(platform, open_page):
    # One tab at a time: a browser draws animation frames only for the tab in front.
    for freeze in (False, True):
        page = open_page(viewer_url(platform, platform.sandbox, (0, -2, 0), 2.0,
                                    **({"freeze": "1"} if freeze else {})))
        page.wait_live()
        page.wait(f"window.cosmicViewer.drawnIds().includes({MOVER})")
        samples = drawn_samples(page, MOVER, 30)
        within = [(a, b) for a, b in itertools.pairwise(samples) if a[0] == b[0]]
        assert within, f"no two frames drawn within one tick: {samples}"
        if freeze:
            # Frozen, a body is drawn exactly where the last frame put it.
            assert all(b[1] == a[1] for a, b in within), samples
        else:
            # Several frames drawn within one tick: the moving body is drawn further
            # along its velocity in each, not held still until the next frame arrives.
            assert all(b[1] >= a[1] for a, b in within), samples
            assert sum(b[1] > a[1] for a, b in within) >= len(within) / 2, samples
        assert page.errors == []
        page.close()


def test_instanced_meshes_draw_the_same_bodies(platform, open_page):
    """The other renderer the page offers (one InstancedMesh per kind) draws the same set."""
    page = open_page(viewer_url(platform, platform.fixed, (0, 0, 0), 5.0,
                                                 draw="instanced"))
    page.wait_live()
    expected = in_view(platform, (0, 0, 0), 5.0)
    page.wait(f"window.cosmicViewer.stats().drawn === {len(expected)}")
    stats = page.stats()
    assert stats["draw"] == "instanced" and stats["drawCalls"] <= 6
    (held,) = platform.held(platform.fixed)
    assert page.drawn_ids() == held == expected
    frame = png_pixels(page.page.evaluate("window.cosmicViewer.capture()"))
    assert (frame.max(axis=2) > 120).sum() > 200  # the bodies are on the canvas
    assert page.errors == []


def click_body(page: Page, body_id: int) -> None:
    at = page.page.evaluate(f"window.cosmicViewer.screenPosition({body_id})")
    assert at is not None, f"body {body_id} is not on screen"
    on_top = page.page.evaluate(f"document.elementFromPoint({at['x']}, {at['y']}).id")
    assert on_top == "scene", f"body {body_id} is under #{on_top}"
    page.page.mouse.click(at["x"], at["y"])
    page.wait(f"window.cosmicViewer.stats().selected === {body_id}")


def gateway_velocity(platform: Platform, world: str, body_id: int) -> tuple[float, ...]:
    page = platform.get(f"api/v1/worlds/{world}/bodies", limit="1000")
    (body,) = [b for b in page["bodies"] if b["id"] == body_id]
    return tuple(body["velocity"][k] for k in "xyz")


def test_nudge_and_spawn_from_the_page(platform, open_page):
    token = platform.token()
    page = open_page(viewer_url(platform, platform.sandbox, (0, 0, 0), 4.0, token=token))
    page.wait_live()
    page.wait("window.cosmicViewer.stats().drawn >= 4")
    click_body(page, 21)
    panel = page.page.locator("#body-panel")
    assert panel.locator("#body-title").inner_text() == "PLANET 21"
    assert panel.locator("dd[data-prop='velocity']").inner_text() == "0.00000, 0.00000, 0.00000"
    status = page.page.locator("#command-status")

    # A nudge of the player's own body: the world applies it, the page says at which
    # tick, the gateway holds the new velocity, and the page's panel shows it.
    for axis, value in (("x", "0"), ("y", "0.25"), ("z", "0")):
        page.page.fill(f"#dv-{axis}", value)
    with page.page.expect_response(lambda r: r.request.method == "PUT") as put:
        page.page.click("#nudge")
    assert put.value.status == 202, put.value.text()
    page.wait("/applied at tick [0-9]+$/.test("
              "document.getElementById('command-status').textContent)")
    assert status.get_attribute("data-kind") == "applied"
    applied_at = int(status.inner_text().rsplit(" ", 1)[1])
    outcome = platform.get(f"api/v1/commands/{put.value.json()['command_id']}")
    assert outcome["state"] == "applied" and outcome["tick"] == applied_at
    # (The outcome follows the tick record, the velocity its delta: a moment apart.)
    deadline = time.monotonic() + 10
    while gateway_velocity(platform, platform.sandbox, 21) != pytest.approx((0, 0.25, 0),
                                                                            abs=1e-3):
        assert time.monotonic() < deadline, "the applied nudge never showed in the state"
        time.sleep(0.05)
    page.wait("document.querySelector(\"dd[data-prop='velocity']\").textContent"
              " === '0.00000, 0.25000, 0.00000'")
    # The token went with the command, as a bearer token, and the command named itself.
    request = put.value.request
    assert request.headers["authorization"] == f"Bearer {token}"
    assert uuid.UUID(request.headers["command-id"]).version == 4
    assert request.url.endswith("/bodies/21") and request.post_data_json == {
        "dv": {"x": 0, "y": 0.25, "z": 0}}

    # A nudge the gateway refuses at once: a speed no number can hold. The page says why.
    page.page.fill("#dv-x", "1e999")
    page.page.click("#nudge")
    page.wait("/refused/.test(document.getElementById('command-status').textContent)")
    text = status.inner_text()
    assert "dv.x" in text and "422" in text, text
    assert status.get_attribute("data-kind") == "rejected"

    # A nudge the world refuses: body 20 is another player's. The page shows the
    # worker's reason, at the tick that considered it.
    page.page.evaluate("window.cosmicViewer.setCamera({target: [1.5, 0, 0], distance: 4,"
                       " azimuth: -60, elevation: 35})")
    click_body(page, 20)
    page.page.fill("#dv-x", "0")
    page.page.click("#nudge")
    page.wait("/refused at tick/.test(document.getElementById('command-status').textContent)")
    text = status.inner_text()
    assert text.startswith("nudge of 20 refused at tick ") and "NOT_PERMITTED" in text, text
    assert status.get_attribute("data-kind") == "rejected"
    assert gateway_velocity(platform, platform.sandbox, 20) == (0, 0, 0)

    # A spawn at the camera's target (moved off the star first): a new asteroid enters
    # the view, where the camera looks, and is applied.
    page.page.evaluate("window.cosmicViewer.setCamera({target: [0.5, -1, 0], distance: 4,"
                       " azimuth: -60, elevation: 35})")
    page.page.click("#spawn")
    page.wait("window.cosmicViewer.stats().drawnByKind.ASTEROID === 1", 20)
    assert len(page.drawn_ids()) == 5
    (spawned,) = page.drawn_ids() - {1, 20, 21, MOVER}
    at = page.page.evaluate(f"window.cosmicViewer.screenPosition({spawned})")
    assert at == pytest.approx({"x": VIEWPORT["width"] / 2, "y": VIEWPORT["height"] / 2}, abs=2)
    page.wait("/applied at tick/.test(document.getElementById('command-status').textContent)")
    assert status.inner_text().startswith(f"spawn of {spawned} applied at tick ")
    # The browser logs the refused request (the 422 above); nothing else went wrong.
    assert [e for e in page.errors if not re.search(r"status of 422", e)] == []


def test_the_page_resumes_and_survives_a_gateway_restart(platform, open_page):
    page = open_page(viewer_url(platform, platform.fixed, (0, 0, 0), 5.0))
    page.wait_live()
    expected = in_view(platform, (0, 0, 0), 5.0)
    page.wait(f"window.cosmicViewer.stats().drawn === {len(expected)}")

    # A dropped connection resumes from the tick it had: no snapshot, same bodies. (The
    # gateway resumes only from the last frame it made, so a drop while a frame is on
    # its way gets a snapshot instead: a few tries.)
    for attempt in range(1, 6):
        page.page.evaluate("window.cosmicViewer.drop()")
        page.wait(f"window.cosmicViewer.stats().connects === {attempt + 1}", 10)
        if page.stats()["resumed"]:
            break
    stats = page.stats()
    assert stats["resumed"] == 1, f"no reconnect resumed in {attempt} tries: {stats}"
    assert stats["snapshots"] == attempt  # the first, and one per try that did not resume
    assert page.drawn_ids() == expected

    # The gateway goes away: the page says so, and comes back by itself once it returns.
    platform.gateway.stop()
    try:
        page.wait("['disconnected', 'reconnecting'].includes("
                  "document.getElementById('hud-state').dataset.state)", 10)
    finally:
        platform.gateway = platform.start_gateway()
    back = time.monotonic()
    page.wait_live(10)
    page.wait(f"window.cosmicViewer.stats().drawn === {len(expected)}"
              f" && window.cosmicViewer.stats().snapshots === {stats['snapshots'] + 1}", 10)
    took = time.monotonic() - back
    assert took <= 3.0, f"the page took {took:.1f} s to come back"
    assert page.drawn_ids() == expected
    tick = page.stats()["tick"]
    page.wait(f"window.cosmicViewer.stats().tick > {tick}", 5)


def png_pixels(data_url: str) -> np.ndarray:
    from PIL import Image

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.int16)


def test_a_frozen_frame_matches_the_reference_image(platform, open_page):
    from PIL import Image

    page = open_page(viewer_url(platform, platform.fixed, (0, 0, 0), 7.5,
                                                 az=-60, el=55, freeze="1"))
    page.wait_live()
    expected = in_view(platform, (0, 0, 0), 7.5)
    page.wait(f"window.cosmicViewer.stats().drawn === {len(expected)}")
    frame = png_pixels(page.page.evaluate("window.cosmicViewer.capture()"))
    assert frame.shape == (VIEWPORT["height"], VIEWPORT["width"], 3)
    # Not an empty sky: the bodies are there in their colours.
    assert (frame.max(axis=2) > 120).sum() > 200
    if UPDATE or not REFERENCE.exists():
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame.astype(np.uint8)).save(REFERENCE)
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.wait("document.getElementById('hud-tick').textContent !== '\\u2013'")
        page.page.wait_for_timeout(300)  # one HUD refresh with every figure filled in
        page.page.screenshot(path=str(README_SHOT))
        pytest.fail(f"wrote {REFERENCE} and {README_SHOT}: check them and commit them")
    reference = np.asarray(Image.open(REFERENCE).convert("RGB"), np.int16)
    assert reference.shape == frame.shape
    diff = np.abs(frame - reference).max(axis=2)
    # Software rendering is deterministic to the bit on one machine; allow a little for
    # another SwiftShader build: small differences, on few pixels.
    assert np.mean(diff) < 1.0, np.mean(diff)
    assert (diff > 24).mean() < 0.002, (diff > 24).mean()
    assert page.errors == []


def test_docs_lists_every_operation(platform, open_page):
    page = open_page(platform.url + "docs")
    page.wait("document.querySelectorAll('section.op').length > 1")
    doc = platform.get("openapi.json")
    text = page.page.locator("#operations").inner_text()
    for item in doc["paths"].values():
        for op in item.values():
            assert op["operationId"] in text
    assert page.errors == []
