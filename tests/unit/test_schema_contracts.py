"""The .avsc files themselves: documented, one namespace, typed times and ids, one per topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cosmic import topics
from schemas import catalog

NAMES = catalog.names()


def _walk_named(node: Any, out: dict[str, dict[str, Any]], namespace: str) -> None:
    if isinstance(node, list):
        for b in node:
            _walk_named(b, out, namespace)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed"):
            ns = node.get("namespace", namespace)
            out[f"{ns}.{node['name']}"] = node
            for f in node.get("fields", []):
                _walk_named(f["type"], out, ns)
        else:
            for key in ("type", "items", "values"):
                if key in node:
                    _walk_named(node[key], out, namespace)


def _named(name: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    _walk_named(catalog.load(name), out, catalog.NAMESPACE)
    return out


def test_every_topic_with_avro_values_has_its_schema() -> None:
    expected = {t.name for t in topics.ALL if t is not topics.DLQ}
    assert set(catalog.TOPIC_SCHEMAS) == expected
    for topic_name, schema_name in catalog.TOPIC_SCHEMAS.items():
        assert catalog.parsed(schema_name)["name"] == f"io.cosmicgarden.{topics.get(topic_name).value}"


@pytest.mark.parametrize("name", NAMES)
def test_one_namespace_and_a_doc_on_every_record_and_field(name: str) -> None:
    assert catalog.load(name)["namespace"] == "io.cosmicgarden"
    for full, node in _named(name).items():
        assert full.startswith("io.cosmicgarden."), full
        assert node.get("doc"), f"{full} has no doc"
        for field in node.get("fields", []):
            assert field.get("doc"), f"{full}.{field['name']} has no doc"


@pytest.mark.parametrize("name", NAMES)
def test_times_are_timestamp_millis_and_ids_named_uuid_are_uuids(name: str) -> None:
    for full, node in _named(name).items():
        for field in node.get("fields", []):
            if field["name"] in ("ts", "client_ts", "received_ts", "window_start", "window_end"):
                assert field["type"] == {"type": "long", "logicalType": "timestamp-millis"}, f"{full}.{field['name']}"
            if field["name"] in ("command_id", "event_id"):
                assert field["type"] == {"type": "string", "logicalType": "uuid"}, f"{full}.{field['name']}"


def test_named_types_shared_between_files_are_identical() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for name in NAMES:
        for full, node in _named(name).items():
            text = json.dumps(node, sort_keys=True)
            if full in seen:
                assert seen[full][1] == text, f"{full} differs between {seen[full][0]} and {name}"
            else:
                seen[full] = (name, text)
    assert "io.cosmicgarden.SpeciesTraits" in seen


@pytest.mark.parametrize("name", ["StateDelta", "WorldSnapshot"])
def test_columnar_fields_are_bytes_with_dtype_and_shape_documented(name: str) -> None:
    fields = {f["name"]: f for f in catalog.load(name)["fields"]}
    for column in ("ids", "kinds", "masses", "radii", "positions", "velocities"):
        assert fields[column]["type"] == "bytes"
        assert "little-endian" in fields[column]["doc"] or "u1" in fields[column]["doc"]
        assert "shape (n" in fields[column]["doc"]
    assert "(n, 3), row-major" in fields["positions"]["doc"]


def test_unknown_schema_name_is_a_typed_error() -> None:
    from schemas.errors import UnknownSchema

    with pytest.raises(UnknownSchema, match="PlayerCommand"):
        catalog.load("NoSuchRecord")
    with pytest.raises(UnknownSchema):
        catalog.schema_name_for_topic(topics.DLQ)



def test_union_branches_name_every_record_of_a_union_in_order():
    from schemas import models
    from schemas.errors import UnknownSchema
    branches = catalog.union_branches("PlayerCommand", "command")
    # Each command model is a branch: the warehouse names command types from this list.
    assert set(branches) == {catalog.short_name(n) for n in models.COMMAND_TYPES}
    assert branches[:2] == ("SpawnBody", "ApplyImpulse")
    assert branches[-2:] == ("RetireWorld", "TransferBody")
    with pytest.raises(UnknownSchema):
        catalog.union_branches("PlayerCommand", "player_id")  # not a union
