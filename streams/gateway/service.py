"""The gateway as a platform service: one asyncio loop serving gRPC and WebSocket.

:func:`build_gateway` returns a :class:`GatewayService` (a
:class:`~cosmic.runtime.ThreadService`), which ``cosmic gateway run`` and
``cosmic up`` can run beside the other services. A port of 0 in the settings
means any free port; :attr:`GatewayService.grpc_port` and
:attr:`GatewayService.http_port` say which were bound once :meth:`wait_ready`
returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiohttp import web

from cosmic import metrics as process_metrics
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from schemas.registry.client import RegistryClient
from schemas.serde import SchemaSource
from streams.security import audit, signing, tokens
from streams.security.accounts import AccountStore
from streams.security.revocations import RevocationFollower

from . import accounts_face, grpc_face, rest, transport, viewer, ws_face
from .core import GatewayCore
from .guard import Guard
from .log import CommandLog, DeltaReader

log = logging.getLogger(__name__)


class GatewayService(ThreadService):
    name = "gateway"

    def __init__(self, settings: Settings, registry: SchemaSource, *,
                 owns_registry: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.registry = registry
        self._owns_registry = owns_registry
        self.grpc_port = 0
        self.http_port = 0
        self.reader: DeltaReader | None = None
        self.revocations: RevocationFollower | None = None
        self.audit_sink: audit.KafkaAuditSink | None = None
        self.gateway_id = audit.instance_id(settings.security.gateway_id)
        self.core: GatewayCore | None = None
        self.commands: CommandLog | None = None
        self._ready = threading.Event()

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Whether the faces listen and the deltas reader is at its start, within the time."""
        return self._ready.wait(timeout_s)

    @property
    def grpc_address(self) -> str:
        return f"{self.settings.gateway.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.settings.gateway.tls else "http"
        return f"{scheme}://{self.settings.gateway.host}:{self.http_port}/"

    def progress(self) -> str:
        r = self.reader
        if r is None:
            return "starting"
        return (f"{len(r.worlds)} worlds, {r.ticks} ticks, grpc {self.grpc_address}, "
                f"http {self.http_url}")

    def failure(self) -> BaseException | None:
        return (self._error or (self.reader.failure() if self.reader is not None else None)
                or (self.revocations.failure() if self.revocations is not None else None))

    def build_guard(self) -> Guard:
        """Tokens, the denylist (following the revocations topic), command keys, audit."""
        denylist = tokens.Denylist()
        verifier = tokens.verifier_for_settings(self.settings, denylist)
        self.revocations = RevocationFollower(self.settings, self.registry, denylist)
        self.revocations.start()
        self.audit_sink = audit.KafkaAuditSink(self.settings, self.registry)
        chain = audit.AuditChain(self.gateway_id, self.audit_sink)
        return Guard(self.settings.security, verifier, signing.KeyRing.for_settings(self.settings),
                     chain)

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        g = self.settings.gateway
        commands = self.commands = CommandLog(self.settings, self.registry, loop)
        guard = self.build_guard()
        core = self.core = GatewayCore(g, commands.append, guard)
        self.reader = DeltaReader(self.settings, self.registry, core.grid, core.publish, loop,
                                  core.outcomes)
        # Before the faces listen: every command admitted afterwards has its outcome followed.
        try:
            await asyncio.to_thread(self.reader.start)
        except BaseException:
            commands.close()
            raise
        process_metrics.hub().add(core.metrics)
        creds = transport.credentials(self.settings)
        server, self.grpc_port = await grpc_face.serve(
            core, g.host, g.grpc_port, None if creds is None else creds.grpc_pair())
        app = web.Application(client_max_size=g.max_message_bytes, middlewares=[rest.problems])
        store = AccountStore(self.settings, tokens.TokenKeys.for_settings(self.settings))
        ws_face.setup(app, core)
        app.add_routes(accounts_face.routes(store, guard) + rest.routes(
            core, rest.document(accounts_face.OPENAPI_PATHS, accounts_face.OPENAPI_SCHEMAS))
            + viewer.routes())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, g.host, g.http_port,
                           ssl_context=None if creds is None else creds.ssl_context())
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            await asyncio.to_thread(self.reader.wait_ready, 120.0)
            assert self.revocations is not None
            await asyncio.to_thread(self.revocations.wait_ready, 60.0)
            self._ready.set()
            await asyncio.to_thread(self._stop.wait)
        finally:
            await server.stop(grace=1.0)
            await runner.cleanup()
            self.reader.stop()
            commands.close()
            process_metrics.hub().discard(core.metrics)
            if self.revocations is not None:
                self.revocations.stop()
            if self.audit_sink is not None:
                self.audit_sink.close()
                log.info("audit chain %s ends at seq %d", self.gateway_id, guard.audit.seq - 1)
            if self._owns_registry and isinstance(self.registry, RegistryClient):
                self.registry.close()


def build_gateway(settings: Settings, registry: SchemaSource | None = None) -> GatewayService:
    """The gateway `cosmic gateway run` and `cosmic up` run."""
    if registry is not None:
        return GatewayService(settings, registry)
    return GatewayService(settings, RegistryClient.from_settings(settings), owns_registry=True)
