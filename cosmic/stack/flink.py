"""The Flink connector JARs the PyFlink jobs load, resolved from Maven Central once.

The apache-flink wheel carries Flink but no connectors; ``infra/local/flink-pom.xml``
names them (the Kafka SQL connector built for the wheel's Flink minor version) and
:func:`cosmic.stack.artifacts.resolve` caches them under ``settings.cache_dir``.
"""

from __future__ import annotations

from pathlib import Path

from cosmic.settings import Settings
from cosmic.stack import artifacts

# Must match the wheel's Flink minor version (apache-flink==2.2.x in the `flink` extra).
KAFKA_CONNECTOR_VERSION = "5.0.0-2.2"


def connector_jars(settings: Settings) -> list[Path]:
    """The connector JARs (resolving them on first use), sorted for a stable classpath."""
    lib = artifacts.resolve(
        artifacts.INFRA_LOCAL / "flink-pom.xml",
        settings.cache_dir / f"flink-connectors-{KAFKA_CONNECTOR_VERSION}",
        {"flink.kafka.connector.version": KAFKA_CONNECTOR_VERSION},
    )
    return sorted(lib.glob("*.jar"))
