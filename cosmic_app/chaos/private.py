"""A private Kafka and registry for the faults that take them down.

The shared stack serves everyone's tests and is never stopped, so the
``broker-restart`` and ``registry-outage`` cells run against a stack of their
own: one KRaft broker and the embedded registry, started with the project's
service classes (:class:`~cosmic.stack.kafka.KafkaService`,
:class:`~cosmic.stack.registry.RegistryService`) in a folder of its own on
free ports, secured the way ``cosmic stack up`` secures the shared one (SCRAM
users and passwords generated into the private folder, the same ACLs), with
every declared topic and the platform's signing keys made as ``cosmic up``
makes them. Schemas are registered by their first writers, as on the shared
stack.

Starting it costs a broker start (tens of seconds on a small box), so one is
kept for every cell of a run that needs it (:func:`shared`) and stopped by
:func:`close` (the matrix's run and the test session call it; an exit
handler is the backstop). Its stores are the shared ones: a row that needs a
database makes its private database there, as on the shared stack.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from pydantic import SecretStr

from cosmic import admin
from cosmic.settings import KafkaSettings, RegistrySettings, Settings
from cosmic.stack import Stack
from cosmic.stack.kafka import KafkaService
from cosmic.stack.registry import RegistryService
from streams.security import signing, tokens


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held together while chosen, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class PrivateStack:
    """One broker and the registry, in ``state_dir``; ``settings`` reach them."""

    def __init__(self, shared: Settings, state_dir: Path) -> None:
        broker, controller, registry = free_ports(3)
        self.state_dir = state_dir
        # The stores stay the shared ones: their passwords are carried over explicitly,
        # since this folder holds only the private Kafka's and registry's secrets.
        self.settings = shared.model_copy(update={
            "state_dir": state_dir,
            "lake_dir": state_dir / "lake",
            "startup_timeout_s": max(shared.startup_timeout_s, 180.0),
            "kafka": KafkaSettings(
                bootstrap_servers=f"127.0.0.1:{broker}", port=broker,
                controller_port=controller, heap="384m",
                security_protocol=shared.kafka.security_protocol,
                sasl_mechanism=shared.kafka.sasl_mechanism),
            "registry": RegistrySettings(url=f"http://127.0.0.1:{registry}", port=registry),
            "postgres": shared.postgres.model_copy(
                update={"password": SecretStr(shared.postgres.secret())}),
            "clickhouse": shared.clickhouse.model_copy(
                update={"password": SecretStr(shared.clickhouse.secret())}),
        })
        self.kafka = KafkaService(self.settings)
        self.registry = RegistryService(self.settings)
        self.started_in_s = 0.0

    def up(self) -> None:
        t0 = time.monotonic()
        Stack(self.settings, factories=[KafkaService, RegistryService]).up()
        # What `cosmic up` makes before the platform runs: the topics and the keys.
        admin.reconcile_topics(self.settings)
        tokens.TokenKeys.for_settings(self.settings)
        signing.KeyRing.for_settings(self.settings)
        self.started_in_s = time.monotonic() - t0

    def describe(self) -> str:
        return (f"kafka {self.settings.kafka.bootstrap_servers}, registry "
                f"{self.settings.registry.url}, state {self.state_dir} "
                f"(started in {self.started_in_s:.1f}s)")

    def restart_broker(self) -> float:
        """SIGKILL the broker and start it again at once (same folder, same ports);
        the seconds until it answered again."""
        pid = self.kafka.pid()
        if pid is None:
            raise RuntimeError("the private broker is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.kafka.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        self.kafka.start()
        return time.monotonic() - t0

    def stop_registry(self) -> None:
        self.registry.stop(grace_s=10)

    def start_registry(self) -> None:
        self.registry.start()

    def down(self) -> None:
        try:
            self.registry.stop(grace_s=10)
        finally:
            self.kafka.stop(grace_s=20)
            shutil.rmtree(self.state_dir, ignore_errors=True)


_lock = threading.Lock()
_current: PrivateStack | None = None


def shared(settings: Settings) -> PrivateStack:
    """The run's private stack, started at the first call and kept until :func:`close`."""
    global _current
    with _lock:
        if _current is None:
            stack = PrivateStack(settings, Path(tempfile.mkdtemp(prefix="cosmic-chaos-stack-")))
            try:
                stack.up()
            except BaseException:
                stack.down()
                raise
            _current = stack
            atexit.register(close)
        return _current


def close() -> None:
    """Stop the run's private stack, if one was started."""
    global _current
    with _lock:
        stack, _current = _current, None
    if stack is not None:
        stack.down()
