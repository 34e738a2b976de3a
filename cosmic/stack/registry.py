"""The embedded schema registry: our Confluent-compatible REST server, backed by Kafka.

It runs as its own process (``python -m schemas.registry.server``) after Kafka,
with the stack's settings handed over through the environment, and keeps its
schemas in the compacted ``_schemas`` topic so they survive restarts.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from cosmic import secrets
from cosmic.settings import child_env
from cosmic.stack.service import LocalService


class RegistryService(LocalService):
    name = "registry"

    @property
    def port(self) -> int:
        return self.settings.registry.port

    def endpoint(self) -> dict[str, Any]:
        return {"url": f"http://127.0.0.1:{self.port}", "topic": self.settings.registry.topic}

    def prepare(self) -> None:
        """Only the writer's password: the registry's state lives in its Kafka topic."""
        r = self.settings.registry
        if r.password is None:
            secrets.ensure(self.settings.state_dir, "registry", r.username)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "schemas.registry.server"]

    def executable(self) -> str:
        return sys.executable

    def owns(self, cmdline: list[str]) -> bool:
        # The interpreter's name differs between venvs and launchers (python,
        # python3, python3.11); the module it runs does not.
        return "schemas.registry.server" in cmdline
    def child_env(self) -> dict[str, str] | None:
        # Exactly these settings, as the registry's own Kafka identity.
        s = self.settings
        registry = s.registry.model_copy(update={"url": f"http://127.0.0.1:{s.registry.port}"})
        return child_env(s.as_identity("registry").with_overrides(registry=registry))

    def probe(self, timeout_s: float) -> None:
        response = httpx.get(f"http://127.0.0.1:{self.port}/subjects", timeout=timeout_s)
        response.raise_for_status()

    def version(self) -> str | None:
        from cosmic import __version__

        return f"cosmic {__version__}"
