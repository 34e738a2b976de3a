"""The embedded registry answers hostile HTTP with a status, never a dropped connection."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from schemas.registry import server as registry_server
from schemas.registry.core import Registry
from schemas.registry.server import RegistryHTTPServer, serve
from schemas.registry.store import MemoryStore

PATH = "/subjects/probe-value/versions"


@pytest.fixture
def server() -> Iterator[RegistryHTTPServer]:
    with serve(Registry(MemoryStore())) as srv:
        yield srv


def _exchange(server: RegistryHTTPServer, raw: bytes, timeout_s: float = 10.0) -> tuple[int, dict]:
    """Send raw bytes, read one response: (status, JSON body)."""
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=timeout_s) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a response: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
    return int(head.split()[1]), json.loads(rest[:length])


def _post(body: bytes, length: str | None = None) -> bytes:
    size = str(len(body)) if length is None else length
    return (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode() + body


def test_a_non_string_schema_type_is_a_422(server):
    status, body = _exchange(server, _post(json.dumps({"schema": "\"long\"", "schemaType": 7}).encode()))
    assert (status, body["error_code"]) == (422, 42201)
    assert "schemaType must be a string" in body["message"]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_a_bad_content_length_is_a_400_at_once(server, length):
    t0 = time.monotonic()
    status, body = _exchange(server, _post(b"{}", length=length))
    assert status == 400 and "Content-Length" in body["message"]
    assert time.monotonic() - t0 < 5  # answered, not left waiting for a body


def test_deeply_nested_json_is_a_400(server):
    nested = b"[" * 200_000 + b"]" * 200_000
    status, body = _exchange(server, _post(nested))
    assert status == 400 and "nested too deeply" in body["message"]


def test_a_deeply_nested_schema_is_a_422(server):
    schema = '{"type": "array", "items": ' * 5000 + '"long"' + "}" * 5000
    status, body = _exchange(server, _post(json.dumps({"schema": schema}).encode()))
    assert status == 422 and "nested too deeply" in body["message"]


def test_a_body_over_the_limit_is_a_413_without_reading_it(server):
    too_big = str(registry_server.MAX_BODY_BYTES + 1)
    status, body = _exchange(server, _post(b"", length=too_big))
    assert status == 413 and "over the limit" in body["message"]


def test_a_client_that_stalls_mid_body_is_let_go_and_others_are_served(server, monkeypatch):
    monkeypatch.setattr(registry_server._RequestHandler, "timeout", 0.5)
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=10) as stalled:
        stalled.sendall(_post(b"", length="100") + b'{"schema": ')  # and then nothing
        t0 = time.monotonic()
        assert stalled.recv(65536) == b""  # the server closed it
        assert time.monotonic() - t0 < 5
    status, _ = _exchange(server, b"GET /subjects HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
