"""Faust workers as platform services: each app runs in its own process under ``cosmic up``.

A Faust worker owns an asyncio loop, signal handlers and a Kafka consumer
group; a child process keeps all of that apart from the platform's threads,
and stopping it is a SIGTERM that Faust answers by leaving its group and
committing. The child gets the parent's exact settings through its
environment (:func:`cosmic.settings.child_env`, the one way settings reach a
child process), so tests and ``cosmic up`` can point it anywhere.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from cosmic.runtime import ChildProcessService, ServiceFailed
from cosmic.settings import Settings, child_env, get_settings


def run_worker(app: Any, loglevel: str = "WARNING", settings: Settings | None = None) -> None:
    """Run a Faust app's worker in this process until it is told to stop, with its
    metrics at this process's ``/metrics``."""
    import faust

    from cosmic import metrics

    from .metrics import FaustMetrics

    endpoint = metrics.serve(settings or get_settings(), str(app.conf.id))
    try:
        with metrics.registered(FaustMetrics(app)):
            faust.Worker(app, loglevel=loglevel).execute_from_commandline()
    finally:
        endpoint.close()


def lazy_app(build_app: Any) -> Any:
    """A module ``__getattr__`` that builds the module's Faust ``app`` on first access.

    ``faust -A module worker`` looks for a module-level ``app``; building it only
    when asked keeps importing the module free of side effects.
    """
    built: dict[str, Any] = {}

    def module_getattr(attr: str) -> Any:
        if attr != "app":
            raise AttributeError(attr)
        if "app" not in built:
            from cosmic.settings import get_settings

            built["app"] = build_app(get_settings())
        return built["app"]

    return module_getattr


class FaustService(ChildProcessService):
    """A Faust app (module with ``main(settings, loglevel)``) in a child process.

    Faust answers SIGTERM by leaving its group and committing; it gets 30 s.
    """

    def __init__(self, name: str, module: str, settings: Settings,
                 loglevel: str = "WARNING") -> None:
        # Each child's /metrics on a port of its own (a fixed one would clash).
        own_port = settings.with_overrides(metrics=settings.metrics.model_copy(update={"port": 0}))
        super().__init__(name, [], settings.state_dir / "logs" / f"{name}.log",
                         env=child_env(own_port), grace_s=30.0)
        self.module = module
        self.settings = settings
        self.loglevel = loglevel

    def command(self) -> list[str]:
        return [sys.executable, "-m", "streams.living", self.module, self.loglevel]

    def exited(self, code: int) -> BaseException:
        return ServiceFailed(f"{self.name} worker exited with status {code} (see {self.log_path})")

    def progress(self) -> str:
        return f"faust worker {super().progress()}"


def build_services(settings: Settings) -> list[FaustService]:
    """The living-worlds services `cosmic up` runs."""
    return [FaustService("ecosystem", "streams.ecosystem", settings),
            FaustService("civilization", "streams.civilization", settings)]


def _child(argv: list[str]) -> None:
    module, loglevel = argv
    importlib.import_module(module).main(get_settings(), loglevel)
