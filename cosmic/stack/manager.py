"""The whole local stack: services in start order, brought up and down together."""

from __future__ import annotations

from collections.abc import Callable

from cosmic.errors import StackError
from cosmic.settings import Settings
from cosmic.stack.clickhouse import ClickHouseService
from cosmic.stack.kafka import KafkaService
from cosmic.stack.postgres import PostgresService
from cosmic.stack.prometheus import PrometheusService
from cosmic.stack.registry import RegistryService
from cosmic.stack.service import LocalService, ServiceStatus

ServiceFactory = Callable[[Settings], LocalService]

# Start order; stopped in reverse. The registry keeps its schemas in Kafka; Prometheus
# scrapes the others (and the platform's processes).
SERVICE_FACTORIES: list[ServiceFactory] = [
    KafkaService, RegistryService, PostgresService, ClickHouseService, PrometheusService,
]


class Stack:
    def __init__(self, settings: Settings, factories: list[ServiceFactory] | None = None) -> None:
        self.settings = settings
        self.services: list[LocalService] = [f(settings) for f in (factories or SERVICE_FACTORIES)]

    def service(self, name: str) -> LocalService:
        for svc in self.services:
            if svc.name == name:
                return svc
        known = ", ".join(s.name for s in self.services)
        raise StackError(f"unknown service {name!r}; services: {known}")

    def install(self) -> None:
        for svc in self.services:
            install = getattr(svc, "install", None)
            if install is not None:
                install()

    def up(self, on_event: Callable[[str], None] = lambda _msg: None) -> None:
        for svc in self.services:
            outcome = svc.start()
            if outcome == "external":
                outcome = (f"answering at port {svc.port}, not started from "
                           f"{self.settings.state_dir}: using it as it is")
            on_event(f"{svc.name}: {outcome}")

    def down(self, on_event: Callable[[str], None] = lambda _msg: None) -> None:
        for svc in reversed(self.services):
            stopped = svc.stop()
            on_event(f"{svc.name}: {'stopped' if stopped else 'not running'}")

    def status(self) -> list[ServiceStatus]:
        return [svc.status() for svc in self.services]
