"""The Faust agents without a broker (``agent.test_context()``): wire format in and out, DLQ.

Records go in as Confluent wire-format bytes through the agents' own codec
(an in-process registry), and what the agents send is captured at the one
place they send from, so these tests see the bytes other services would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cosmic import topics
from cosmic.settings import Settings
from schemas import dlq
from schemas.catalog import short_name
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry
from streams import civilization, ecosystem
from streams.living import faustapp
from streams.living import testing as script
from streams.living.faust_codec import AvroCodec

W = "w-agents"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, bytes | None, Any, Any]]]:
    captured: list[tuple[str, bytes | None, Any, Any]] = []

    async def capture(self: Any, event: Any, name: str, key: bytes | None, value: Any,
                      headers: Any) -> None:
        captured.append((name, key, value, headers))

    monkeypatch.setattr(faustapp.Outbox, "_send", capture)
    yield captured


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop per test: a Faust app binds to the current one when built."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No broker here (agent.test_context): no credentials to look up either.
    base = Settings(state_dir=tmp_path, kafka={"security_protocol": "PLAINTEXT"})
    return base.model_copy(update={"living": base.living.model_copy(update={"step_every": 2})})


def _encode(registry: LocalRegistry, topic: topics.Topic, record: dict[str, Any]) -> bytes:
    return AvroSerializer(registry, topic.value)(record, SerializationContext(topic.name))


def _run(app: Any, agent_name: str, registry: LocalRegistry, inputs: list[bytes]) -> None:
    # The test channel hands values to the agent as given: decode them with the codec
    # the agent's topics use, as the consumer would.
    codec = AvroCodec(registry)

    async def go() -> None:
        app.finalize()
        app.flow_control.resume()
        agent = app.agents[agent_name]
        async with agent.test_context() as ctx:
            for data in inputs:
                await ctx.put(codec.loads(data), key=W.encode())

    try:
        app.loop.run_until_complete(go())
    finally:
        # The consumer's thread owns a loop even when, as here, it never starts.
        thread = getattr(app.consumer, "_thread", None)
        if thread is not None:
            thread.thread_loop.close()


def _decoded(registry: LocalRegistry, sent: list[Any], topic: topics.Topic) -> list[Any]:
    read = AvroDeserializer(registry)
    return [read(v) for name, _, v, _ in sent if name == topic.name]


def test_ecosystem_agent_speaks_the_wire_format_and_dead_letters_bad_bytes(
        settings: Settings, sent: list[Any]) -> None:
    reg = LocalRegistry()
    app = ecosystem.build_app(settings, reg)
    bodies = script.solar_system(1)
    inputs = [_encode(reg, topics.COMMANDS, script.seed(W, 10, 1, 1000)),
              _encode(reg, topics.COMMANDS, script.seed(W, 1, 2, 1000)),
              b"\x00\x00\x00\x00\x01garbage"]
    for n in range(1, 6):
        inputs.append(_encode(reg, topics.PHYSICS_TICKS,
                              script.tick(W, n, last_offset=1 if n == 2 else None)))
        inputs.append(_encode(reg, topics.STATE_DELTAS, script.delta(W, n, bodies if n == 1 else {})))
    _run(app, "ecosystem", reg, inputs)

    events = _decoded(reg, sent, topics.ECOSYSTEM_EVENTS)
    assert events[0]["event"][0] == "io.cosmicgarden.SpeciesEmerged"
    assert (events[0]["planet_id"], events[0]["tick"]) == (10, 2)
    assert any(e["event"][0].endswith("PopulationChanged") for e in events)
    rejected = _decoded(reg, sent, topics.COMMANDS_REJECTED)
    assert [r["reason"] for r in rejected] == ["NOT_PERMITTED"]
    dead = [(k, v, dict(h)) for name, k, v, h in sent if name == topics.DLQ.name]
    assert len(dead) == 1 and dead[0][1] == b"\x00\x00\x00\x00\x01garbage"
    assert dead[0][2][dlq.ERROR_TYPE] in (b"TruncatedPayload", b"MalformedPayload")
    # Table state went out to its changelog with the outputs.
    changelog = [name for name, *_ in sent if name.endswith("-changelog")]
    assert any("ecosystem-worlds" in n for n in changelog)
    assert any("ecosystem-planets" in n for n in changelog)


def test_civilization_agent_founds_refuses_and_advances(settings: Settings, sent: list[Any]) -> None:
    reg = LocalRegistry()
    app = civilization.build_app(settings, reg)

    def status(tick: int, pop: int, found: int | None = None) -> bytes:
        return _encode(reg, topics.PLANET_STATUS, {
            "world_id": W, "planet_id": 10, "tick": tick, "known": True, "destroyed": False,
            "temperature_k": 280.0, "population": pop, "carrying_capacity": 1e6,
            "species_count": 2, "dominant_species_id": 1, "years": 0.0 if found else 5.0,
            "ts": 1_700_000_000_000,
            "found": None if found is None else {
                "command_id": "6c1ddf2f-3d1b-4a43-9df8-6f5f6a6c8c51", "player_id": "p",
                "civilization_id": found, "name": "Ur", "command_offset": 7}})

    _run(app, "civilization", reg, [status(1, 50, found=7), status(2, 50_000, found=7),
                               status(3, 50_000, found=7), status(4, 60_000), status(5, 10)])
    events = _decoded(reg, sent, topics.CIVILIZATION_EVENTS)
    kinds = [short_name(e["event"][0]) for e in events]
    assert kinds[0] == "CivilizationFounded" and kinds[-1] == "CivilizationCollapsed"
    assert "TechAdvanced" in kinds
    assert events[-1]["event"][1]["peak_population"] == 60_000
    rejected = _decoded(reg, sent, topics.COMMANDS_REJECTED)
    assert [r["reason"] for r in rejected] == ["NOT_PERMITTED", "DUPLICATE_ID"]


def test_the_codec_waits_out_a_registry_outage_instead_of_dropping_the_record(monkeypatch):
    """An uncached schema id while the registry is down: the record is decoded once the
    registry is back, never handed to Faust as undecodable (Faust would ack and lose it)."""
    import threading

    from schemas.registry.client import RegistryClient
    from schemas.registry.core import Registry
    from schemas.registry.server import serve
    from schemas.registry.store import MemoryStore
    from schemas.serde import AvroSerializer, SerializationContext
    from streams.living import faust_codec

    monkeypatch.setattr(faust_codec, "REGISTRY_RETRY_MAX_S", 0.2)
    store = MemoryStore()
    with serve(Registry(store)) as first:
        port = first.server_address[1]
        with RegistryClient(first.url) as writer:
            data = AvroSerializer(writer, "MetricPoint")(
                {"name": "x", "world_id": "w", "label": "", "window_start": 0, "window_end": 0,
                 "value": 1.0, "count": 1, "ts": 0}, SerializationContext("cosmic.metrics.v1"))
    # The registry is down now; the codec has never seen this schema id.
    with RegistryClient(f"http://127.0.0.1:{port}") as reader:
        codec = faust_codec.AvroCodec(reader)
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(codec._loads(data)), daemon=True)
        t.start()
        t.join(1.0)
        assert t.is_alive() and not result  # waiting, not giving up on the record
        with serve(Registry(store), port=port):
            t.join(20)
        assert not t.is_alive()
    assert isinstance(result[0], faust_codec.Record) and result[0].name == "MetricPoint"
