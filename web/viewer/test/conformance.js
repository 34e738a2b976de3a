// Replays frames through the viewer's decoder and replica, printing what the replica
// holds after each one: tests/unit/test_viewer_replica.py bundles this for Node and
// compares every line with streams/gateway/replica.py on the same frames.
//   node conformance.bundle.js FRAMES_FILE   (each frame: 4-byte little-endian length, bytes)
import { readFileSync } from "node:fs";
import { decodeFrame } from "../src/protocol.js";
import { Replica } from "../src/replica.js";

const data = readFileSync(process.argv[2]);
const replica = new Replica();
for (let at = 0; at < data.length;) {
  const n = data.readUInt32LE(at);
  const frame = decodeFrame(data.subarray(at + 4, at + 4 + n));
  at += 4 + n;
  const changes = replica.apply(frame);
  const ids = [...replica.bodies.keys()].sort((a, b) => a - b);
  const bodies = ids.map((id) => {
    const b = replica.bodies.get(id);
    return [id, b.kind, b.mass, b.radius, ...b.qpos, ...b.qvel];
  });
  process.stdout.write(`${JSON.stringify({
    tick: replica.tick, simTime: replica.simTime, bodies,
    entered: [...changes.entered].sort((a, b) => a - b),
    left: [...changes.left].sort((a, b) => a - b),
  })}\n`);
}
