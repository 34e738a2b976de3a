"""What both Faust apps share: the app configuration, topic names and codecs.

Every setting comes from :class:`cosmic.settings.Settings`; nothing here reads
the environment. Tables live in memory and are rebuilt from their changelog
topics on start, which is what makes a restarted worker whole again.
"""

from __future__ import annotations

from typing import Any

import faust

from cosmic import topics
from cosmic.settings import Settings
from schemas.serde import SchemaSource

from .serde import AvroCodec, dead_letter_headers


def topic_name(settings: Settings, topic: topics.Topic) -> str:
    return f"{settings.living.topic_prefix}{topic.name}"


def make_app(settings: Settings, app_id: str) -> faust.App:
    servers = [f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")]
    timeout = settings.living.session_timeout_s
    return faust.App(
        app_id,
        broker=servers,
        processing_guarantee="exactly_once",
        store="memory://",
        # Changelogs must have as many partitions as the topics the tables follow.
        topic_partitions=settings.kafka.default_partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        datadir=str(settings.state_dir / "faust" / app_id),
        web_enabled=False,
        # A crashed worker's partitions move after this, not after Faust's 60 s default.
        broker_session_timeout=timeout,
        broker_heartbeat_interval=max(1.0, timeout / 4),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
    )


def out_topic(app: faust.App, settings: Settings, registry: SchemaSource,
              topic: topics.Topic) -> Any:
    name = topic_name(settings, topic)
    return app.topic(name, key_type=bytes, key_serializer="raw",
                     value_serializer=AvroCodec(registry, name, topic.value),
                     partitions=topic.partitions, internal=False)


def in_topics(app: faust.App, settings: Settings, registry: SchemaSource,
              *sources: topics.Topic) -> Any:
    return app.topic(*(topic_name(settings, t) for t in sources), key_type=bytes,
                     key_serializer="raw", value_serializer=AvroCodec(registry))


def dlq_topic(app: faust.App, settings: Settings) -> Any:
    return app.topic(topic_name(settings, topics.DLQ), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


async def dead_letter(dlq: Any, event: Any, error: BaseException) -> None:
    """Copy the event's original bytes to the DLQ, in the agent's transaction."""
    msg = event.message
    await dlq.send(key=msg.key, value=msg.value, headers=dead_letter_headers(msg, error))
