"""``cosmic schemas register | list | check`` against the embedded registry over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from cosmic_app.cli import build_cli
from schemas import catalog
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.server import RegistryHTTPServer, serve
from schemas.registry.store import MemoryStore


@pytest.fixture
def server() -> Iterator[RegistryHTTPServer]:
    with serve(Registry(MemoryStore())) as srv:
        yield srv


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, result.output


def test_register_then_list_then_check(server: RegistryHTTPServer) -> None:
    code, out = _run("schemas", "register", "--registry-url", server.url)
    assert code == 0, out
    for subject in catalog.subjects():
        assert subject in out
    code, out = _run("schemas", "list", "--registry-url", server.url)
    assert code == 0
    assert "cosmic.commands.v1-value" in out and "io.cosmicgarden.PlayerCommand" in out
    code, out = _run("schemas", "check", "--registry-url", server.url)
    assert code == 0
    assert out.count("compatible (BACKWARD)") == len(catalog.subjects())


def test_check_reports_new_and_incompatible_subjects(server: RegistryHTTPServer) -> None:
    # An earlier MetricPoint whose value was a string: the local double cannot read it.
    old = catalog.load("MetricPoint")
    for f in old["fields"]:
        if f["name"] == "value":
            f["type"] = "string"
    with RegistryClient(server.url) as client:
        client.register("cosmic.metrics.v1-value", old)
    code, out = _run("schemas", "check", "--registry-url", server.url, "MetricPoint", "PlayerCommand")
    assert code == 1
    assert "cosmic.metrics.v1-value" in out and "INCOMPATIBLE (BACKWARD)" in out
    assert "io.cosmicgarden.MetricPoint.value" in out and "string" in out
    assert "cosmic.commands.v1-value" in out and "new (not registered yet)" in out


def test_register_refuses_an_incompatible_change_with_the_reason(server: RegistryHTTPServer) -> None:
    old = catalog.load("MetricPoint")
    old["fields"] = [f for f in old["fields"] if f["name"] != "labels"]
    old["fields"].append({"name": "unit", "type": "string", "doc": "u"})
    with RegistryClient(server.url) as client:
        client.set_compatibility("FORWARD", "cosmic.metrics.v1-value")
        client.register("cosmic.metrics.v1-value", old)
    result = CliRunner().invoke(build_cli(), ["schemas", "register", "--registry-url", server.url, "MetricPoint"])
    assert result.exit_code != 0
    assert "'unit' is in version 1 without a default and is missing from the new schema" in str(result.exception)


def test_unknown_schema_name_is_a_usage_error(server: RegistryHTTPServer) -> None:
    code, out = _run("schemas", "check", "--registry-url", server.url, "NoSuchThing")
    assert code == 2 and "NoSuchThing" in out


def test_registered_text_is_the_shipped_schema(server: RegistryHTTPServer) -> None:
    _run("schemas", "register", "--registry-url", server.url, "StateDelta")
    with RegistryClient(server.url) as client:
        assert client.latest("cosmic.state.deltas.v1-value").schema.raw == json.loads(catalog.schema_text("StateDelta"))
