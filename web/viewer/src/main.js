// The viewer's wiring: the gateway's frames into the replica, the replica onto the
// screen, the camera into the subscription, and the HUD. Start reading here, then
// connection.js (the socket), replica.js (frames), scene.js (drawing), api.js (REST).
//
// URL parameters: world, token, freeze=1 (no dead reckoning: a frame exactly as
// received), cx/cy/cz (camera target), dist, az, el (degrees), draw=meshes (one mesh per
// body: the benchmark's anchor; draw=instanced: one InstancedMesh per kind; see scene.js).
import { Api, Refused } from "./api.js";
import { Connection } from "./connection.js";
import { KINDS } from "./protocol.js";
import { Replica } from "./replica.js";
import { BodyScene } from "./scene.js";

const params = new URLSearchParams(location.search);
const num = (name, fallback) => {
  const v = Number(params.get(name));
  return params.has(name) && Number.isFinite(v) ? v : fallback;
};
const freeze = params.get("freeze") === "1";
const $ = (id) => document.getElementById(id);

const replica = new Replica();
const scene = new BodyScene($("scene"), { draw: params.get("draw") || "sprites" });
scene.setCamera({
  target: [num("cx", 0), num("cy", 0), num("cz", 0)], distance: num("dist", 8),
  azimuth: num("az", -60), elevation: num("el", 35),
});
$("token").value = params.get("token") || "";
const api = new Api("", () => $("token").value.trim());
// A new token: subscribe again with it (and list the worlds it may see).
$("token").addEventListener("change", () => {
  connection.drop();
  refreshWorlds();
});

// What the HUD and the tests read.
const stats = {
  state: "connecting", stateDetail: "", world: null, enters: 0, leaves: 0,
  latencyMs: null, frameMs: null,
};
const received = []; // [arrival ms, bytes, enters, leaves] over the last second
let lastFrame = null; // {arrival, simTime, producedMs}
let simRate = 0; // sim-time units per wall-clock ms, from the producer's clock
let awaitingScreen = null; // produced_ms of a frame not yet drawn

// Browsers cannot set headers on a WebSocket: the gateway takes the token as ?token=.
const wsBase = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
const token = () => $("token").value.trim();
const connection = new Connection({
  url: () => (token() ? `${wsBase}?token=${encodeURIComponent(token())}` : wsBase), replica,
  onFrame(frame, changes, bytes) {
    if (frame.snapshot) {
      // A snapshot is the whole view: start the scene over from it (whatever the page
      // held before, even bodies of a replica dropped for being out of order).
      const keep = scene.selected;
      scene.clear();
      scene.applyChanges(replica, { entered: [...replica.bodies.keys()], left: [] });
      scene.selected = replica.bodies.has(keep) ? keep : null;
    } else {
      scene.applyChanges(replica, changes);
    }
    const now = performance.now();
    const entered = frame.snapshot ? 0 : changes.entered.length;
    const left = frame.snapshot ? 0 : frame.leave.length;
    stats.enters += entered;
    stats.leaves += left;
    received.push([now, bytes, entered, left]);
    if (lastFrame !== null && !frame.snapshot && frame.producedMs > lastFrame.producedMs) {
      simRate = (frame.simTime - lastFrame.simTime) / (frame.producedMs - lastFrame.producedMs);
    }
    lastFrame = { arrival: now, simTime: frame.simTime, producedMs: frame.producedMs,
      tickMs: lastFrame ? Math.max(1, frame.producedMs - lastFrame.producedMs) : 100 };
    awaitingScreen = frame.producedMs;
  },
  onState(state, detail) {
    stats.state = state;
    stats.stateDetail = detail;
  },
});

// Dead reckoning: how far past the last frame to draw, in sim time; never more than a
// few ticks ahead, so a stalled stream freezes instead of flying off.
function extrapolation() {
  if (freeze || lastFrame === null) return 0;
  const ahead = Math.min(performance.now() - lastFrame.arrival, 3 * lastFrame.tickMs);
  return simRate * ahead;
}

let lastRender = performance.now();
function loop() {
  scene.render(replica, extrapolation());
  const now = performance.now();
  stats.frameMs = now - lastRender;
  lastRender = now;
  if (awaitingScreen !== null) {
    // The producer's clock and this one: an age beyond a minute (or negative) means
    // they are not comparable, and no figure beats a wrong one.
    const age = Date.now() - awaitingScreen;
    stats.latencyMs = age >= 0 && age < 60000 ? age : null;
    awaitingScreen = null;
  }
  requestAnimationFrame(loop);
}

// The camera is the view: every move of it moves the subscription.
let viewKey = "";
function viewChanged() {
  const v = scene.view();
  const key = [...v.center, v.radius].map((x) => x.toPrecision(6)).join(",");
  if (key === viewKey) return;
  viewKey = key;
  connection.move(v);
}
scene.controls.addEventListener("change", viewChanged);
window.addEventListener("resize", () => scene.resize());

// Worlds: the picker lists what the gateway knows; a change starts a new subscription.
function watchWorld(world) {
  if (world === stats.world) return;
  stats.world = world;
  stats.enters = stats.leaves = 0;
  received.length = 0;
  lastFrame = null;
  simRate = 0;
  scene.clear();
  select(null);
  connection.open(world, scene.view());
  const q = new URLSearchParams(location.search);
  q.set("world", world);
  history.replaceState(null, "", `?${q}`);
}

async function refreshWorlds() {
  let worlds;
  try {
    worlds = (await api.worlds()).worlds;
  } catch (err) {
    if (stats.world === null) stats.state = `no gateway (${err.message})`;
    return;
  }
  const picker = $("world-picker");
  const want = stats.world || params.get("world") || (worlds[0] && worlds[0].world_id);
  const ids = worlds.map((w) => w.world_id);
  if (want && !ids.includes(want)) ids.unshift(want);
  if (picker.options.length !== ids.length || ids.some((id, i) => picker.options[i].value !== id)) {
    picker.replaceChildren(...ids.map((id) => new Option(id, id)));
  }
  if (want) {
    picker.value = want;
    watchWorld(want);
  } else {
    stats.state = "no worlds yet";
  }
}
$("world-picker").addEventListener("change", (ev) => watchWorld(ev.target.value));

// Selection and commands.
let selectedId = null;
function select(id) {
  selectedId = id;
  scene.selected = id;
  $("body-panel").hidden = id === null;
  showSelected();
}

const fmt = (x) => (Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(4) : x.toFixed(5));
const vec = (v) => v.map(fmt).join(", ");

function showSelected() {
  if (selectedId === null) return;
  const b = replica.bodies.get(selectedId);
  if (b === undefined) {
    $("body-title").textContent = `body ${selectedId} (out of view)`;
    return;
  }
  $("body-title").textContent = `${KINDS[b.kind] || b.kind} ${b.id}`;
  const rows = [["mass", `${b.mass.toExponential(3)} M☉`], ["radius", `${b.radius.toExponential(3)} AU`],
    ["position", vec(replica.position(b))], ["velocity", vec(replica.velocity(b))]];
  $("body-props").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dd.dataset.prop = k;
    return [dt, dd];
  }));
}

function status(text, kind) {
  const el = $("command-status");
  el.textContent = text;
  el.dataset.kind = kind;
}

async function submit(what, send) {
  status(`${what}: sending`, "pending");
  let reply;
  try {
    reply = await send();
  } catch (err) {
    status(`${what} refused: ${err.message}`, err instanceof Refused ? "rejected" : "error");
    return;
  }
  await api.follow(reply.command_id, (text, kind) => status(`${what} ${text}`, kind));
}

$("nudge").addEventListener("click", () => {
  if (selectedId === null || stats.world === null) return;
  // The numbers go as typed: the gateway, not the page, decides what it accepts (a
  // non-finite value is sent as JSON null and refused there, with its reason shown).
  const dv = ["dv-x", "dv-y", "dv-z"].map((id) => Number($(id).value));
  const id = selectedId;
  submit(`nudge of ${id}`, () => api.nudge(stats.world, id, dv));
});

$("spawn").addEventListener("click", () => {
  if (stats.world === null) return;
  const t = scene.view().center;
  const bodyId = 1_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
  const body = {
    body_id: bodyId, kind: $("spawn-kind").value, mass: Number($("spawn-mass").value),
    radius: Number($("spawn-radius").value), position: { x: t[0], y: t[1], z: t[2] },
    velocity: { x: 0, y: 0, z: 0 },
  };
  submit(`spawn of ${bodyId}`, () => api.spawn(stats.world, body));
});

// A click (not a drag) selects the body under the pointer.
let down = null;
$("scene").addEventListener("pointerdown", (ev) => { down = [ev.clientX, ev.clientY]; });
$("scene").addEventListener("pointerup", (ev) => {
  if (down === null || Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) > 4) return;
  const b = scene.pick(ev.clientX, ev.clientY, replica, extrapolation());
  select(b === null ? null : b.id);
});

// The HUD, four times a second.
function perSecond() {
  const now = performance.now();
  while (received.length && received[0][0] < now - 1000) received.shift();
  return received.reduce((acc, r) => [acc[0] + r[1], acc[1] + r[2], acc[2] + r[3]], [0, 0, 0]);
}

function currentStats() {
  const [bytes, enters, leaves] = perSecond();
  const v = scene.view();
  return {
    state: stats.state, stateDetail: stats.stateDetail, world: stats.world, tick: replica.tick,
    simTime: replica.simTime, bodies: replica.bodies.size, drawn: scene.drawn,
    drawnByKind: scene.counts(), drawCalls: scene.drawCalls, enters: stats.enters,
    leaves: stats.leaves, entersPerS: enters, leavesPerS: leaves, bytesPerS: bytes,
    latencyMs: stats.latencyMs, frameMs: stats.frameMs, view: v, selected: selectedId,
    draw: scene.draw,
    ...connection.counts,
  };
}

function hud() {
  const s = currentStats();
  const state = $("hud-state");
  state.textContent = s.stateDetail ? `${s.state} (${s.stateDetail})` : s.state;
  state.dataset.state = s.state;
  $("hud-tick").textContent = s.tick ? String(s.tick) : "–";
  $("hud-sim").textContent = s.tick ? `${s.simTime.toFixed(4)} yr` : "–";
  $("hud-bodies").textContent = `${s.bodies} (${s.drawn} drawn, ${s.drawCalls} draw calls)`;
  $("hud-churn").textContent = `${s.entersPerS} / ${s.leavesPerS} per s (${s.enters} / ${s.leaves})`;
  $("hud-bytes").textContent = `${(s.bytesPerS / 1024).toFixed(1)} KiB/s of frames`;
  $("hud-latency").textContent = s.latencyMs === null ? "–" : `${Math.round(s.latencyMs)} ms`;
  $("hud-view").textContent = `(${s.view.center.map((c) => c.toFixed(2)).join(", ")}) r ${s.view.radius.toFixed(2)}`;
  showSelected();
}

// For tests and benchmarks: what the page shows, and a few handles on it.
window.cosmicViewer = {
  stats: currentStats,
  heldIds: () => [...replica.bodies.keys()].sort((a, b) => a - b),
  drawnIds: () => [...scene.byId.keys()].sort((a, b) => a - b),
  setCamera(camera) {
    scene.setCamera(camera);
    viewChanged();
  },
  // Where a body was drawn in the last frame (world units, after dead reckoning).
  drawnPosition(id) {
    const b = scene.byId.get(id);
    return b === undefined ? null : scene.position(b, replica, scene.lastDt);
  },
  screenPosition(id) {
    const b = scene.byId.get(id);
    return b === undefined ? null : scene.screenPosition(b, replica, extrapolation());
  },
  drop: () => connection.drop(),
  // The canvas alone (no HUD), drawn now: a PNG data URL.
  capture() {
    scene.render(replica, extrapolation());
    return scene.renderer.domElement.toDataURL("image/png");
  },
  // Draw n frames back to back, each waited for to the last pixel: milliseconds each.
  timeFrames(n) {
    const gl = scene.renderer.getContext();
    const pixel = new Uint8Array(4);
    const times = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      scene.render(replica, extrapolation());
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
      times.push(performance.now() - t0);
    }
    return times;
  },
};

refreshWorlds();
setInterval(refreshWorlds, 5000);
setInterval(hud, 250);
requestAnimationFrame(loop);
