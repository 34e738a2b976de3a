"""Compatibility modes follow Avro resolution rules and explain refusals."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import catalog
from schemas.errors import InvalidSchema
from schemas.registry.compatibility import Compatibility, ParsedSchema, check, reader_problems


def rec(*fields: dict[str, Any], name: str = "Probe") -> ParsedSchema:
    return ParsedSchema({"type": "record", "name": name, "namespace": "io.cosmicgarden", "fields": list(fields)})


ID = {"name": "id", "type": "long"}
NOTE = {"name": "note", "type": "string"}
NOTE_DEFAULT = {"name": "note", "type": "string", "default": ""}
SCORE = {"name": "score", "type": "double"}
SCORE_DEFAULT = {"name": "score", "type": "double", "default": 0.0}


def test_adding_a_field_with_default_passes_backward() -> None:
    assert check("BACKWARD", rec(ID, SCORE_DEFAULT), [(1, rec(ID))]) == []


def test_adding_a_field_without_default_is_refused_under_backward_with_a_clear_message() -> None:
    problems = check("BACKWARD", rec(ID, SCORE), [(1, rec(ID))])
    assert problems == [
        "BACKWARD: io.cosmicgarden.Probe.score: field 'score' is in the new schema without a default "
        "and is missing from version 1, so records written with version 1 cannot be read "
        "(give the field a default, or keep it in both)"
    ]


@pytest.mark.parametrize("mode", ["FORWARD", "FULL", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"])
def test_removing_a_field_without_default_is_refused(mode: str) -> None:
    problems = check(mode, rec(ID), [(1, rec(ID, NOTE))])
    assert len(problems) == 1
    assert "field 'note' is in version 1 without a default and is missing from the new schema" in problems[0]
    assert problems[0].startswith(mode)


def test_removing_a_field_with_default_passes_full() -> None:
    assert check("FULL", rec(ID), [(1, rec(ID, NOTE_DEFAULT))]) == []


def test_removing_a_field_passes_backward_new_readers_ignore_it() -> None:
    assert check("BACKWARD", rec(ID), [(1, rec(ID, NOTE))]) == []


def test_none_accepts_anything() -> None:
    assert check("NONE", rec({"name": "id", "type": "string"}), [(1, rec(ID))]) == []


def test_transitive_checks_every_version_plain_checks_only_the_latest() -> None:
    v1 = rec(ID)
    v2 = rec(ID, SCORE_DEFAULT)
    v3 = rec(ID, SCORE)  # reads v2 (has score) but not v1
    assert check("BACKWARD", v3, [(1, v1), (2, v2)]) == []
    problems = check("BACKWARD_TRANSITIVE", v3, [(1, v1), (2, v2)])
    assert len(problems) == 1 and "version 1" in problems[0]


@pytest.mark.parametrize(
    ("writer", "reader", "ok"),
    [
        ("int", "long", True), ("int", "double", True), ("long", "float", True), ("float", "double", True),
        ("string", "bytes", True), ("bytes", "string", True),
        ("long", "int", False), ("double", "float", False), ("string", "long", False),
        ("null", ["null", "string"], True), ("string", ["null", "string"], True),
        (["null", "string"], "string", False), (["null", "int"], ["null", "long"], True),
    ],
)
def test_primitive_promotions_and_unions(writer: Any, reader: Any, ok: bool) -> None:
    w = rec({"name": "v", "type": writer})
    r = rec({"name": "v", "type": reader})
    assert (reader_problems(r, w) == []) is ok


def test_enum_symbols_need_a_reader_default() -> None:
    def enum(symbols: list[str], default: str | None = None) -> ParsedSchema:
        e: dict[str, Any] = {"type": "enum", "name": "Kind", "symbols": symbols}
        if default:
            e["default"] = default
        return rec({"name": "k", "type": e})

    assert reader_problems(enum(["A", "B"]), enum(["A"])) == []
    problems = reader_problems(enum(["A"]), enum(["A", "B"]))
    assert problems and "['B']" in problems[0] and "no default" in problems[0]
    assert reader_problems(enum(["A", "X"], default="X"), enum(["A", "B"])) == []


def test_renamed_record_is_refused_unless_aliased() -> None:
    old = rec(ID, name="Probe")
    assert reader_problems(rec(ID, name="Sonde"), old)
    aliased = ParsedSchema({"type": "record", "name": "Sonde", "namespace": "io.cosmicgarden",
                            "aliases": ["io.cosmicgarden.Probe"], "fields": [ID]})
    assert reader_problems(aliased, old) == []


def test_nested_field_problems_name_the_path() -> None:
    inner_old = {"type": "record", "name": "Inner", "fields": [ID]}
    inner_new = {"type": "record", "name": "Inner", "fields": [ID, SCORE]}
    problems = check("BACKWARD", rec({"name": "inner", "type": inner_new}), [(1, rec({"name": "inner", "type": inner_old}))])
    assert "io.cosmicgarden.Probe.inner.score" in problems[0]


def test_recursive_schemas_terminate() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"], "default": None}]}
    assert reader_problems(ParsedSchema(node), ParsedSchema(node)) == []


@pytest.mark.parametrize("name", catalog.names())
def test_every_shipped_schema_is_fully_compatible_with_itself(name: str) -> None:
    s = ParsedSchema(catalog.load(name))
    assert check(Compatibility.FULL_TRANSITIVE, s, [(1, s)]) == []


@pytest.mark.parametrize("text", ["{not json", '{"type": "record"}', '{"type": "nosuchtype"}', '"Undefined.Name"'])
def test_invalid_schemas_are_typed(text: str) -> None:
    with pytest.raises(InvalidSchema):
        ParsedSchema(text)


def test_canonical_form_ignores_whitespace_and_key_order() -> None:
    a = ParsedSchema('{"type": "record", "name": "A", "fields": [{"name": "x", "type": "long"}]}')
    b = ParsedSchema('{"fields":[{"type":"long","name":"x"}],"name":"A","type":"record"}')
    assert a == b
