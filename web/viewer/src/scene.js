// The bodies on screen, and an orbit camera whose target and distance are the
// subscription's view. Bodies are drawn one layer per kind, so a frame costs a handful
// of draw calls whatever the number of bodies. Three ways to draw a layer:
//
// - "sprites" (the default): one point per body, shaded as a lit sphere in the
//   fragment shader (an impostor). One vertex per body: cheap on a GPU and in software
//   rendering alike.
// - "instanced": one InstancedMesh per kind (real sphere geometry). As cheap on a GPU,
//   but SwiftShader (software WebGL, what a machine without a GPU gets) runs each
//   instance as a draw of its own, ~50 us each: 5,000 bodies take ~250 ms a frame.
// - "meshes": one Mesh per body, the anchor bench/viewer.py compares with.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

// Per kind: how a body looks. Physical radii span five orders of magnitude and are far
// below a pixel at any useful zoom, so a body is drawn at least `screen` times the
// camera distance, scaled by the cube root of its radius over the kind's typical one
// (bigger bodies look bigger, within a kind's range).
const LOOKS = [
  { name: "STAR", color: 0xffd27a, detail: 3, screen: 0.030, typical: 4.65e-3, lit: false },
  { name: "PLANET", color: 0x5b9be6, detail: 2, screen: 0.014, typical: 4.3e-5, lit: true },
  { name: "MOON", color: 0xc9c4b8, detail: 1, screen: 0.007, typical: 1.0e-5, lit: true },
  { name: "ASTEROID", color: 0xa07c58, detail: 0, screen: 0.0035, typical: 5.0e-7, lit: true },
];
// The subscription's radius per unit of camera distance: a little more than the
// frustum's half-height at the target, so what is on screen is what is subscribed.
export const VIEW_PER_DISTANCE = 1.0;

function hash01(id) {
  // A stable per-body shade: the same body looks the same on every page and every run.
  let h = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

function sizeFactor(kind, radius) {
  const r = Math.cbrt(radius / LOOKS[kind].typical);
  return Math.min(3, Math.max(0.5, Number.isFinite(r) ? r : 1));
}

// Bodies of one kind as one InstancedMesh that grows (by doubling) as bodies enter.
class KindLayer {
  constructor(scene, kind) {
    const look = LOOKS[kind];
    this.kind = kind;
    this.scene = scene;
    this.geometry = new THREE.IcosahedronGeometry(1, look.detail);
    this.material = look.lit
      ? new THREE.MeshLambertMaterial({ color: 0xffffff })
      : new THREE.MeshBasicMaterial({ color: 0xffffff });
    this.base = new THREE.Color(look.color);
    this.bodies = []; // slot -> body
    this.mesh = null;
    this.allocate(64);
  }

  allocate(capacity) {
    const mesh = new THREE.InstancedMesh(this.geometry, this.material, capacity);
    mesh.instanceMatrix.setUsage(THREE.DynamicDrawUsage);
    // Instances move every frame: a bounding sphere would be stale, so never cull by it.
    mesh.frustumCulled = false;
    mesh.name = LOOKS[this.kind].name;
    const old = this.mesh;
    if (old) {
      mesh.instanceMatrix.array.set(old.instanceMatrix.array);
      const colors = new Float32Array(capacity * 3);
      colors.set(old.instanceColor.array);
      mesh.instanceColor = new THREE.InstancedBufferAttribute(colors, 3);
      this.scene.remove(old);
      old.dispose();
    } else {
      mesh.instanceColor = new THREE.InstancedBufferAttribute(new Float32Array(capacity * 3), 3);
    }
    mesh.count = this.bodies.length;
    mesh.visible = mesh.count > 0;
    this.scene.add(mesh);
    this.mesh = mesh;
  }

  add(body) {
    if (this.bodies.length === this.mesh.instanceMatrix.count) {
      this.allocate(this.mesh.instanceMatrix.count * 2);
    }
    const slot = this.bodies.length;
    this.bodies.push(body);
    body.slot = slot;
    body.layer = this;
    body.size = sizeFactor(this.kind, body.radius);
    const shade = 0.8 + 0.4 * hash01(body.id);
    const c = this.base.clone().multiplyScalar(shade);
    this.mesh.instanceColor.setXYZ(slot, c.r, c.g, c.b);
    this.mesh.instanceColor.needsUpdate = true;
    this.mesh.count = this.bodies.length;
    this.mesh.visible = true;
  }

  remove(body) {
    const slot = body.slot;
    const last = this.bodies.length - 1;
    const moved = this.bodies[last];
    this.bodies[slot] = moved;
    moved.slot = slot;
    const colors = this.mesh.instanceColor;
    colors.setXYZ(slot, colors.getX(last), colors.getY(last), colors.getZ(last));
    colors.needsUpdate = true;
    this.bodies.pop();
    this.mesh.count = this.bodies.length;
    this.mesh.visible = this.mesh.count > 0;
  }

  // Write every instance's matrix: a uniform scale and a translation, no rotation.
  update(replica, dt, distance) {
    const m = this.mesh.instanceMatrix.array;
    const ps = replica.positionStep;
    const vs = replica.velocityStep * dt;
    const floor = LOOKS[this.kind].screen * distance;
    for (let i = 0; i < this.bodies.length; i++) {
      const b = this.bodies[i];
      const s = Math.max(b.radius, floor * b.size);
      const o = 16 * i;
      m[o] = s; m[o + 1] = 0; m[o + 2] = 0; m[o + 3] = 0;
      m[o + 4] = 0; m[o + 5] = s; m[o + 6] = 0; m[o + 7] = 0;
      m[o + 8] = 0; m[o + 9] = 0; m[o + 10] = s; m[o + 11] = 0;
      m[o + 12] = b.qpos[0] * ps + b.qvel[0] * vs;
      m[o + 13] = b.qpos[1] * ps + b.qvel[1] * vs;
      m[o + 14] = b.qpos[2] * ps + b.qvel[2] * vs;
      m[o + 15] = 1;
    }
    this.mesh.instanceMatrix.needsUpdate = true;
  }
}

// The anchor the benchmark compares with: the same bodies, one Mesh (one draw call) each.
class NaiveLayer {
  constructor(scene, kind) {
    const look = LOOKS[kind];
    this.kind = kind;
    this.scene = scene;
    this.geometry = new THREE.IcosahedronGeometry(1, look.detail);
    this.material = look.lit
      ? new THREE.MeshLambertMaterial({ color: look.color })
      : new THREE.MeshBasicMaterial({ color: look.color });
    this.bodies = [];
    this.mesh = { count: 0, visible: false, name: look.name };
  }

  add(body) {
    body.slot = this.bodies.length;
    body.layer = this;
    body.size = sizeFactor(this.kind, body.radius);
    body.object = new THREE.Mesh(this.geometry, this.material);
    this.scene.add(body.object);
    this.bodies.push(body);
    this.mesh.count = this.bodies.length;
  }

  remove(body) {
    this.scene.remove(body.object);
    const last = this.bodies.pop();
    if (last !== body) {
      this.bodies[body.slot] = last;
      last.slot = body.slot;
    }
    this.mesh.count = this.bodies.length;
  }

  update(replica, dt, distance) {
    const ps = replica.positionStep;
    const vs = replica.velocityStep * dt;
    const floor = LOOKS[this.kind].screen * distance;
    for (const b of this.bodies) {
      b.object.scale.setScalar(Math.max(b.radius, floor * b.size));
      b.object.position.set(b.qpos[0] * ps + b.qvel[0] * vs, b.qpos[1] * ps + b.qvel[1] * vs,
        b.qpos[2] * ps + b.qvel[2] * vs);
    }
  }
}

const SPRITE_VERTEX = `
attribute float size;
attribute vec3 color;
uniform float pixelsPerUnit;
uniform float maxPointSize;
varying vec3 vColor;
void main() {
  vec4 mv = modelViewMatrix * vec4(position, 1.0);
  gl_Position = projectionMatrix * mv;
  // The sphere's diameter on screen, never below two pixels (a body is always seen).
  gl_PointSize = clamp(2.0 * size * pixelsPerUnit / -mv.z, 2.0, maxPointSize);
  vColor = color;
}`;

const SPRITE_FRAGMENT = `
uniform vec3 lightDir;
uniform float lit;
varying vec3 vColor;
void main() {
  vec2 p = vec2(gl_PointCoord.x * 2.0 - 1.0, 1.0 - gl_PointCoord.y * 2.0);
  float r2 = dot(p, p);
  if (r2 > 1.0) discard;
  // The normal of a sphere seen face on, lit like MeshLambertMaterial would light it.
  vec3 n = vec3(p, sqrt(1.0 - r2));
  float diffuse = max(dot(n, lightDir), 0.0);
  gl_FragColor = vec4(mix(vColor, vColor * (0.3 + 1.0 * diffuse), lit), 1.0);
}`;

function srgb(hex) {
  return [((hex >> 16) & 255) / 255, ((hex >> 8) & 255) / 255, (hex & 255) / 255];
}

// Bodies of one kind as one THREE.Points of lit-sphere impostors (one vertex each).
class SpriteLayer {
  constructor(scene, kind, uniforms) {
    const look = LOOKS[kind];
    this.kind = kind;
    this.scene = scene;
    this.base = srgb(look.color);
    this.material = new THREE.ShaderMaterial({
      vertexShader: SPRITE_VERTEX, fragmentShader: SPRITE_FRAGMENT,
      uniforms: { ...uniforms, lit: { value: look.lit ? 1.0 : 0.0 } },
    });
    this.bodies = [];
    this.points = null;
    this.allocate(64);
  }

  allocate(capacity) {
    const geometry = new THREE.BufferGeometry();
    const old = this.points && this.points.geometry;
    for (const [name, width] of [["position", 3], ["size", 1], ["color", 3]]) {
      const array = new Float32Array(capacity * width);
      if (old) array.set(old.getAttribute(name).array);
      const attr = new THREE.BufferAttribute(array, width);
      if (name !== "color") attr.setUsage(THREE.DynamicDrawUsage);
      geometry.setAttribute(name, attr);
    }
    if (this.points) {
      this.scene.remove(this.points);
      old.dispose();
    }
    this.capacity = capacity;
    this.points = new THREE.Points(geometry, this.material);
    this.points.frustumCulled = false; // the points move every frame
    this.points.name = LOOKS[this.kind].name;
    this.scene.add(this.points);
    this.sync();
  }

  sync() {
    this.points.geometry.setDrawRange(0, this.bodies.length);
    this.points.visible = this.bodies.length > 0;
  }

  add(body) {
    if (this.bodies.length === this.capacity) this.allocate(this.capacity * 2);
    const slot = this.bodies.length;
    this.bodies.push(body);
    body.slot = slot;
    body.layer = this;
    body.size = sizeFactor(this.kind, body.radius);
    const shade = 0.8 + 0.4 * hash01(body.id);
    const colors = this.points.geometry.getAttribute("color");
    colors.setXYZ(slot, Math.min(1, this.base[0] * shade), Math.min(1, this.base[1] * shade),
      Math.min(1, this.base[2] * shade));
    colors.needsUpdate = true;
    this.sync();
  }

  remove(body) {
    const slot = body.slot;
    const last = this.bodies.length - 1;
    const moved = this.bodies[last];
    this.bodies[slot] = moved;
    moved.slot = slot;
    const colors = this.points.geometry.getAttribute("color");
    colors.setXYZ(slot, colors.getX(last), colors.getY(last), colors.getZ(last));
    colors.needsUpdate = true;
    this.bodies.pop();
    this.sync();
  }

  update(replica, dt, distance) {
    const g = this.points.geometry;
    const pos = g.getAttribute("position");
    const size = g.getAttribute("size");
    const p = pos.array;
    const z = size.array;
    const ps = replica.positionStep;
    const vs = replica.velocityStep * dt;
    const floor = LOOKS[this.kind].screen * distance;
    for (let i = 0; i < this.bodies.length; i++) {
      const b = this.bodies[i];
      z[i] = Math.max(b.radius, floor * b.size);
      p[3 * i] = b.qpos[0] * ps + b.qvel[0] * vs;
      p[3 * i + 1] = b.qpos[1] * ps + b.qvel[1] * vs;
      p[3 * i + 2] = b.qpos[2] * ps + b.qvel[2] * vs;
    }
    pos.clearUpdateRanges();
    pos.addUpdateRange(0, 3 * this.bodies.length);
    pos.needsUpdate = true;
    size.clearUpdateRanges();
    size.addUpdateRange(0, this.bodies.length);
    size.needsUpdate = true;
  }
}

function starfield(seed) {
  // Fixed background stars (seeded, so a frozen frame is the same on every run).
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const n = 1200;
  const pos = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const z = 2 * rand() - 1;
    const a = 2 * Math.PI * rand();
    const r = Math.sqrt(1 - z * z);
    pos.set([r * Math.cos(a), r * Math.sin(a), z], 3 * i);
  }
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.BufferAttribute(pos, 3));
  const points = new THREE.Points(geometry, new THREE.PointsMaterial({
    color: 0x8090a8, size: 1.5, sizeAttenuation: false, depthWrite: false }));
  points.frustumCulled = false;
  points.renderOrder = -1;
  return points;
}

export class BodyScene {
  constructor(canvas, { draw = "sprites" } = {}) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: false, powerPreference: "high-performance" });
    this.renderer.setPixelRatio(1);
    this.renderer.setClearColor(0x05070d, 1);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(50, 1, 1e-4, 1e4);
    this.camera.up.set(0, 0, 1); // the ecliptic is the xy plane: z is up
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = false; // a camera that stops where it is put
    this.controls.screenSpacePanning = true;
    this.scene.add(new THREE.AmbientLight(0xffffff, 0.45));
    this.light = new THREE.DirectionalLight(0xffffff, 2.2);
    this.scene.add(this.light);
    this.scene.add(this.light.target);
    this.stars = starfield(7);
    this.scene.add(this.stars);
    this.uniforms = {
      pixelsPerUnit: { value: 1 }, lightDir: { value: new THREE.Vector3(0.5, 0.5, 0.7).normalize() },
      maxPointSize: { value: 64 },
    };
    const Layer = { sprites: SpriteLayer, instanced: KindLayer, meshes: NaiveLayer }[draw] || SpriteLayer;
    this.draw = Layer === SpriteLayer ? "sprites" : draw;
    this.layers = LOOKS.map((_, kind) => new Layer(this.scene, kind, this.uniforms));
    const range = this.renderer.getContext().getParameter(this.renderer.getContext().ALIASED_POINT_SIZE_RANGE);
    this.uniforms.maxPointSize.value = range ? range[1] : 64;
    this.byId = new Map();
    this.marker = new THREE.Mesh(new THREE.IcosahedronGeometry(1, 2),
      new THREE.MeshBasicMaterial({ color: 0x7fffd4, wireframe: true }));
    this.marker.visible = false;
    this.scene.add(this.marker);
    this.selected = null;
    this.drawn = 0;
    this.drawCalls = 0;
    this.lastDt = 0;
    this.resize();
  }

  setCamera({ target, distance, azimuth, elevation }) {
    const az = THREE.MathUtils.degToRad(azimuth);
    const el = THREE.MathUtils.degToRad(elevation);
    const t = new THREE.Vector3(...target);
    this.controls.target.copy(t);
    this.camera.position.set(
      t.x + distance * Math.cos(el) * Math.cos(az),
      t.y + distance * Math.cos(el) * Math.sin(az),
      t.z + distance * Math.sin(el));
    this.controls.update();
  }

  distance() {
    return this.camera.position.distanceTo(this.controls.target);
  }

  // The subscription's area of interest for where the camera is.
  view() {
    const t = this.controls.target;
    return { center: [t.x, t.y, t.z], radius: this.distance() * VIEW_PER_DISTANCE };
  }

  // Bodies that left go first: a body re-entering (a merger) is removed, then re-added.
  applyChanges(replica, { entered, left }) {
    for (const id of left) {
      const b = this.byId.get(id);
      if (b === undefined) continue;
      b.layer.remove(b);
      this.byId.delete(id);
      if (this.selected === id && !entered.includes(id)) this.selected = null;
    }
    for (const id of entered) {
      const stale = this.byId.get(id);
      if (stale !== undefined) stale.layer.remove(stale);
      const b = replica.bodies.get(id);
      const layer = this.layers[b.kind] || this.layers[3];
      layer.add(b);
      this.byId.set(id, b);
    }
  }

  clear() {
    for (const b of this.byId.values()) b.layer.remove(b);
    this.byId.clear();
    this.selected = null;
  }

  resize() {
    const w = this.canvas.clientWidth || window.innerWidth;
    const h = this.canvas.clientHeight || window.innerHeight;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    // A sprite's size in pixels: world size * this / depth (the projection's scale).
    this.uniforms.pixelsPerUnit.value = h / (2 * Math.tan(THREE.MathUtils.degToRad(this.camera.fov) / 2));
  }

  // Draw the bodies at sim time replica.simTime + dt (dead reckoning: p + v * dt).
  render(replica, dt) {
    this.lastDt = dt;
    const d = this.distance();
    this.camera.near = d * 1e-3;
    this.camera.far = d * 1e3;
    this.camera.updateProjectionMatrix();
    this.light.position.copy(this.camera.position).add(new THREE.Vector3(d, d, d).multiplyScalar(0.3));
    this.light.target.position.copy(this.controls.target);
    this.stars.position.copy(this.camera.position);
    this.stars.scale.setScalar(d * 100);
    let drawn = 0;
    for (const layer of this.layers) {
      layer.update(replica, dt, d);
      drawn += layer.bodies.length;
    }
    const sel = this.selected === null ? undefined : this.byId.get(this.selected);
    this.marker.visible = sel !== undefined;
    if (sel !== undefined) {
      const p = this.position(sel, replica, dt);
      this.marker.position.set(...p);
      this.marker.scale.setScalar(2.2 * Math.max(sel.radius, LOOKS[sel.layer.kind].screen * d * sel.size));
    }
    this.renderer.render(this.scene, this.camera);
    this.drawn = drawn;
    this.drawCalls = this.renderer.info.render.calls;
  }

  position(b, replica, dt) {
    const ps = replica.positionStep;
    const vs = replica.velocityStep * dt;
    return [b.qpos[0] * ps + b.qvel[0] * vs, b.qpos[1] * ps + b.qvel[1] * vs,
      b.qpos[2] * ps + b.qvel[2] * vs];
  }

  // Where a body is on the page, in CSS pixels (null when behind the camera).
  screenPosition(b, replica, dt) {
    const v = new THREE.Vector3(...this.position(b, replica, dt)).project(this.camera);
    if (v.z > 1 || v.z < -1) return null;
    const r = this.canvas.getBoundingClientRect();
    return { x: r.left + (v.x + 1) / 2 * r.width, y: r.top + (1 - v.y) / 2 * r.height };
  }

  // The body drawn nearest a click, within a few pixels of its disc.
  pick(clientX, clientY, replica, dt) {
    let best = null;
    let bestD = Infinity;
    for (const b of this.byId.values()) {
      const p = this.screenPosition(b, replica, dt);
      if (p === null) continue;
      const d = Math.hypot(p.x - clientX, p.y - clientY);
      if (d < bestD) { bestD = d; best = b; }
    }
    return best !== null && bestD <= 12 ? best : null;
  }

  counts() {
    const byKind = {};
    for (const layer of this.layers) byKind[LOOKS[layer.kind].name] = layer.bodies.length;
    return byKind;
  }
}
