"""The accounts routes of the REST face (:mod:`streams.security.accounts` behind them).

- ``POST /api/v1/auth/register`` ``{"username", "password"}``: 201 ``{"player_id"}``.
- ``POST /api/v1/auth/login`` ``{"username", "password"}``: 200 with an access token
  (``Authorization: Bearer`` on every other call) and a refresh token.
- ``POST /api/v1/auth/refresh`` ``{"refresh_token"}``: 200 with the next pair; the
  old refresh token is spent (presenting it again revokes the login).
- ``POST /api/v1/auth/logout`` ``{"refresh_token"}``: 204; the login's refresh tokens
  are revoked (its access tokens end with their short lifetime).

Log-in attempts are limited per username (5 at once, then one per 10 s) and per
client address (30, then one a second), registrations per client address (20, then
one a second); every call is an audit record.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from schemas.models import Role
from streams.security.accounts import AccountStore, TokenPair
from streams.security.ratelimit import Buckets
from streams.security.tokens import Identity

from .errors import BadRequest
from .guard import Guard, outcome_of
from .rest import _json, _ok, _problems, caller_of


class AccountsFace:
    def __init__(self, store: AccountStore, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self.per_user = Buckets(0.1, 5, what="log-in attempts")
        self.per_peer = Buckets(1.0, 30, what="log-in attempts")
        self.registrations = Buckets(1.0, 20, what="registrations")

    async def _body(self, request: web.Request, *fields: str) -> list[str]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise BadRequest("the body must be JSON") from None
        if not isinstance(body, dict) or set(body) != set(fields):
            raise BadRequest(f"the body is an object with exactly {', '.join(fields)}")
        values = [body[f] for f in fields]
        if not all(isinstance(v, str) for v in values):
            raise BadRequest(f"{', '.join(fields)} are strings")
        return values

    async def _audited(self, request: web.Request, action: str, work: Any) -> web.Response:
        caller = caller_of(request)
        try:
            response, identity = await work(caller)
        except Exception as exc:
            self.guard.record(caller, action, outcome_of(exc), None, str(exc))
            raise
        self.guard.record(caller, action, "ADMITTED", identity)
        return response

    async def register(self, request: web.Request) -> web.Response:
        async def work(caller: Any) -> tuple[web.Response, Identity]:
            username, password = await self._body(request, "username", "password")
            self.registrations.take(caller.peer)
            player_id = await self.store.register(username, password)
            return _json({"player_id": player_id}, status=201), _who(player_id, Role.PLAYER)
        return await self._audited(request, "register", work)

    async def login(self, request: web.Request) -> web.Response:
        async def work(caller: Any) -> tuple[web.Response, Identity]:
            username, password = await self._body(request, "username", "password")
            self.per_peer.take(caller.peer)
            self.per_user.take(username)
            return _pair(await self.store.login(username, password))
        return await self._audited(request, "login", work)

    async def refresh(self, request: web.Request) -> web.Response:
        async def work(caller: Any) -> tuple[web.Response, Identity]:
            (token,) = await self._body(request, "refresh_token")
            return _pair(await self.store.refresh(token))
        return await self._audited(request, "refresh", work)

    async def logout(self, request: web.Request) -> web.Response:
        async def work(caller: Any) -> tuple[web.Response, Identity | None]:
            (token,) = await self._body(request, "refresh_token")
            await self.store.logout(token)
            return web.Response(status=204), None
        return await self._audited(request, "logout", work)


def _who(player_id: str, role: Role) -> Identity:
    return Identity(player_id, role, "", "accounts", 0.0)


def _pair(pair: TokenPair) -> tuple[web.Response, Identity]:
    return _json(pair.to_json()), _who(pair.player_id, pair.role)


def routes(store: AccountStore, guard: Guard) -> list[web.RouteDef]:
    face = AccountsFace(store, guard)
    return [web.post("/api/v1/auth/register", face.register),
            web.post("/api/v1/auth/login", face.login),
            web.post("/api/v1/auth/refresh", face.refresh),
            web.post("/api/v1/auth/logout", face.logout)]


def _body_schema(*fields: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": list(fields), "additionalProperties": False,
        "properties": {f: {"type": "string"} for f in fields}}}}}


def _public(op: dict[str, Any]) -> dict[str, Any]:
    return {**op, "security": []}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/auth/register": {"post": _public({
        "operationId": "register", "requestBody": _body_schema("username", "password"),
        "responses": {**_ok(201, "Registered"), **_problems(400, 409, 422, 429, 503)}})},
    "/api/v1/auth/login": {"post": _public({
        "operationId": "login", "requestBody": _body_schema("username", "password"),
        "responses": {**_ok(200, "TokenPair"), **_problems(400, 401, 429, 503)}})},
    "/api/v1/auth/refresh": {"post": _public({
        "operationId": "refresh", "requestBody": _body_schema("refresh_token"),
        "responses": {**_ok(200, "TokenPair"), **_problems(400, 401, 503)}})},
    "/api/v1/auth/logout": {"post": _public({
        "operationId": "logout", "requestBody": _body_schema("refresh_token"),
        "responses": {"204": {"description": "logged out"}, **_problems(400, 401, 503)}})},
}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "Registered": {"type": "object", "required": ["player_id"],
                   "properties": {"player_id": {"type": "string"}}},
    "TokenPair": {"type": "object",
                  "required": ["access_token", "refresh_token", "token_type", "expires_in",
                               "player_id", "role"],
                  "properties": {"access_token": {"type": "string"},
                                 "refresh_token": {"type": "string"},
                                 "token_type": {"const": "Bearer"},
                                 "expires_in": {"type": "integer"},
                                 "player_id": {"type": "string"},
                                 "role": {"enum": [r.value for r in Role]}}},
}
