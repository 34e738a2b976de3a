"""The gateway's three faces, fuzzed: whatever a client sends ends as a status the
error table documents (:data:`streams.gateway.errors.STATUS`), within a bound, and the
gateway goes on serving everyone else.

One gateway for the module, as the service assembles it (gRPC server, aiohttp app
with the WebSocket, REST and accounts routes, the problem middleware) over a
:class:`~streams.gateway.testing.SyntheticWorld` and an in-memory command log: no
Kafka, so this runs with the unit tests. Three settings differ from a deployment's,
and why: the per-player command limits are lifted (else a fuzzer's inputs would mostly
stop at RESOURCE_EXHAUSTED, before the validation they are meant to reach), an outcome
wait is at most 0.25 s (so that each input is answered within the bound), and tokens
last a day (a full run outlasts the default five minutes).
The accounts routes' store points at a closed port: their bodies are parsed and
checked as in production, and whatever passes that ends as 503 (the store is
unavailable) instead of writing fuzzed accounts into a database.

- gRPC: raw bytes and mutated valid requests for every unary method and Subscribe,
  and fuzzed ``authorization`` metadata: OK or a documented status, never INTERNAL
  and never the client's deadline.
- WebSocket: binary (raw, mutated valid ``ClientMessage``) and text messages, before
  and after a subscribe, on a socket opened with a valid token, and fuzzed tokens:
  the socket is closed with a documented code, or still sends frames.
- REST: every route of rest.py and accounts_face.py with fuzzed JSON bodies (any
  JSON, mutated valid bodies, raw bytes), content types, path segments, query
  parameters and headers, and raw mutated requests: an HTTP status, a problem
  document for every error, never a 500.

After each strategy a second player's valid requests are answered correctly.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import grpc
import pytest
from aiohttp import web
from argon2 import PasswordHasher
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from cosmic.settings import GatewaySettings, PostgresSettings, SecuritySettings, Settings
from schemas import models
from streams.gateway import accounts_face, grpc_face, rest, ws_face
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.core import GatewayCore
from streams.gateway.errors import STATUS
from streams.gateway.replica import Replica
from streams.gateway.testing import SyntheticWorld, TestAuth
from streams.security.accounts import AccountStore
from tests.fuzz.conftest import PROFILE
from tests.fuzz.mutations import mutated

# A full run's 10,000 WebSocket connections take longer than the suite's 300 s a test.
pytestmark = pytest.mark.timeout(3600 if PROFILE == "fuzz-full" else 300)
T = TypeVar("T")
BOUND_S = 5.0  # every input is answered within this
GRPC_CODES = {s.grpc for _, s in STATUS}
WS_CLOSES = {s.ws_close for _, s in STATUS}
SETTINGS = GatewaySettings(position_step=1e-3, velocity_step=1e-3, client_bytes_per_s=10**9,
                           max_outcome_wait_s=0.25)
# Why these differ from a deployment's: the module's docstring.
SECURITY = SecuritySettings(allow_dev_hs256=True, commands_per_s=1e9, command_burst=10**9,
                            world_creations_per_hour=1e9, world_creation_burst=10**9,
                            token_lifetime_s=24 * 3600)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """The faces on a loop of their own (a thread), called from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.appended: list[models.PlayerCommand] = []
        self.auth = TestAuth(SECURITY)
        self.core = GatewayCore(SETTINGS, self._append, self.auth.guard)
        self.world = SyntheticWorld(9, n=150)
        self.alice = self.auth.token("alice")  # the fuzzer
        self.bob = self.auth.token("bob")  # the client that must still be served
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = BOUND_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _append(self, command: models.PlayerCommand, avro: bytes | None
                      ) -> tuple[int, int]:
        self.appended.append(command)
        return 0, len(self.appended) - 1

    async def step(self) -> None:
        self.core.publish(self.world.step())

    async def _start(self) -> None:
        await self.step()
        self.grpc_server, grpc_port = await grpc_face.serve(self.core, "127.0.0.1", 0)
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        app = web.Application(client_max_size=SETTINGS.max_message_bytes,
                              middlewares=[rest.problems])
        ws_face.setup(app, self.core)
        store = AccountStore(
            Settings(postgres=PostgresSettings(port=_closed_port(), password=SecretStr("x"))),
            self.auth.keys, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        app.add_routes(accounts_face.routes(store, self.auth.guard) + rest.routes(
            self.core, rest.document(accounts_face.OPENAPI_PATHS,
                                     accounts_face.OPENAPI_SCHEMAS)))
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.session = aiohttp.ClientSession()
        # The gRPC client is on the gateway's loop too (grpc.aio beside a blocking channel
        # in one process is not a combination grpc supports well).
        self.channel = grpc.aio.insecure_channel(self.grpc_target)

    async def _stop(self) -> None:
        await self.channel.close()
        await self.session.close()
        await self.grpc_server.stop(None)
        await self.runner.cleanup()
        # What the server had left (handlers of connections a fuzzed request dropped).
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    def close(self) -> None:
        self.run(self._stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


GW: Gateway | None = None


@pytest.fixture(scope="module", autouse=True)
def gateway() -> Iterator[Gateway]:
    global GW
    GW = Gateway()
    try:
        yield GW
    finally:
        GW.close()
        GW = None


def gw() -> Gateway:
    assert GW is not None
    return GW


# gRPC.


def _ident(b: bytes) -> bytes:
    return b


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _unary(name: str, data: bytes, metadata: tuple[tuple[str, str], ...]) -> bytes:
    call = gw().channel.unary_unary(f"/{grpc_face.SERVICE}/{name}", request_serializer=_ident,
                                    response_deserializer=_ident)
    reply: bytes = await call(data, metadata=metadata, timeout=BOUND_S)
    return reply


async def _first(data: bytes, metadata: tuple[tuple[str, str], ...]) -> bytes:
    call = gw().channel.unary_stream(f"/{grpc_face.SERVICE}/Subscribe",
                                     request_serializer=_ident, response_deserializer=_ident)
    stream = call(data, metadata=metadata, timeout=BOUND_S)
    try:
        frame = await stream.read()
        assert isinstance(frame, bytes), "a subscription ended OK before its first frame"
        return frame
    finally:
        stream.cancel()


def grpc_call(name: str, data: bytes, metadata: tuple[tuple[str, str], ...] | None = None
              ) -> bytes:
    """A unary call's reply, or its RpcError; within the bound or the deadline says so."""
    return gw().run(_unary(name, data, metadata or _metadata(gw().alice)), BOUND_S + 1)


def grpc_first_frame(data: bytes, metadata: tuple[tuple[str, str], ...] | None = None
                     ) -> bytes:
    """Subscribe's first frame (the stream is then cancelled), or its RpcError."""
    return gw().run(_first(data, metadata or _metadata(gw().alice)), BOUND_S + 1)


def documented(exc: grpc.aio.AioRpcError) -> None:
    code = exc.code()
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED, "no answer within the bound"
    assert code in GRPC_CODES, f"undocumented status {code}: {exc.details()}"


def _view(radius: float = 5.0) -> pb.View:
    return pb.View(center=pb.Vec3(x=1.0, y=-0.5, z=0.25), radius=radius)


def _subscribe(world: str = "w") -> pb.SubscribeRequest:
    return pb.SubscribeRequest(world_id=world, view=_view())


_SPAWN = {"type": "SpawnBody", "body_id": 900, "kind": "ASTEROID", "mass": 1e-9,
          "radius": 1e-6, "position": {"x": 1, "y": 2, "z": 3},
          "velocity": {"x": 0, "y": 0.1, "z": 0}}
GRPC_VALID: dict[str, list[bytes]] = {
    "SubmitCommand": [pb.SubmitCommandRequest(
        world_id="w", player_id="alice", command_id=str(uuid.UUID(int=7)),
        command_json=json.dumps(c)).SerializeToString() for c in (
            _SPAWN, {"type": "RemoveBody", "body_id": 3},
            {"type": "ApplyImpulse", "body_id": 4, "dv": {"x": 0.1, "y": 0, "z": 0}})],
    "GetOutcome": [pb.GetOutcomeRequest(command_id=str(uuid.UUID(int=7)), wait_ms=50)
                   .SerializeToString()],
    "GetSnapshot": [_subscribe().SerializeToString(), pb.SubscribeRequest(
        world_id="w", view=pb.View(box=pb.Box(min=pb.Vec3(x=-1, y=-1, z=-1),
                                              max=pb.Vec3(x=1, y=1, z=1))),
        encoding=pb.PREDICTED).SerializeToString()],
    "ListWorlds": [b""],
    "MoveView": [pb.MoveViewRequest(subscription_id="0" * 32, view=_view())
                 .SerializeToString()],
    "Subscribe": [_subscribe().SerializeToString(), pb.SubscribeRequest(
        world_id="w", view=_view(50), session="s" * 16, resume_tick=1, max_bytes_per_s=5000)
        .SerializeToString()],
}
METHODS = sorted(GRPC_VALID)


def grpc_any(name: str, data: bytes, metadata: tuple[tuple[str, str], ...] | None = None
             ) -> None:
    try:
        if name == "Subscribe":
            pb.Frame.FromString(grpc_first_frame(data, metadata))
        else:
            grpc_call(name, data, metadata)
        event(f"{name}: OK")
    except grpc.aio.AioRpcError as exc:
        documented(exc)
        event(f"{name}: {exc.code().name}")


def grpc_still_serving() -> None:
    meta = _metadata(gw().bob)
    worlds = pb.ListWorldsReply.FromString(grpc_call("ListWorlds", b"", meta))
    assert [w.world_id for w in worlds.worlds] == ["w"]
    snap = pb.Frame.FromString(grpc_call("GetSnapshot", _subscribe().SerializeToString(), meta))
    assert snap.snapshot and snap.tick == gw().world.tick
    first = pb.Frame.FromString(grpc_first_frame(_subscribe().SerializeToString(), meta))
    assert first.snapshot
    command = pb.SubmitCommandRequest(world_id="w", command_json='{"type": "RemoveBody", '
                                      '"body_id": 5}')
    reply = pb.SubmitCommandReply.FromString(grpc_call("SubmitCommand",
                                                       command.SerializeToString(), meta))
    assert str(gw().appended[reply.offset].command_id) == reply.command_id


@settings.get_profile(PROFILE)
@given(name=st.sampled_from(METHODS), data=st.data())
def _fuzz_grpc_messages(name: str, data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from(GRPC_VALID[name]).flatmap(mutated)
                    | st.binary(max_size=256), label="request")
    grpc_any(name, raw)


def test_grpc_messages_get_a_documented_status() -> None:
    _fuzz_grpc_messages()
    grpc_still_serving()


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
# JSON of every shape, and objects with the fields commands and accounts have.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=30)
BODY_OBJECT = st.fixed_dictionaries({}, optional={
    "body_id": st.integers(), "kind": st.sampled_from(rest.KINDS) | st.text(max_size=8),
    "mass": st.floats(), "radius": st.floats(), "position": JSON, "velocity": JSON,
    "dv": st.fixed_dictionaries({k: st.floats() | st.integers() for k in "xyz"}) | JSON,
    "username": st.text(max_size=70), "password": st.text(max_size=200),
    "refresh_token": st.text(max_size=60)})
COMMAND_FIELDS = st.fixed_dictionaries({}, optional={
    "new_owner": st.text(max_size=70), "G": st.floats(), "softening": st.floats(),
    "tick_rate_hz": st.integers(), "dt": st.floats(), "merge_on_contact": st.booleans(),
    "snapshot_every": st.integers()})


@settings.get_profile(PROFILE)
@given(name=st.sampled_from(METHODS), value=HEADER_TEXT | st.sampled_from(["Bearer", "Bearer "])
       | HEADER_TEXT.map(lambda t: "Bearer " + t))
def _fuzz_grpc_tokens(name: str, value: str) -> None:
    grpc_any(name, GRPC_VALID[name][0], (("authorization", value),))


def test_grpc_authorization_metadata_gets_a_documented_status() -> None:
    _fuzz_grpc_tokens()
    grpc_still_serving()


COMMAND_TYPES = ["SpawnBody", "ApplyImpulse", "RemoveBody", "TransferBody", "SetWorldParams"]


@settings.get_profile(PROFILE)
@given(command=st.one_of(
    st.builds(lambda t, body: {**body, "type": t}, st.sampled_from(COMMAND_TYPES),
              BODY_OBJECT | COMMAND_FIELDS),
    JSON),
    world_id=st.just("w") | st.text(max_size=40),
    command_id=st.one_of(st.just(""), st.uuids().map(str), st.just(""), st.text(max_size=40)),
    player_id=st.one_of(st.just(""), st.just("alice"), st.just(""), st.text(max_size=10)))
def _fuzz_grpc_commands(command: object, world_id: str, command_id: str, player_id: str
                        ) -> None:
    request = pb.SubmitCommandRequest(world_id=world_id, player_id=player_id,
                                      command_id=command_id, command_json=json.dumps(command))
    grpc_any("SubmitCommand", request.SerializeToString())


def test_grpc_commands_are_admitted_or_refused_with_a_documented_status() -> None:
    _fuzz_grpc_commands()
    grpc_still_serving()


# WebSocket.


def _ws_url(token: str | None) -> str:
    query = "" if token is None else "?" + urllib.parse.urlencode({"token": token})
    return f"http://127.0.0.1:{gw().http_port}/ws{query}"


SUBSCRIBE_MSG = pb.ClientMessage(subscribe=_subscribe()).SerializeToString()
PROBE_MSG = pb.ClientMessage(move=_view(1e9)).SerializeToString()  # every body
WS_VALID = [SUBSCRIBE_MSG, PROBE_MSG,
            pb.ClientMessage(move=pb.View(box=pb.Box(min=pb.Vec3(x=-3), max=pb.Vec3(x=3))))
            .SerializeToString(),
            pb.ClientMessage(subscribe=pb.SubscribeRequest(
                world_id="w", view=_view(), session="x" * 20, resume_tick=2,
                encoding=pb.PREDICTED)).SerializeToString()]


async def _ws_outcome(messages: list[bytes | str], subscribed: bool, token: str | None
                      ) -> tuple[str, int | None]:
    """("frames", None) when the socket still serves after ``messages`` (a probe: a valid
    move, then a new tick), else ("closed", close code)."""
    async with gw().session.ws_connect(_ws_url(token)) as ws:
        if subscribed:
            await ws.send_bytes(SUBSCRIBE_MSG)
            assert (await ws.receive()).type == aiohttp.WSMsgType.BINARY
        try:
            for m in messages:
                await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
            await ws.send_bytes(PROBE_MSG if subscribed else SUBSCRIBE_MSG)
        except ConnectionError:
            pass  # closed already: the code says why
        await gw().step()
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                pb.Frame.FromString(msg.data)
                return "frames", None
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED):
                return "closed", ws.close_code


def ws_answered(messages: list[bytes | str], subscribed: bool, token: str | None = None
                ) -> tuple[str, int | None]:
    try:
        outcome = gw().run(asyncio.wait_for(_ws_outcome(
            messages, subscribed, gw().alice if token is None else token), BOUND_S),
            BOUND_S + 1)
    except TimeoutError:
        pytest.fail(f"no close and no frame within {BOUND_S} s")
    if outcome[0] == "closed":
        assert outcome[1] in WS_CLOSES, f"undocumented close code {outcome[1]}"
    event(f"websocket: {outcome[0]} {outcome[1] or ''}")
    return outcome


def ws_still_serving() -> None:
    async def serve() -> int:
        async with gw().session.ws_connect(_ws_url(gw().bob)) as ws:
            await ws.send_bytes(SUBSCRIBE_MSG)
            replica = Replica()
            replica.apply(pb.Frame.FromString((await ws.receive()).data))
            await ws.send_bytes(PROBE_MSG)
            replica.apply(pb.Frame.FromString((await ws.receive()).data))
            return len(replica.bodies)
    bodies = gw().run(serve())
    assert bodies == len(gw().core.latest("w"))


WS_MESSAGE = (st.sampled_from(WS_VALID).flatmap(mutated) | st.binary(max_size=256)
              | st.text(max_size=100) | st.binary(min_size=SETTINGS.max_message_bytes - 2,
                                                  max_size=SETTINGS.max_message_bytes + 2))


@settings.get_profile(PROFILE)
@given(messages=st.lists(WS_MESSAGE, min_size=1, max_size=3), subscribed=st.booleans())
@example(messages=[b"\xff\xff not protobuf"], subscribed=True)
@example(messages=["a text frame"], subscribed=False)
def _fuzz_ws_messages(messages: list[bytes | str], subscribed: bool) -> None:
    ws_answered(messages, subscribed)


def test_websocket_messages_close_with_a_documented_code_or_are_served() -> None:
    _fuzz_ws_messages()
    ws_still_serving()


@settings.get_profile(PROFILE)
@given(token=st.text(max_size=300) | st.just(""))
def _fuzz_ws_tokens(token: str) -> None:
    kind, code = ws_answered([], subscribed=False, token=token)
    assert (kind, code) == ("closed", 4401)


def test_websocket_tokens_are_refused_with_4401() -> None:
    _fuzz_ws_tokens()
    ws_still_serving()


# REST.

ROUTES = [
    ("GET", "/api/v1/worlds"),
    ("GET", "/api/v1/worlds/{world_id}/bodies"),
    ("POST", "/api/v1/worlds/{world_id}/bodies"),
    ("PUT", "/api/v1/worlds/{world_id}/bodies/{body_id}"),
    ("DELETE", "/api/v1/worlds/{world_id}/bodies/{body_id}"),
    ("GET", "/api/v1/commands/{command_id}"),
    ("GET", "/openapi.json"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
]
_BODY = {k: v for k, v in _SPAWN.items() if k != "type"}
VALID_BODIES = [json.dumps(b).encode() for b in (
    _BODY, {"dv": {"x": 0.1, "y": 0, "z": 0}}, {"username": "fuzzer.one", "password": "x" * 12},
    {"refresh_token": "r" * 43})]
BODY = (JSON.map(lambda j: json.dumps(j).encode()) | BODY_OBJECT.map(
    lambda j: json.dumps(j).encode()) | st.sampled_from(VALID_BODIES).flatmap(mutated)
    | st.binary(max_size=200) | st.just(b""))
NUMBER_TEXT = (st.integers().map(str) | st.floats().map(str)
               | st.sampled_from(["", "nan", "-inf", "1e999", "0x10", "1_000", " 5 ", "٣"]))
QUERY = st.dictionaries(st.sampled_from(["limit", "after", "radius", "cx", "cy", "cz",
                                         "wait_ms"]) | st.text(max_size=8),
                        NUMBER_TEXT | st.text(max_size=20), max_size=5)
SEGMENT = st.text(max_size=80) | st.integers().map(str) | st.integers(2**63 - 2, 2**66).map(str)
SEGMENTS = {"world_id": st.just("w") | SEGMENT,
            "body_id": st.sampled_from(["1", "2", "3"]) | SEGMENT,
            "command_id": st.uuids().map(str) | SEGMENT}
CONTENT_TYPE = st.sampled_from(["application/json", "application/problem+json", "text/plain",
                                "application/x-www-form-urlencoded", "multipart/form-data",
                                "application/json; charset=latin-1"]) | HEADER_TEXT


def http_exchange(method: str, path: str, body: bytes, headers: dict[str, str]
                  ) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw().http_port, timeout=BOUND_S)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    except TimeoutError:
        pytest.fail(f"{method} {path}: no answer within {BOUND_S} s")
    finally:
        conn.close()


def problem_or_success(status: int, ctype: str, body: bytes) -> None:
    event(f"HTTP {status}")
    assert status != 500, f"a 500: {body[:300]!r}"
    assert 200 <= status < 600
    if status >= 400:
        assert ctype.startswith("application/problem+json"), (status, ctype, body[:200])
        assert json.loads(body)["status"] == status


ALICE = "{alice}"  # the fuzzer's token, put in when the request is sent


@settings.get_profile(PROFILE)
@given(route=st.sampled_from(ROUTES), world_id=SEGMENTS["world_id"],
       body_id=SEGMENTS["body_id"], command_id=SEGMENTS["command_id"], query=QUERY, body=BODY,
       authorization=st.just(f"Bearer {ALICE}") | HEADER_TEXT, content_type=CONTENT_TYPE,
       command_header=st.none() | st.uuids().map(str) | HEADER_TEXT)
@example(route=ROUTES[4], world_id="w", body_id=str(2**64), command_id="", query={}, body=b"",
         authorization=f"Bearer {ALICE}", content_type="application/json",
         command_header=None)  # was a 500: a body id beyond int64 (its JSON cannot be written)
@example(route=ROUTES[3], world_id="w", body_id=str(-(2**63) - 1), command_id="", query={},
         body=VALID_BODIES[1], authorization=f"Bearer {ALICE}",
         content_type="application/json", command_header=None)
def _fuzz_rest(route: tuple[str, str], world_id: str, body_id: str, command_id: str,
               query: dict[str, str], body: bytes, authorization: str, content_type: str,
               command_header: str | None) -> None:
    method, template = route
    path = template.format(**{k: urllib.parse.quote(v, safe="") for k, v in (
        ("world_id", world_id), ("body_id", body_id), ("command_id", command_id))})
    if query:
        path += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": authorization.replace(ALICE, gw().alice),
               "Content-Type": content_type}
    if command_header:
        headers["Command-Id"] = command_header
    problem_or_success(*http_exchange(method, path, body if method in ("POST", "PUT") else b"",
                                      headers))


def rest_still_serving() -> None:
    auth = {"Authorization": f"Bearer {gw().bob}"}
    status, _, body = http_exchange("GET", "/api/v1/worlds/w/bodies?limit=1000", b"", auth)
    page = json.loads(body)
    assert status == 200 and len(page["bodies"]) == len(gw().core.latest("w"))
    status, _, body = http_exchange("POST", "/api/v1/worlds/w/bodies", VALID_BODIES[0],
                                    {**auth, "Content-Type": "application/json"})
    assert status == 202, body
    assert str(gw().appended[json.loads(body)["offset"]].command_id) == json.loads(
        body)["command_id"]


def test_rest_requests_get_a_status_and_a_problem_document() -> None:
    _fuzz_rest()
    rest_still_serving()


def _raw_request(method: str, path: str, body: bytes) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {{token}}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


RAW_VALID = [_raw_request("POST", "/api/v1/worlds/w/bodies", VALID_BODIES[0]),
             _raw_request("PUT", "/api/v1/worlds/w/bodies/2", VALID_BODIES[1]),
             _raw_request("GET", "/api/v1/worlds/w/bodies?limit=5&radius=3&cx=1", b""),
             _raw_request("POST", "/api/v1/auth/login", VALID_BODIES[2])]


def raw_exchange(raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gw().http_port), timeout=BOUND_S) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pytest.fail(f"no answer (nor a close) within {BOUND_S} s")
        except ConnectionResetError:
            pass  # a request it could not parse may be dropped: the status line says
    return data


@settings.get_profile(PROFILE)
@given(raw=st.sampled_from(RAW_VALID).flatmap(mutated))
def _fuzz_raw_http(raw: bytes) -> None:
    raw = raw.replace(b"{token}", gw().alice.encode())
    reply = raw_exchange(raw)
    if not reply:
        return  # closed without an answer: only for bytes that are not a request
    assert reply.startswith(b"HTTP/"), reply[:200]  # 1.x, or 0.9 for a line without one
    status = int(reply.split(b" ", 2)[1])
    assert status != 500 and 200 <= status < 600, reply[:300]


def test_raw_http_requests_get_a_status() -> None:
    _fuzz_raw_http()
    rest_still_serving()
