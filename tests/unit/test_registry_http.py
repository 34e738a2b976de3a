"""The embedded registry over real HTTP (loopback, ephemeral port, memory store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from schemas import catalog
from schemas.errors import (
    IncompatibleRegistration,
    InvalidCompatibilityLevel,
    InvalidSchema,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.server import CONTENT_TYPE, RegistryHTTPServer, serve
from schemas.registry.store import MemoryStore

V1: dict[str, Any] = {"type": "record", "name": "Probe", "namespace": "io.cosmicgarden",
                      "fields": [{"name": "id", "type": "long"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
V2_BAD = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string"}]}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def server(store: MemoryStore) -> Iterator[RegistryHTTPServer]:
    with serve(Registry(store)) as srv:
        yield srv


@pytest.fixture
def client(server: RegistryHTTPServer) -> Iterator[RegistryClient]:
    with RegistryClient(server.url) as c:
        yield c


@pytest.fixture
def http(server: RegistryHTTPServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Content-Type": CONTENT_TYPE}) as c:
        yield c


def test_register_get_lookup_and_list(client: RegistryClient) -> None:
    sid = client.register("probe-value", V1)
    assert client.register("probe-value", json.dumps(V1, indent=2)) == sid  # idempotent, whitespace-blind
    assert client.subjects() == ["probe-value"]
    assert client.versions("probe-value") == [1]
    latest = client.latest("probe-value")
    assert (latest.subject, latest.version, latest.id) == ("probe-value", 1, sid)
    assert client.schema(sid).raw == V1
    assert client.lookup("probe-value", V1).version == 1
    sid2 = client.register("probe-value", V2)
    assert sid2 != sid and client.versions("probe-value") == [1, 2]
    # the same schema under another subject keeps its global id
    assert client.register("other-value", V2) == sid2


def test_wire_shapes_and_content_type(http: httpx.Client) -> None:
    r = http.post("/subjects/probe-value/versions", json={"schema": json.dumps(V1)})
    assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE
    sid = r.json()["id"]
    assert http.get(f"/schemas/ids/{sid}").json() == {"schema": json.dumps(V1, separators=(",", ":"))}
    assert http.get(f"/schemas/ids/{sid}/versions").json() == [{"subject": "probe-value", "version": 1}]
    got = http.get("/subjects/probe-value/versions/latest").json()
    assert got == {"subject": "probe-value", "version": 1, "id": sid, "schema": json.dumps(V1, separators=(",", ":"))}
    assert http.get("/subjects/probe-value/versions/1/schema").json() == V1
    assert http.post("/subjects/probe-value", json={"schema": json.dumps(V1)}).json()["version"] == 1
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/subjects/nope/versions", None, 404, 40401),
        ("GET", "/subjects/probe-value/versions/9", None, 404, 40402),
        ("GET", "/subjects/probe-value/versions/zero", None, 422, 42202),
        ("GET", "/schemas/ids/999", None, 404, 40403),
        ("POST", "/subjects/probe-value", {"schema": json.dumps({**V1, "name": "Other"})}, 404, 40403),
        ("POST", "/subjects/probe-value/versions", {"schema": "{not json"}, 422, 42201),
        ("POST", "/subjects/probe-value/versions", {"schema": json.dumps(V2_BAD)}, 409, 409),
        ("POST", "/subjects/probe-value/versions", {"schema": "{}", "schemaType": "PROTOBUF"}, 422, 42201),
        ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
        ("GET", "/config/probe-value", None, 404, 40408),
    ],
)
def test_errors_use_confluent_codes(
    http: httpx.Client, method: str, path: str, body: Any, status: int, code: int
) -> None:
    http.post("/subjects/probe-value/versions", json={"schema": json.dumps(V1)})
    r = http.request(method, path, json=body)
    assert r.status_code == status
    assert r.headers["content-type"] == CONTENT_TYPE
    assert r.json()["error_code"] == code and r.json()["message"]


def test_incompatible_registration_is_refused_with_the_reason(client: RegistryClient) -> None:
    client.register("probe-value", V1)
    with pytest.raises(IncompatibleRegistration, match="field 'note' is in the new schema without a default") as info:
        client.register("probe-value", V2_BAD)
    assert info.value.status == 409
    assert client.versions("probe-value") == [1]


def test_compatibility_endpoint_and_config(client: RegistryClient) -> None:
    client.register("probe-value", V1)
    ok = client.check("probe-value", V2)
    assert ok.is_compatible and ok.messages == []
    bad = client.check("probe-value", V2_BAD)
    assert not bad.is_compatible and "note" in bad.messages[0]
    assert client.set_compatibility("none", "probe-value") == "NONE"
    assert client.compatibility("probe-value") == "NONE"
    assert client.compatibility() == "BACKWARD"
    assert client.check("probe-value", V2_BAD).is_compatible
    assert client.register("probe-value", V2_BAD) > 0
    assert client.set_compatibility("FULL_TRANSITIVE") == "FULL_TRANSITIVE"
    with pytest.raises(InvalidCompatibilityLevel):
        client.set_compatibility("sideways")


def test_forward_refuses_removing_a_field_without_default(client: RegistryClient) -> None:
    client.set_compatibility("FORWARD", "probe-value")
    with_note = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string"}]}
    client.register("probe-value", with_note)
    with pytest.raises(IncompatibleRegistration, match="'note' is in version 1 without a default and is missing from the new schema"):
        client.register("probe-value", V1)


def test_soft_and_permanent_delete(client: RegistryClient, http: httpx.Client) -> None:
    sid = client.register("probe-value", V1)
    client.register("probe-value", V2)
    assert http.delete("/subjects/probe-value/versions/2").json() == 2
    assert client.versions("probe-value") == [1]
    assert http.get("/subjects/probe-value/versions", params={"deleted": "true"}).json() == [1, 2]
    # permanent delete needs a soft delete first
    r = http.delete("/subjects/probe-value", params={"permanent": "true"})
    assert r.status_code == 404 and r.json()["error_code"] == 40405
    assert client.delete_subject("probe-value") == [1]
    assert client.subjects() == [] and client.subjects(deleted=True) == ["probe-value"]
    with pytest.raises(SubjectNotFound):
        client.versions("probe-value")
    assert http.delete("/subjects/probe-value").json()["error_code"] == 40404
    # ids stay readable after a soft delete (old data must still decode)
    assert client.schema(sid).raw == V1
    assert client.delete_subject("probe-value", permanent=True) == [1, 2]
    assert client.subjects(deleted=True) == []


def test_state_survives_a_restart_over_the_same_store(store: MemoryStore) -> None:
    with serve(Registry(store)) as first, RegistryClient(first.url) as c:
        sid = c.register("probe-value", V1)
        c.register("probe-value", V2)
        c.set_compatibility("FULL", "probe-value")
        c.delete_subject("other", permanent=False) if "other" in c.subjects() else None
    with serve(Registry(store)) as second, RegistryClient(second.url) as c:
        assert c.versions("probe-value") == [1, 2]
        assert c.schema(sid).raw == V1
        assert c.compatibility("probe-value") == "FULL"
        # new ids continue after the replayed ones
        assert c.register("third-value", {**V1, "name": "Third"}) > sid + 1


def test_client_reports_typed_errors(client: RegistryClient) -> None:
    with pytest.raises(SchemaNotFound):
        client.schema(12345)
    with pytest.raises(VersionNotFound):
        client.register("probe-value", V1) and client.version("probe-value", 5)
    with pytest.raises(InvalidSchema):
        client.register("probe-value", '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')


def test_every_shipped_schema_registers(client: RegistryClient) -> None:
    subjects = catalog.subjects()
    ids = {subject: client.register(subject, catalog.load(name)) for subject, name in subjects.items()}
    assert sorted(client.subjects()) == sorted(ids)
    # one id per distinct schema: topics sharing a record type share its id
    by_name = {name: ids[subject] for subject, name in subjects.items()}
    assert len(set(by_name.values())) == len(by_name) == len(catalog.names())
    assert all(ids[subject] == by_name[name] for subject, name in subjects.items())


def test_concurrent_registrations_get_consistent_ids(server: RegistryHTTPServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def schema(i: int) -> dict[str, Any]:
        return {"type": "record", "name": f"R{i}", "fields": [{"name": "x", "type": "long"}]}

    def work(worker: int) -> list[tuple[int, int]]:
        with RegistryClient(server.url) as c:
            # each worker registers the same 10 schemas under its own subject and a shared one
            return [(i, c.register(s, schema(i))) for i in range(10) for s in (f"w{worker}", "shared")]

    with RegistryClient(server.url) as c:
        c.set_compatibility("NONE")  # unrelated records in one subject
    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(work, range(8)) for r in batch]
    ids_by_schema: dict[int, set[int]] = {}
    for i, sid in results:
        ids_by_schema.setdefault(i, set()).add(sid)
    assert all(len(ids) == 1 for ids in ids_by_schema.values())  # one id per schema, whoever asked
    assert len({min(v) for v in ids_by_schema.values()}) == 10
    with RegistryClient(server.url) as c:
        assert c.versions("shared") == list(range(1, 11))  # no schema registered twice in a race
        assert all(c.versions(f"w{w}") == list(range(1, 11)) for w in range(8))
