// One WebSocket subscription that survives the gateway going away. Every (re)connect
// names this page's session and the tick it last applied, so a gateway that still holds
// the session answers with a delta from that tick instead of a whole snapshot; a gateway
// that does not (it was restarted) answers with a snapshot, which the replica takes as
// it takes any other.
import { OutOfOrder } from "./replica.js";
import { decodeFrame, moveMessage, subscribeMessage } from "./protocol.js";

// Short and capped: after a gateway restart the page should be back within a few
// seconds, and one attempt a second costs the gateway nothing.
const BACKOFF_MS = [100, 250, 500, 1000];
const MOVE_EVERY_MS = 100;

function randomSession() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Connection {
  // url(): where to connect now (it carries the token, which may change);
  // onFrame(frame, changes, bytes) after each applied frame; onState(state, detail).
  constructor({ url, replica, onFrame, onState }) {
    this.url = url;
    this.replica = replica;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.worldId = null;
    this.view = null;
    this.attempt = 0;
    this.timer = null;
    this.moveTimer = null;
    this.lastMoveSent = 0;
    this.counts = { connects: 0, resumed: 0, snapshots: 0, frames: 0 };
    this.firstFrame = true;
  }

  // Watch a world (a new session: nothing to resume from another world).
  open(worldId, view) {
    this.close();
    this.worldId = worldId;
    this.view = view;
    this.session = randomSession();
    this.replica.reset();
    this.connect();
  }

  close() {
    clearTimeout(this.timer);
    clearTimeout(this.moveTimer);
    this.timer = this.moveTimer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = null;
      ws.close();
    }
  }

  // Drop the socket as a network failure would (the tests use this to prove resuming).
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the viewer");
  }

  connect() {
    this.onState(this.counts.connects ? "reconnecting" : "connecting", "");
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.firstFrame = true;
      ws.send(subscribeMessage({
        worldId: this.worldId, center: this.view.center, radius: this.view.radius,
        session: this.session, resumeTick: this.replica.tick,
      }));
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const why = ev.reason ? `${ev.code} ${ev.reason}` : `${ev.code}`;
      this.onState("disconnected", why);
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt++;
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  receive(data) {
    const bytes = new Uint8Array(data);
    const frame = decodeFrame(bytes);
    let changes;
    try {
      changes = this.replica.apply(frame);
    } catch (err) {
      if (!(err instanceof OutOfOrder)) throw err;
      // Nothing to build on: start over with a snapshot (a fresh session).
      this.session = randomSession();
      this.replica.reset();
      this.drop();
      return;
    }
    if (this.firstFrame) {
      this.firstFrame = false;
      this.attempt = 0;
      this.counts.connects++;
      if (!frame.snapshot) this.counts.resumed++;
      this.onState("live", frame.snapshot ? "snapshot" : `resumed from tick ${frame.baseTick}`);
    }
    if (frame.snapshot) this.counts.snapshots++;
    this.counts.frames++;
    this.onFrame(frame, changes, bytes.length);
  }

  // The camera moved: tell the gateway, at most every MOVE_EVERY_MS, always the latest.
  move(view) {
    this.view = view;
    if (this.moveTimer !== null) return;
    const wait = Math.max(0, this.lastMoveSent + MOVE_EVERY_MS - performance.now());
    this.moveTimer = setTimeout(() => {
      this.moveTimer = null;
      this.lastMoveSent = performance.now();
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(moveMessage(this.view.center, this.view.radius));
      }
    }, wait);
  }
}
