"""The embedded schema registry: the Confluent REST API subset, over stdlib HTTP.

Serves the endpoints standard clients use (confluent-kafka's
``SchemaRegistryClient``, kcat, our :class:`~schemas.registry.client.RegistryClient`)
with Confluent's JSON shapes, error codes and content type. State lives in a
:class:`~schemas.registry.core.Registry`; storage is pluggable (memory for
tests, the compacted ``_schemas`` topic for the platform).

Run it with ``python -m schemas.registry.server`` (binds 127.0.0.1 on
``settings.registry.port``), or in-process::

    with serve(Registry(MemoryStore()), port=0) as server:
        url = server.url
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cosmic import logs, metrics, secrets
from cosmic.errors import ConfigError, CosmicError
from cosmic.settings import Settings, get_settings
from schemas.errors import BadRequest, InvalidSchema, RegistryError, Unauthorized
from schemas.registry.compatibility import ParsedSchema
from schemas.registry.core import Registry
from schemas.registry.metrics import RegistryMetrics
from schemas.registry.store import MemoryStore, Store

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# The largest request body accepted (a schema with thousands of fields is ~1 MB).
MAX_BODY_BYTES = 8 * 1024 * 1024
# A client that sends nothing for this long is dropped, so it cannot hold a thread.
READ_TIMEOUT_S = 30.0

Query = dict[str, str]
Body = dict[str, Any]
Handler = Callable[[Registry, list[str], Query, Body], Any]

_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Declare a handler for ``method`` on a path; ``{}`` matches one path segment."""
    regex = re.compile("^" + pattern.replace("{}", "([^/]+)") + "/?$")

    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, regex, fn))
        return fn

    return register


def _flag(query: Query, name: str) -> bool:
    return query.get(name, "false").lower() == "true"


def _schema_from(body: Body) -> ParsedSchema:
    schema_type = body.get("schemaType", "AVRO") or "AVRO"
    if not isinstance(schema_type, str):
        raise InvalidSchema(f"schemaType must be a string, not {type(schema_type).__name__}")
    if schema_type.upper() != "AVRO":
        raise InvalidSchema(f"schemaType {schema_type!r} is not supported by this registry; only AVRO")
    if body.get("references"):
        raise InvalidSchema("schema references are not supported by this registry")
    text = body.get("schema")
    if not isinstance(text, str):
        raise InvalidSchema("request body must have a 'schema' string")
    try:
        return ParsedSchema(text)
    except RecursionError:
        raise InvalidSchema("the schema is nested too deeply") from None


# -- subjects -----------------------------------------------------------------


@route("GET", "/subjects")
def _subjects(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.subjects(include_deleted=_flag(q, "deleted"))


@route("GET", "/subjects/{}/versions")
def _versions(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.versions(args[0], include_deleted=_flag(q, "deleted"))


@route("POST", "/subjects/{}/versions")
def _register(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {"id": reg.register(args[0], _schema_from(body)).id}


@route("GET", "/subjects/{}/versions/{}")
def _version(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.version(args[0], args[1], include_deleted=_flag(q, "deleted")).as_json()


@route("GET", "/subjects/{}/versions/{}/schema")
def _version_schema(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.version(args[0], args[1]).schema.raw


@route("DELETE", "/subjects/{}/versions/{}")
def _delete_version(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.delete_version(args[0], args[1], permanent=_flag(q, "permanent"))


@route("POST", "/subjects/{}")
def _lookup(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.lookup(args[0], _schema_from(body), include_deleted=_flag(q, "deleted")).as_json()


@route("DELETE", "/subjects/{}")
def _delete_subject(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.delete_subject(args[0], permanent=_flag(q, "permanent"))


# -- schemas by id ------------------------------------------------------------


def _id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1  # an id that never exists: answered with 40403 like any unknown id


@route("GET", "/schemas/ids/{}")
def _schema_by_id(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {"schema": reg.schema(_id(args[0])).text}


@route("GET", "/schemas/ids/{}/schema")
def _raw_schema_by_id(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return reg.schema(_id(args[0])).raw


@route("GET", "/schemas/ids/{}/versions")
def _id_versions(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return [{"subject": s, "version": v} for s, v in reg.usages(_id(args[0]))]


@route("GET", "/schemas/ids/{}/subjects")
def _id_subjects(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return sorted({s for s, _ in reg.usages(_id(args[0]))})


@route("GET", "/schemas/types")
def _types(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return ["AVRO"]


# -- compatibility and config -------------------------------------------------


def _compat_answer(problems: list[str], q: Query) -> Any:
    answer: dict[str, Any] = {"is_compatible": not problems}
    if _flag(q, "verbose"):
        answer["messages"] = problems
    return answer


@route("POST", "/compatibility/subjects/{}/versions/{}")
def _compat_version(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return _compat_answer(reg.problems(args[0], _schema_from(body), args[1]), q)


@route("POST", "/compatibility/subjects/{}/versions")
def _compat_all(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return _compat_answer(reg.problems(args[0], _schema_from(body)), q)


@route("GET", "/config")
def _get_config(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {"compatibilityLevel": reg.compatibility().value}


@route("PUT", "/config")
def _put_config(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {"compatibility": reg.set_compatibility(str(body.get("compatibility"))).value}


@route("GET", "/config/{}")
def _get_subject_config(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    if _flag(q, "defaultToGlobal"):
        return {"compatibilityLevel": reg.compatibility(args[0]).value}
    return {"compatibilityLevel": reg.own_compatibility(args[0]).value}


@route("PUT", "/config/{}")
def _put_subject_config(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {"compatibility": reg.set_compatibility(str(body.get("compatibility")), args[0]).value}


@route("DELETE", "/config/{}")
def _delete_subject_config(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {"compatibilityLevel": reg.delete_compatibility(args[0]).value}


@route("GET", "")
def _root(reg: Registry, args: list[str], q: Query, body: Body) -> Any:
    return {}


# -- HTTP plumbing ------------------------------------------------------------


class _RequestHandler(BaseHTTPRequestHandler):
    server: RegistryHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    # A request line without a (valid) version is answered as HTTP/1.0, with a status
    # line, instead of HTTP/0.9's bare body: no registry client speaks 0.9.
    default_request_version = "HTTP/1.0"
    timeout = READ_TIMEOUT_S  # socket timeout of every read: a stalled client is let go

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without NODELAY, Nagle plus
        # the client's delayed ACK add ~40 ms to every keep-alive response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _authorized(self, method: str) -> bool:
        """Reads are open; a write (POST, PUT, DELETE) needs the configured basic credentials."""
        expected = self.server.credentials
        if expected is None or method == "GET":
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Constant-time comparisons: a timing difference must not reveal a prefix.
        ok_user = hmac.compare_digest(user.encode(), expected[0].encode())
        ok_pass = hmac.compare_digest(password.encode(), expected[1].encode())
        return bool(sep) and ok_user and ok_pass

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        self._route, self._status = "unmatched", 0
        try:
            self._dispatch_timed(method)
        finally:
            self.server.metrics.observe(self._route, self._status, time.perf_counter() - started)

    def _dispatch_timed(self, method: str) -> None:
        if not self._authorized(method):
            # The body is not read: drop the connection rather than parse what follows it.
            self.close_connection = True
            self._route, self._status = "unauthorized", Unauthorized.STATUS
            data = json.dumps({"error_code": Unauthorized.CODE,
                               "message": "Unauthorized: writes need credentials"}).encode()
            self.send_response(Unauthorized.STATUS)
            self.send_header("WWW-Authenticate", 'Basic realm="cosmic schema registry"')
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/")
        if method == "GET" and path == "/metrics":
            self._route = "metrics"
            self._send_raw(HTTPStatus.OK, metrics.CONTENT_TYPE_LATEST, metrics.exposition(self.server.metrics))
            return
        try:
            body = self._body()
            for m, regex, handler in _ROUTES:
                match = regex.match(path)
                if match and m == method:
                    self._route = handler.__name__.lstrip("_")
                    args = [unquote(a) for a in match.groups()]
                    self._send(HTTPStatus.OK, handler(self.server.registry, args, query, body))
                    return
            self._send(HTTPStatus.NOT_FOUND, {"error_code": 404, "message": f"HTTP 404 Not Found: {method} {path}"})
        except RegistryError as exc:
            if isinstance(exc, BadRequest):
                self.close_connection = True  # the rest of the stream cannot be trusted
            self._send(exc.status or 500, {"error_code": exc.error_code or 50001, "message": str(exc)})
        except TimeoutError:
            self.close_connection = True  # the body never came: nothing to answer
        except Exception as exc:
            log.exception("registry: %s %s failed", method, path)
            self.close_connection = True
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error_code": 50001, "message": f"internal error: {type(exc).__name__}"})

    def _body(self) -> Body:
        header = self.headers.get("Content-Length") or "0"
        try:
            length = int(header)
        except ValueError:
            raise BadRequest(f"Content-Length {header[:40]!r} is not a number") from None
        if length < 0:
            raise BadRequest(f"Content-Length {length} is negative")
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"request body of {length} bytes is over the limit of "
                             f"{MAX_BODY_BYTES}", status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        if not length:
            return {}
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise BadRequest(f"request body ended after {len(raw)} of {length} bytes")
        try:
            body = json.loads(raw)
        except RecursionError:
            raise BadRequest("request body is nested too deeply") from None
        except ValueError:
            raise InvalidSchema("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidSchema("request body must be a JSON object")
        return body

    def _send(self, status: int, payload: Any) -> None:
        self._send_raw(status, CONTENT_TYPE, json.dumps(payload).encode())

    def _send_raw(self, status: int, content_type: str, data: bytes) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        # http.server's own refusals (a bad request line, an unsupported method) in the
        # registry's JSON error format, like every other answer.
        self.close_connection = True
        self._send(code, {"error_code": code, "message": message or explain or "bad request"})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class RegistryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: Registry, host: str = "127.0.0.1", port: int = 0,
                 credentials: tuple[str, str] | None = None) -> None:
        super().__init__((host, port), _RequestHandler)
        self.registry = registry
        self.metrics = RegistryMetrics(registry)
        # (user, password) every write must present; None: writes are open (tests'
        # in-process registries).
        self.credentials = credentials

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def serve(registry: Registry, host: str = "127.0.0.1", port: int = 0,
          credentials: tuple[str, str] | None = None) -> Iterator[RegistryHTTPServer]:
    """Run the registry in a background thread for the duration of the block."""
    server = RegistryHTTPServer(registry, host, port, credentials)
    # A short poll interval makes shutdown (end of every test) quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="schema-registry", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _credentials(settings: Settings) -> tuple[str, str]:
    """The writer's credentials; never empty: a registry must not take a blank password."""
    r = settings.registry
    password = (r.password.get_secret_value() if r.password is not None
                else secrets.read(settings.state_dir, "registry", r.username))
    if not password:
        raise ConfigError("the registry's write password is empty: set COSMIC_REGISTRY__PASSWORD")
    return r.username, password


def build_server(settings: Settings | None = None, store: str = "kafka") -> RegistryHTTPServer:
    """The registry the platform runs: Kafka-backed, on 127.0.0.1:settings.registry.port,
    with writes only for ``settings.registry``'s credentials."""
    settings = settings or get_settings()
    backing: Store
    if store == "memory":
        backing = MemoryStore()
    else:
        # Imported here: the memory-only registry (tests) needs no Kafka client.
        from schemas.registry.kafka_store import KafkaStore

        backing = KafkaStore(settings)
    return RegistryHTTPServer(Registry(backing), "127.0.0.1", settings.registry.port,
                              _credentials(settings))


def main(argv: list[str] | None = None) -> None:
    """``python -m schemas.registry.server [--memory]``: serve until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m schemas.registry.server", description=main.__doc__)
    parser.add_argument("--memory", action="store_true", help="keep schemas in memory only (lost on exit)")
    args = parser.parse_args(argv)
    logs.configure(get_settings(), "registry")
    try:
        server = build_server(store="memory" if args.memory else "kafka")
    except (CosmicError, OSError) as exc:
        # Kafka unreachable or the port taken: one clear line, not a traceback.
        log.error("schema registry cannot start: %s", exc)
        raise SystemExit(1) from None
    log.info("schema registry listening on %s (metrics at /metrics)", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.registry.close()


if __name__ == "__main__":
    main()
