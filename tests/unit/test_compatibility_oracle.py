"""Our resolution rules agree with fastavro's reader on generated schema evolutions.

For random pairs of record schemas (fields added, removed, retyped, made
optional, given defaults): whenever ``reader_problems`` says "readable",
fastavro decodes every generated record (soundness); and when the writer has
no unions, so that fastavro's verdict cannot depend on the data, the two
agree exactly. (With unions fastavro only fails on the branch a record
actually took, while a schema check must hold for all records.)
"""

from __future__ import annotations

import io
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schemas.registry.compatibility import ParsedSchema, reader_problems
from tests.unit.avro_strategies import records

TYPES = ["int", "long", "float", "double", "string", "bytes", "boolean"]
DEFAULTS = {"int": 0, "long": 0, "float": 0.0, "double": 0.0, "string": "", "bytes": "", "boolean": False}
NAMES = ["a", "b", "c", "d", "e"]


@st.composite
def field(draw: st.DrawFn, name: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(TYPES))
    optional = draw(st.booleans())
    f: dict[str, Any] = {"name": name, "type": ["null", kind] if optional else kind}
    if draw(st.booleans()):
        f["default"] = None if optional else DEFAULTS[kind]
    return f


@st.composite
def record_schema(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    return {"type": "record", "name": "R", "fields": [draw(field(n)) for n in names]}


@settings(max_examples=400, deadline=None)
@given(writer=record_schema(), reader=record_schema(), data=st.data())
def test_reader_problems_match_fastavro_resolution(writer: dict[str, Any], reader: dict[str, Any], data: st.DataObject) -> None:
    w, r = ParsedSchema(writer), ParsedSchema(reader)
    problems = reader_problems(r, w)
    record = data.draw(records(w))
    buf = io.BytesIO()
    schemaless_writer(buf, w.tree, record)
    buf.seek(0)
    try:
        schemaless_reader(buf, w.tree, r.tree)
        fastavro_ok = True
    except SchemaResolutionError:
        fastavro_ok = False
    except UnicodeDecodeError:
        # bytes -> string is a legal promotion; bytes that are not UTF-8 are a data problem.
        assume(False)
    if problems == []:
        assert fastavro_ok
    writer_has_unions = any(isinstance(f["type"], list) for f in writer["fields"])
    if not writer_has_unions:
        assert (problems == []) == fastavro_ok, problems
