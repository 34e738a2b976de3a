"""Fixtures shared by every test layer.

Integration and e2e tests use a real local stack: if the settings (environment
or cosmic.toml) point at a running Kafka, PostgreSQL and ClickHouse, those are
used as they are; otherwise the session starts the local stack and stops it
at the end. Nothing is ever skipped for want of a service: a stack that cannot
start fails the tests that need it, with the reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import NewTopic

from cosmic import admin, kafka
from cosmic.settings import Settings
from cosmic.stack import Stack

TopicFactory = Callable[..., str]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """The running local stack with every declared topic; services that were not
    running are started here and stopped at the end."""
    st = Stack(settings)
    started = [svc for svc in st.services if svc.start() == "started"]
    admin.reconcile_topics(settings)
    yield st
    for svc in reversed(started):
        svc.stop()


@pytest.fixture(scope="session")
def topic_factory(settings: Settings, stack: Stack) -> Iterator[TopicFactory]:
    """Create a uniquely named topic per call; all are deleted when the session ends."""
    admin = kafka.admin(settings)
    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "test", **config: str) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for fut in admin.delete_topics(created, operation_timeout=30).values():
            # Cleanup must not mask the tests' own results.
            with contextlib.suppress(Exception):
                fut.result(timeout=30)
