// The gateway's REST API as the viewer uses it. Every call carries the bearer token
// when one is set; every refusal is turned into one line a person can read, from the
// problem document's `detail` when the gateway sent one.

// A random (version 4) UUID. crypto.randomUUID exists only in secure contexts, and a
// gateway may well be opened over plain http on a LAN address.
function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class Refused extends Error {
  constructor(status, problem) {
    const what = problem && (problem.detail || problem.title);
    super(what ? `${what} (${status})` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export class Api {
  constructor(base, token) {
    this.base = base;
    this.token = token; // () => the current token, or ""
  }

  async call(method, path, body, extra = {}) {
    const headers = { Accept: "application/json, application/problem+json", ...extra };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(this.base + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!resp.ok) throw new Refused(resp.status, json);
    return json;
  }

  worlds() {
    return this.call("GET", "/api/v1/worlds");
  }

  // Commands name themselves (Command-Id), so a retried request is applied once.
  nudge(world, bodyId, dv) {
    return this.call("PUT", `/api/v1/worlds/${encodeURIComponent(world)}/bodies/${bodyId}`,
      { dv: { x: dv[0], y: dv[1], z: dv[2] } }, { "Command-Id": uuid4() });
  }

  spawn(world, body) {
    return this.call("POST", `/api/v1/worlds/${encodeURIComponent(world)}/bodies`, body,
      { "Command-Id": uuid4() });
  }

  // The gateway holds the answer back up to wait_ms while the command is pending.
  command(commandId, waitMs = 1000) {
    return this.call("GET", `/api/v1/commands/${encodeURIComponent(commandId)}?wait_ms=${waitMs}`);
  }

  // Follow a submitted command to its outcome: onUpdate(text, kind) with kind one of
  // "pending", "applied", "rejected", "unknown". A gateway without the outcome endpoint
  // (its 404 is about the route, not the command) is reported once and not asked again.
  async follow(commandId, onUpdate, { everyMs = 100, forMs = 15000 } = {}) {
    const until = performance.now() + forMs;
    while (performance.now() < until) {
      let outcome;
      try {
        outcome = await this.command(commandId);
      } catch (err) {
        if (err instanceof Refused && err.status === 404
            && (!err.problem || err.problem.type === "about:blank")) {
          onUpdate(`accepted as ${commandId.slice(0, 8)}; this gateway does not report outcomes`,
            "unknown");
          return;
        }
        if (!(err instanceof Refused && err.status === 404)) throw err;
        outcome = { state: "pending" };
      }
      if (outcome.state === "applied") {
        onUpdate(`applied at tick ${outcome.tick}`, "applied");
        return;
      }
      if (outcome.state === "rejected") {
        const why = [outcome.reason, outcome.message].filter(Boolean).join(": ");
        onUpdate(`refused at tick ${outcome.tick}: ${why}`, "rejected");
        return;
      }
      onUpdate(`submitted ${commandId.slice(0, 8)}, pending`, "pending");
      await new Promise((r) => setTimeout(r, everyMs));
    }
    onUpdate(`submitted ${commandId.slice(0, 8)}; no outcome after ${forMs / 1000} s`, "unknown");
  }
}
