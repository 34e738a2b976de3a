"""The whole local stack: services in start order, brought up and down together."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


def kafka_nodes(settings: Settings) -> list[LocalService]:
    """The KRaft nodes of the local stack: ``settings.kafka.brokers`` of them, and any
    other node still running from this state folder (so that down and status see it)."""
    nodes: list[LocalService] = [KafkaService(settings, n)
                                 for n in range(1, settings.kafka.brokers + 1)]
    n = settings.kafka.brokers + 1
    while (extra := KafkaService(settings, n)).pid_file.exists():
        nodes.append(extra)
        n += 1
    return nodes


class Stack:
    def __init__(self, settings: Settings, factories: list[ServiceFactory] | None = None) -> None:
        self.settings = settings
        self.services: list[LocalService] = []
        for f in factories or SERVICE_FACTORIES:
            self.services.extend(kafka_nodes(settings) if f is KafkaService else [f(settings)])

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
        kafka = [svc for svc in self.services if isinstance(svc, KafkaService)]
        for svc in self.services:
            if isinstance(svc, KafkaService) and len(kafka) > 1:
                if svc is kafka[0]:
                    self._start_together(kafka, on_event)
                continue
            outcome = svc.start()
            if outcome == "external":
                outcome = (f"answering at port {svc.port}, not started from "
                           f"{self.settings.state_dir}: using it as it is")
            on_event(f"{svc.name}: {outcome}")

    def down(self, on_event: Callable[[str], None] = lambda _msg: None) -> None:
        kafka = [svc for svc in self.services if isinstance(svc, KafkaService)]
        for svc in reversed(self.services):
            if isinstance(svc, KafkaService):
                if svc is kafka[0]:
                    self._stop_together(kafka[::-1], on_event)
                continue
            stopped = svc.stop()
            on_event(f"{svc.name}: {'stopped' if stopped else 'not running'}")

    @staticmethod
    def _start_together(nodes: list[KafkaService], on_event: Callable[[str], None]) -> None:
        """A quorum's nodes start at once: each waits for the others to elect a leader."""
        nodes[0].prepare_cluster()
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            outcomes = list(pool.map(lambda svc: svc.start(), nodes))
        for svc, outcome in zip(nodes, outcomes, strict=True):
            on_event(f"{svc.name}: {outcome}")

    @staticmethod
    def _stop_together(nodes: list[KafkaService], on_event: Callable[[str], None]) -> None:
        """The nodes of a quorum stop at once: one by one, the last would wait out its
        controlled shutdown for a quorum that is gone."""
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            stopped = list(pool.map(lambda svc: svc.stop(), nodes))
        for svc, was in zip(nodes, stopped, strict=True):
            on_event(f"{svc.name}: {'stopped' if was else 'not running'}")

    def status(self) -> list[ServiceStatus]:
        return [svc.status() for svc in self.services]
