"""The REST face: worlds and bodies as JSON, errors as ``application/problem+json``.

Routes (the OpenAPI document at ``/openapi.json`` is the reference):

- ``GET /api/v1/worlds``: the worlds this gateway knows.
- ``GET /api/v1/worlds/{world_id}/bodies``: a page of bodies at the latest tick,
  ids ascending (``limit``, ``after``), optionally within ``radius`` of
  ``cx, cy, cz``.
- ``POST /api/v1/worlds/{world_id}/bodies``: a ``SpawnBody`` command.
- ``PUT /api/v1/worlds/{world_id}/bodies/{body_id}`` with ``{"dv": {x, y, z}}``: an
  ``ApplyImpulse`` command (a nudge) for a body the world holds at the latest tick.
- ``DELETE /api/v1/worlds/{world_id}/bodies/{body_id}``: a ``RemoveBody`` command.
- ``GET /api/v1/commands/{command_id}``: what became of a command this gateway
  admitted (``pending``, ``applied`` at a tick, ``rejected`` and why), waiting up
  to ``wait_ms`` for a pending one.

Commands answer 202 with the command id: the outcome comes with the world's ticks.

Every route but ``/openapi.json`` takes ``Authorization: Bearer <token>``
(reads may go without where ``security.anonymous_watch`` is on); the sender
of a command is the token's player. Refusals are problems: 401, 403, 429
(with ``Retry-After``).
A ``Command-Id`` header (a UUID) names the command, so a retried request is
answered with the first one's offset and applied once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from cosmic.errors import CosmicError

from ._proto import gateway_pb2 as pb
from .core import GatewayCore, command_id_of
from .errors import (
    BadRequest,
    InvalidCommand,
    InvalidView,
    UnknownBody,
    is_refusal,
    retry_after,
    status_of,
)
from .guard import Caller, bearer, outcome_of
from .world import View

PROBLEM_BASE = "https://cosmicgarden.dev/problems/"
MAX_PAGE = 1000
KINDS = ("STAR", "PLANET", "MOON", "ASTEROID")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def problem(exc: BaseException) -> web.Response:
    s = status_of(exc)
    detail = str(exc) if is_refusal(exc) else "internal error"
    body: dict[str, Any] = {"type": PROBLEM_BASE + s.problem,
                            "title": s.problem.replace("-", " "), "status": s.http,
                            "detail": detail}
    headers = {}
    wait = retry_after(exc)
    if wait is not None:
        body["retry_after_s"] = round(wait, 3)
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    if s.http == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cosmic-garden"'
    return web.Response(body=orjson.dumps(body), status=s.http, headers=headers,
                        content_type="application/problem+json")


def caller_of(request: web.Request) -> Caller:
    remote = request.remote or ""
    return Caller("rest", bearer(request.headers.get("Authorization")), remote,
                  f"rest:{remote}")


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {"type": "about:blank", "title": exc.reason, "status": exc.status}
        return web.Response(body=orjson.dumps(body), status=exc.status,
                            content_type="application/problem+json")
    except Exception as exc:  # noqa: BLE001 - every error is a problem document
        return problem(exc)


def _number(request: web.Request, name: str, default: float | None = None) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} must be finite, got {raw!r}")
    return value


def _body_id(request: web.Request) -> int:
    try:
        body_id = int(request.match_info["body_id"])
    except ValueError:
        raise BadRequest("a body id is an integer") from None
    # Refused here, not by the models: a larger one cannot even be written as the
    # command's JSON (found by tests/fuzz/test_fuzz_gateway.py: it was a 500).
    if not -(2**63) <= body_id < 2**63:
        raise BadRequest("a body id is a 64-bit integer")
    return body_id


async def _object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


class RestFace:
    def __init__(self, core: GatewayCore, document: dict[str, Any] | None = None) -> None:
        self.core = core
        self.document = document or OPENAPI

    async def worlds(self, request: web.Request) -> web.Response:
        self.core.watch(caller_of(request))
        reply = self.core.worlds()
        return _json({"worlds": [
            {"world_id": w.world_id, "tick": w.tick, "sim_time": w.sim_time,
             "body_count": w.body_count} for w in reply.worlds]})

    async def bodies(self, request: web.Request) -> web.Response:
        self.core.watch(caller_of(request))
        tick = self.core.latest(request.match_info["world_id"])
        limit = int(_number(request, "limit", 100) or 0)
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be within 1..{MAX_PAGE}, got {limit}")
        after = _number(request, "after")
        select = np.ones(len(tick), bool)
        if after is not None:
            select &= tick.ids > after
        radius = _number(request, "radius")
        if radius is not None:
            center = tuple(_number(request, c, 0.0) or 0.0 for c in ("cx", "cy", "cz"))
            view = View((center[0], center[1], center[2]), radius)
            select &= np.linalg.norm(tick.positions - np.asarray(view.center), axis=1) <= radius
        elif any(c in request.query for c in ("cx", "cy", "cz")):
            raise InvalidView("a region needs a radius")
        idx = np.flatnonzero(select)[:limit + 1]
        more = len(idx) > limit
        idx = idx[:limit]
        vel = tick.qvelocities[idx] * tick.grid.velocity_step
        bodies = [{"id": int(tick.ids[i]), "kind": KINDS[int(tick.kinds[i])],
                   "mass": float(tick.masses[i]), "radius": float(tick.radii[i]),
                   "position": dict(zip("xyz", map(float, tick.positions[i]), strict=True)),
                   "velocity": dict(zip("xyz", map(float, v), strict=True))}
                  for i, v in zip(idx, vel, strict=True)]
        return _json({"world_id": tick.world_id, "tick": tick.tick, "bodies": bodies,
                      "next_after": bodies[-1]["id"] if more else None})

    async def spawn(self, request: web.Request) -> web.Response:
        with self._audited(request):
            body = await _object(request)
        return await self._submit(request, {**body, "type": "SpawnBody"})

    async def nudge(self, request: web.Request) -> web.Response:
        with self._audited(request):
            # Who asks first: whether a body exists is not for anonymous eyes.
            self.core.guard.authenticate(caller_of(request))
            body_id = _body_id(request)
            body = await _object(request)
            if extra := sorted(set(body) - {"dv"}):
                raise InvalidCommand(f"command refused: a nudge has only dv, not {extra}")
            # A nudge names an existing resource: refuse at once what the gateway can see
            # is absent (the worker checks again when it applies it, and may still reject it).
            tick = self.core.latest(request.match_info["world_id"])
            slot = int(np.searchsorted(tick.ids, body_id))
            if slot == len(tick) or tick.ids[slot] != body_id:
                raise UnknownBody(f"no body {body_id} in world {tick.world_id!r} at tick "
                                  f"{tick.tick}")
        return await self._submit(request, {**body, "type": "ApplyImpulse", "body_id": body_id})

    async def remove(self, request: web.Request) -> web.Response:
        with self._audited(request):
            body_id = _body_id(request)
        return await self._submit(request, {"type": "RemoveBody", "body_id": body_id})

    @contextlib.contextmanager
    def _audited(self, request: web.Request) -> Iterator[None]:
        """A request refused before it is a command is an attempt too: one audit record."""
        try:
            yield
        except CosmicError as exc:
            self.core.guard.record(caller_of(request), "submit", outcome_of(exc), None,
                                   str(exc), world_id=request.match_info["world_id"][:200])
            raise

    async def _submit(self, request: web.Request, command: dict[str, Any]) -> web.Response:
        command_id = request.headers.get("Command-Id", "")
        with self._audited(request):
            command_id = str(command_id_of(command_id)) if command_id else ""
        reply = await self.core.submit(pb.SubmitCommandRequest(
            world_id=request.match_info["world_id"],
            command_json=orjson.dumps(command).decode(), command_id=command_id),
            caller_of(request))
        return _json({"command_id": reply.command_id, "partition": reply.partition,
                      "offset": reply.offset}, status=202)

    async def outcome(self, request: web.Request) -> web.Response:
        wait_ms = _number(request, "wait_ms", 0.0) or 0.0
        if not (0 <= wait_ms <= 2**32 - 1 and wait_ms == int(wait_ms)):
            raise BadRequest(f"wait_ms must be a whole number of milliseconds >= 0, "
                             f"got {request.query['wait_ms']!r}")
        self.core.watch(caller_of(request))
        reply = await self.core.outcome(pb.GetOutcomeRequest(
            command_id=request.match_info["command_id"], wait_ms=int(wait_ms)))
        return _json({"command_id": reply.command_id,
                      "state": pb.CommandOutcome.State.Name(reply.state).lower(),
                      "tick": reply.tick if reply.HasField("tick") else None,
                      "reason": reply.reason or None, "message": reply.message or None})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(self.document)


def document(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with more operations (the accounts routes)."""
    components = OPENAPI["components"]
    return {**OPENAPI, "paths": {**OPENAPI["paths"], **paths},
            "components": {**components, "schemas": {**components["schemas"], **schemas}}}


def routes(core: GatewayCore, doc: dict[str, Any] | None = None) -> list[web.RouteDef]:
    face = RestFace(core, doc)
    return [
        web.get("/api/v1/worlds", face.worlds),
        web.get("/api/v1/worlds/{world_id}/bodies", face.bodies),
        web.post("/api/v1/worlds/{world_id}/bodies", face.spawn),
        web.put("/api/v1/worlds/{world_id}/bodies/{body_id}", face.nudge),
        web.delete("/api/v1/worlds/{world_id}/bodies/{body_id}", face.remove),
        web.get("/api/v1/commands/{command_id}", face.outcome),
        web.get("/openapi.json", face.openapi),
    ]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _vec() -> dict[str, Any]:
    return {"type": "object", "required": ["x", "y", "z"], "additionalProperties": False,
            "properties": {k: {"type": "number"} for k in "xyz"}}


def _problems(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "a problem", "content": {
        "application/problem+json": {"schema": _ref("Problem")}}} for c in codes}


def _ok(code: int, schema: str) -> dict[str, Any]:
    return {str(code): {"description": "ok", "content": {
        "application/json": {"schema": _ref(schema)}}}}


_WORLD = {"name": "world_id", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMAND_ID = {"name": "Command-Id", "in": "header", "required": False,
               "description": "Names the command (a UUID): a retry with the same id and body "
                              "is answered with the first request's offset, applied once.",
               "schema": {"type": "string", "format": "uuid"}}
_BODY = {"name": "body_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_QUERY = [{"name": n, "in": "query", "required": False, "schema": s} for n, s in (
    ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100}),
    ("after", {"type": "integer"}), ("cx", {"type": "number"}), ("cy", {"type": "number"}),
    ("cz", {"type": "number"}), ("radius", {"type": "number", "exclusiveMinimum": 0}))]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Cosmic Garden gateway", "version": "1"},
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/worlds": {"get": {
            "operationId": "listWorlds", "responses": {**_ok(200, "Worlds"), **_problems(401)}}},
        "/api/v1/worlds/{world_id}/bodies": {
            "get": {"operationId": "listBodies", "parameters": [_WORLD, *_QUERY],
                    "responses": {**_ok(200, "BodyPage"), **_problems(400, 401, 404)}},
            "post": {"operationId": "spawnBody", "parameters": [_WORLD, _COMMAND_ID],
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref("NewBody")}}},
                     "responses": {**_ok(202, "Accepted"), **_problems(400, 401, 403, 409, 422, 429, 503)}}},
        "/api/v1/worlds/{world_id}/bodies/{body_id}": {
            "put": {"operationId": "nudgeBody", "parameters": [_WORLD, _BODY, _COMMAND_ID],
                    "description": "Change a body's velocity by dv (an ApplyImpulse command).",
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": _ref("Impulse")}}},
                    "responses": {**_ok(202, "Accepted"),
                                  **_problems(400, 401, 403, 404, 409, 422, 429, 503)}},
            "delete": {"operationId": "removeBody", "parameters": [_WORLD, _BODY, _COMMAND_ID],
                       "responses": {**_ok(202, "Accepted"),
                                     **_problems(400, 401, 403, 409, 422, 429, 503)}}},
        "/api/v1/commands/{command_id}": {"get": {
            "operationId": "getCommandOutcome",
            "description": "What became of a command this gateway admitted: pending, applied "
                           "at a tick, or rejected with the worker's reason. 404 for an id "
                           "this gateway never admitted (or no longer remembers).",
            "parameters": [
                {"name": "command_id", "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid"}},
                {"name": "wait_ms", "in": "query", "required": False,
                 "description": "Wait this long for a pending command to be decided "
                                "(at most the gateway's limit, 30 s by default).",
                 "schema": {"type": "integer", "minimum": 0, "default": 0}}],
            "responses": {**_ok(200, "Outcome"), **_problems(400, 401, 404)}}},
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                   "bearerFormat": "JWT"}}, "schemas": {
        "Vec3": _vec(),
        "World": {"type": "object", "required": ["world_id", "tick", "sim_time", "body_count"],
                  "properties": {"world_id": {"type": "string"}, "tick": {"type": "integer"},
                                 "sim_time": {"type": "number"},
                                 "body_count": {"type": "integer"}}},
        "Worlds": {"type": "object", "required": ["worlds"],
                   "properties": {"worlds": {"type": "array", "items": _ref("World")}}},
        "Body": {"type": "object",
                 "required": ["id", "kind", "mass", "radius", "position", "velocity"],
                 "properties": {"id": {"type": "integer"}, "kind": {"enum": list(KINDS)},
                                "mass": {"type": "number"}, "radius": {"type": "number"},
                                "position": _ref("Vec3"), "velocity": _ref("Vec3")}},
        "BodyPage": {"type": "object", "required": ["world_id", "tick", "bodies", "next_after"],
                     "properties": {"world_id": {"type": "string"}, "tick": {"type": "integer"},
                                    "bodies": {"type": "array", "items": _ref("Body")},
                                    "next_after": {"type": ["integer", "null"]}}},
        "NewBody": {"type": "object",
                    "required": ["body_id", "kind", "mass", "radius", "position", "velocity"],
                    "properties": {"body_id": {"type": "integer"}, "kind": {"enum": list(KINDS)},
                                   "mass": {"type": "number", "exclusiveMinimum": 0},
                                   "radius": {"type": "number", "exclusiveMinimum": 0},
                                   "position": _ref("Vec3"), "velocity": _ref("Vec3")}},
        "Impulse": {"type": "object", "required": ["dv"], "additionalProperties": False,
                    "properties": {"dv": _ref("Vec3")}},
        "Accepted": {"type": "object", "required": ["command_id", "partition", "offset"],
                     "properties": {"command_id": {"type": "string", "format": "uuid"},
                                    "partition": {"type": "integer"},
                                    "offset": {"type": "integer"}}},
        "Outcome": {"type": "object", "additionalProperties": False,
                    "required": ["command_id", "state", "tick", "reason", "message"],
                    "properties": {
                        "command_id": {"type": "string", "format": "uuid"},
                        "state": {"enum": ["pending", "applied", "rejected"]},
                        "tick": {"type": ["integer", "null"], "minimum": 0,
                                 "description": "applied at, or considered at when rejected"},
                        "reason": {"type": ["string", "null"],
                                   "description": "a RejectReason symbol, e.g. UNKNOWN_BODY"},
                        "message": {"type": ["string", "null"]}}},
        "Problem": {"type": "object", "required": ["type", "title", "status"],
                    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                   "status": {"type": "integer"},
                                   "detail": {"type": "string"},
                                   "retry_after_s": {"type": "number"}}},
    }},
}
