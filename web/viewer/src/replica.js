// A view's bodies rebuilt from frames: the JavaScript twin of streams/gateway/replica.py
// (same rules: a snapshot replaces everything; a delta must follow the tick held; both
// update encodings, DELTAS and PREDICTED, as schemas/gateway.proto defines them).

import { Encoding } from "./protocol.js";

export class OutOfOrder extends Error {}

export class Replica {
  constructor() {
    this.reset();
  }

  reset() {
    // id -> {id, kind, mass, radius, qpos: [3], qvel: [3], sentQpos: [3], sentAt}: qpos is
    // shown at this.tick; PREDICTED extrapolates it from sentQpos, sent at sim time sentAt.
    this.bodies = new Map();
    this.predicted = false;
    this.tick = 0;
    this.simTime = 0;
    this.positionStep = 0;
    this.velocityStep = 0;
  }

  // Folds in one decoded Frame; returns {entered, left} (ids) so the scene can move only
  // what changed. Throws OutOfOrder when the frame does not follow this replica's tick.
  apply(frame) {
    const entered = [];
    const left = [];
    if (frame.snapshot) {
      for (const id of this.bodies.keys()) left.push(id);
      this.bodies.clear();
      this.positionStep = frame.positionStep;
      this.velocityStep = frame.velocityStep;
      this.predicted = frame.encoding === Encoding.PREDICTED;
    } else if (frame.baseTick !== this.tick) {
      throw new OutOfOrder(`frame based on tick ${frame.baseTick}, replica at ${this.tick}`);
    }
    for (const id of frame.leave) {
      if (!this.bodies.delete(id)) throw new OutOfOrder(`leave of body ${id}, not held`);
      left.push(id);
    }
    const t = frame.simTime;
    if (this.predicted) this.predict(t);
    const e = frame.enter;
    if (e) {
      for (let i = 0; i < e.ids.length; i++) {
        const id = e.ids[i];
        // A body that enters again (a merger changed its mass or radius) replaces itself.
        if (this.bodies.has(id)) left.push(id);
        const qpos = [e.positions[3 * i], e.positions[3 * i + 1], e.positions[3 * i + 2]];
        this.bodies.set(id, {
          id, kind: e.kinds[i], mass: e.masses[i], radius: e.radii[i], qpos,
          qvel: [e.velocities[3 * i], e.velocities[3 * i + 1], e.velocities[3 * i + 2]],
          sentQpos: [...qpos], sentAt: t,
        });
        entered.push(id);
      }
    }
    const u = frame.update;
    if (u && this.predicted) this.residuals(u, t);
    else if (u) this.deltas(u);
    this.tick = frame.tick;
    this.simTime = frame.simTime;
    return { entered, left };
  }

  held(id) {
    const b = this.bodies.get(id);
    if (b === undefined) throw new OutOfOrder(`update of body ${id}, not held`);
    return b;
  }

  deltas(u) {
    let id = 0;
    const dp = u.positionDeltas;
    const dv = u.velocityDeltas;
    for (let i = 0; i < u.idSteps.length; i++) {
      id += u.idSteps[i];
      const b = this.held(id);
      b.qpos[0] += dp[3 * i]; b.qpos[1] += dp[3 * i + 1]; b.qpos[2] += dp[3 * i + 2];
      b.qvel[0] += dv[3 * i]; b.qvel[1] += dv[3 * i + 1]; b.qvel[2] += dv[3 * i + 2];
    }
  }

  // Every body where its dead reckoning puts it at sim time t: the contract's formula,
  // operation for operation, so the integers equal the gateway's.
  predict(t) {
    const ratio = this.velocityStep / this.positionStep;
    for (const b of this.bodies.values()) {
      const elapsed = (t - b.sentAt) * ratio;
      for (let a = 0; a < 3; a++) b.qpos[a] = b.sentQpos[a] + Math.floor(b.qvel[a] * elapsed + 0.5);
    }
  }

  residuals(u, t) {
    const masks = u.changed;
    const values = u.residuals;
    if (masks.length !== u.idSteps.length) {
      throw new OutOfOrder(`${u.idSteps.length} updated bodies with ${masks.length} masks`);
    }
    let id = 0;
    let at = 0;
    for (let i = 0; i < masks.length; i++) {
      id += u.idSteps[i];
      const b = this.held(id);
      for (let bit = 0; bit < 6; bit++) {
        if (!((masks[i] >> bit) & 1)) continue;
        if (at >= values.length) throw new OutOfOrder("fewer residuals than the masks name");
        if (bit < 3) b.qpos[bit] += values[at++];
        else b.qvel[bit - 3] += values[at++];
      }
      b.sentQpos = [...b.qpos];
      b.sentAt = t;
    }
    if (at !== values.length) throw new OutOfOrder("more residuals than the masks name");
  }

  position(b) {
    const s = this.positionStep;
    return [b.qpos[0] * s, b.qpos[1] * s, b.qpos[2] * s];
  }

  velocity(b) {
    const s = this.velocityStep;
    return [b.qvel[0] * s, b.qvel[1] * s, b.qvel[2] * s];
  }
}
