// A view's bodies rebuilt from frames: the JavaScript twin of streams/gateway/replica.py
// (same rules: a snapshot replaces everything; a delta must follow the tick held).

export class OutOfOrder extends Error {}

export class Replica {
  constructor() {
    this.reset();
  }

  reset() {
    this.bodies = new Map(); // id -> {id, kind, mass, radius, qpos: [3], qvel: [3]}
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
    } else if (frame.baseTick !== this.tick) {
      throw new OutOfOrder(`frame based on tick ${frame.baseTick}, replica at ${this.tick}`);
    }
    for (const id of frame.leave) {
      if (!this.bodies.delete(id)) throw new OutOfOrder(`leave of body ${id}, not held`);
      left.push(id);
    }
    const e = frame.enter;
    if (e) {
      for (let i = 0; i < e.ids.length; i++) {
        const id = e.ids[i];
        // A body that enters again (a merger changed its mass or radius) replaces itself.
        if (this.bodies.has(id)) left.push(id);
        this.bodies.set(id, {
          id, kind: e.kinds[i], mass: e.masses[i], radius: e.radii[i],
          qpos: [e.positions[3 * i], e.positions[3 * i + 1], e.positions[3 * i + 2]],
          qvel: [e.velocities[3 * i], e.velocities[3 * i + 1], e.velocities[3 * i + 2]],
        });
        entered.push(id);
      }
    }
    const u = frame.update;
    if (u) {
      let id = 0;
      const dp = u.positionDeltas;
      const dv = u.velocityDeltas;
      for (let i = 0; i < u.idSteps.length; i++) {
        id += u.idSteps[i];
        const b = this.bodies.get(id);
        if (b === undefined) throw new OutOfOrder(`update of body ${id}, not held`);
        b.qpos[0] += dp[3 * i]; b.qpos[1] += dp[3 * i + 1]; b.qpos[2] += dp[3 * i + 2];
        b.qvel[0] += dv[3 * i]; b.qvel[1] += dv[3 * i + 1]; b.qvel[2] += dv[3 * i + 2];
      }
    }
    this.tick = frame.tick;
    this.simTime = frame.simTime;
    return { entered, left };
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
