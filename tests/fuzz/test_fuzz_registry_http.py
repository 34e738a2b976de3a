"""The embedded registry's HTTP face, fuzzed: any request line, headers and body get an
HTTP response with a status (never a dropped connection or a hung handler), and the
server keeps answering well-formed requests afterwards."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.registry.core import Registry
from schemas.registry.server import RegistryHTTPServer, serve
from schemas.registry.store import MemoryStore
from tests.fuzz.conftest import PROFILE
from tests.fuzz.mutations import mutated

SERVER: RegistryHTTPServer | None = None


@pytest.fixture(scope="module", autouse=True)
def server() -> Iterator[RegistryHTTPServer]:
    global SERVER
    with serve(Registry(MemoryStore())) as srv:
        SERVER = srv
        yield srv
    SERVER = None


def _exchange(raw: bytes) -> bytes:
    assert SERVER is not None
    host, port = SERVER.server_address[:2]
    with socket.create_connection((str(host), port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # the request ends here, whatever it claimed
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if len(data) > 1 << 20:
                break
    return data


def _request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body


VALID = [
    _request("POST", "/subjects/fuzz-value/versions",
             json.dumps({"schema": json.dumps({"type": "record", "name": "R", "fields": [
                 {"name": "a", "type": "long"}]})}).encode(),
             {"Content-Type": "application/vnd.schemaregistry.v1+json", "Content-Length": "86"}),
    _request("PUT", "/config/fuzz-value", b'{"compatibility": "FULL"}',
             {"Content-Type": "application/json", "Content-Length": "25"}),
    _request("GET", "/schemas/ids/1", b"", {}),
    _request("DELETE", "/subjects/fuzz-value", b"", {}),
    _request("POST", "/compatibility/subjects/fuzz-value/versions/latest",
             b'{"schema": "\\"long\\""}', {"Content-Length": "22"}),
]


def _answered(reply: bytes) -> None:
    assert reply.startswith(b"HTTP/1."), f"no HTTP response: {reply[:200]!r}"
    status = int(reply.split(b" ", 2)[1])
    assert 200 <= status < 600


@settings.get_profile(PROFILE)
@given(raw=st.sampled_from(VALID).flatmap(mutated))
def test_a_mutated_request_gets_a_status(raw: bytes) -> None:
    reply = _exchange(raw)
    # A request line damaged beyond HTTP may be closed without a body; anything that
    # still starts like a request is answered.
    if raw[:4] in (b"POST", b"GET ", b"PUT ", b"DELE") and b"\r\n\r\n" in raw:
        _answered(reply)
    _answered(_exchange(VALID[2]))  # and the server still serves others


@settings.get_profile(PROFILE)
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                         max_leaves=30),
       path=st.sampled_from(["/subjects/f-value/versions", "/config/f-value", "/config",
                             "/compatibility/subjects/f-value/versions/latest"]),
       method=st.sampled_from(["POST", "PUT"]))
def test_any_json_body_gets_a_status(body: object, path: str, method: str) -> None:
    payload = json.dumps(body).encode()
    _answered(_exchange(_request(method, path, payload, {
        "Content-Type": "application/json", "Content-Length": str(len(payload))})))
