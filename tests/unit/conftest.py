"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cosmic import tracing


@pytest.fixture
def memory() -> Iterator[Any]:
    """Tracing installed with the SDK's in-memory exporter, shut down afterwards."""
    traces = tracing.install(tracing.build("unit", "memory"))
    yield traces
    traces.shutdown()
