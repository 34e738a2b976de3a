"""Faust workers as platform services: each app runs in its own process under ``cosmic up``.

A Faust worker owns an asyncio loop, signal handlers and a Kafka consumer
group; a child process keeps all of that apart from the platform's threads,
and stopping it is a SIGTERM that Faust answers by leaving its group and
committing. The child gets the parent's exact settings (as a JSON file), so
tests and ``cosmic up`` can point it anywhere without touching the
environment.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cosmic.runtime import ChildProcessService, ServiceFailed
from cosmic.settings import Settings


def run_worker(app: Any, loglevel: str = "WARNING") -> None:
    """Run a Faust app's worker in this process until it is told to stop."""
    import faust

    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


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


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot pass {type(value).__name__} to a worker process")


def settings_file(settings: Settings, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # It holds the secrets too (the child needs them): readable by this user only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(settings.model_dump(mode="python"), default=_plain))
    path.chmod(0o600)
    return path


class FaustService(ChildProcessService):
    """A Faust app (module with ``main(settings, loglevel)``) in a child process.

    Faust answers SIGTERM by leaving its group and committing; it gets 30 s.
    """

    def __init__(self, name: str, module: str, settings: Settings,
                 loglevel: str = "WARNING") -> None:
        super().__init__(name, [], settings.state_dir / "logs" / f"{name}.log", grace_s=30.0)
        self.module = module
        self.settings = settings
        self.loglevel = loglevel

    def command(self) -> list[str]:
        path = settings_file(self.settings, self.settings.state_dir / "faust" / f"{self.name}.json")
        return [sys.executable, "-m", "streams.living", self.module, str(path), self.loglevel]

    def exited(self, code: int) -> BaseException:
        return ServiceFailed(f"{self.name} worker exited with status {code} (see {self.log_path})")

    def progress(self) -> str:
        return f"faust worker {super().progress()}"


def build_services(settings: Settings) -> list[FaustService]:
    """The living-worlds services `cosmic up` runs."""
    return [FaustService("ecosystem", "streams.ecosystem", settings),
            FaustService("civilization", "streams.civilization", settings)]


def _child(argv: list[str]) -> None:
    module, path, loglevel = argv
    settings = Settings(**json.loads(Path(path).read_text()))
    importlib.import_module(module).main(settings, loglevel)
