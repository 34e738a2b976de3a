"""The REST face through its own OpenAPI document: every documented operation is
called, and every response matches the schema the document gives for its status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from streams.gateway import rest
from streams.security import audit
from tests.unit.test_gateway_faces import Harness

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api() -> AsyncIterator[tuple[Harness, aiohttp.ClientSession, dict[str, Any]]]:
    h = Harness()
    h.step()
    app = web.Application(middlewares=[rest.problems])
    app.add_routes(rest.routes(h.core))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers={
            "Authorization": f"Bearer {h.token}"}) as session:
        doc = await (await session.get("/openapi.json")).json()
        yield h, session, doc
    await runner.cleanup()


SUBMITS: list[str] = []  # every command attempt the test makes


async def call(session: aiohttp.ClientSession, doc: dict[str, Any], called: set[str],
               method: str, template: str, path: str, **kwargs: Any) -> Any:
    """Call one documented operation; check the response against the document."""
    op = doc["paths"][template][method]
    called.add(op["operationId"])
    if method in ("post", "put", "delete"):
        SUBMITS.append(path)
    async with session.request(method.upper(), path, **kwargs) as resp:
        documented = op["responses"].get(str(resp.status))
        assert documented, f"{method} {path}: status {resp.status} is not documented"
        ((ctype, content),) = documented["content"].items()
        assert resp.content_type == ctype
        body = await resp.json(content_type=None)
        jsonschema.validate(body, {**content["schema"], "components": doc["components"]})
        return resp.status, body


async def test_every_documented_operation_answers_as_documented(api):
    h, session, doc = api
    jsonschema.Draft202012Validator.check_schema(doc["components"]["schemas"]["BodyPage"])
    called: set[str] = set()
    worlds = "/api/v1/worlds"
    bodies = "/api/v1/worlds/{world_id}/bodies"
    one = "/api/v1/worlds/{world_id}/bodies/{body_id}"

    status, body = await call(session, doc, called, "get", worlds, worlds)
    assert [w["world_id"] for w in body["worlds"]] == ["w"]

    # Paging: every body once, ascending, in pages of 40.
    seen, after = [], None
    while True:
        params = {"limit": "40", **({"after": str(after)} if after is not None else {})}
        status, page = await call(session, doc, called, "get", bodies,
                                  "/api/v1/worlds/w/bodies", params=params)
        seen += [b["id"] for b in page["bodies"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == h.world.feed.latest.ids.tolist()

    status, page = await call(session, doc, called, "get", bodies, "/api/v1/worlds/w/bodies",
                              params={"cx": "0", "cy": "0", "cz": "0", "radius": "4",
                                      "limit": "1000"})
    inside = [b["id"] for b in page["bodies"]]
    assert 0 < len(inside) < len(seen)
    assert all(sum(b["position"][k] ** 2 for k in "xyz") <= 16 for b in page["bodies"])

    for params, code in (({"radius": "nan"}, 400), ({"radius": "-1"}, 400),
                         ({"limit": "0"}, 400), ({"cx": "1"}, 400)):
        status, problem = await call(session, doc, called, "get", bodies,
                                     "/api/v1/worlds/w/bodies", params=params)
        assert status == code and problem["type"].startswith(rest.PROBLEM_BASE)
    status, problem = await call(session, doc, called, "get", bodies,
                                 "/api/v1/worlds/nope/bodies")
    assert status == 404 and problem["type"].endswith("unknown-world")

    new = {"body_id": 5000, "kind": "ASTEROID", "mass": 1.0, "radius": 0.1,
           "position": {"x": 1, "y": 2, "z": 3}, "velocity": {"x": 0, "y": 0, "z": 0}}
    status, accepted = await call(session, doc, called, "post", bodies,
                                  "/api/v1/worlds/w/bodies", json=new)
    assert status == 202 and accepted["command_id"] == str(h.appended[-1].command_id)
    assert h.appended[-1].command.body_id == 5000
    status, problem = await call(session, doc, called, "post", bodies,
                                 "/api/v1/worlds/w/bodies", json={**new, "mass": -1})
    assert status == 422 and "mass" in problem["detail"]
    status, problem = await call(session, doc, called, "post", bodies,
                                 "/api/v1/worlds/w/bodies", data=b"{not json")
    assert status == 400

    # A nudge: an impulse for a body the world holds; refused at once otherwise.
    held = int(h.world.feed.latest.ids[3])
    status, accepted = await call(session, doc, called, "put", one,
                                  f"/api/v1/worlds/w/bodies/{held}",
                                  json={"dv": {"x": 0.5, "y": 0, "z": -1}})
    assert status == 202 and accepted["command_id"] == str(h.appended[-1].command_id)
    impulse = h.appended[-1].command
    assert impulse.type == "ApplyImpulse" and impulse.body_id == held
    assert (impulse.dv.x, impulse.dv.y, impulse.dv.z) == (0.5, 0, -1)
    status, problem = await call(session, doc, called, "put", one,
                                 "/api/v1/worlds/w/bodies/987654321",
                                 json={"dv": {"x": 1, "y": 0, "z": 0}})
    assert status == 404 and problem["type"].endswith("unknown-body")
    assert "987654321" in problem["detail"]
    for bad in ({"dv": {"x": None, "y": 0, "z": 0}}, {"dv": {"x": 1, "y": 0}},
                {"dv": {"x": 1, "y": 0, "z": 0}, "body_id": 1}):
        status, problem = await call(session, doc, called, "put", one,
                                     f"/api/v1/worlds/w/bodies/{held}", json=bad)
        assert status == 422 and problem["detail"].startswith("command refused"), bad
    status, problem = await call(session, doc, called, "put", one,
                                 "/api/v1/worlds/nope/bodies/1", json={"dv": {"x": 1}})
    assert status == 404 and problem["type"].endswith("unknown-world")
    before = len(h.appended)
    status, problem = await call(session, doc, called, "put", one,
                                 f"/api/v1/worlds/w/bodies/{held}", data=b"[1, 2]")
    assert status == 400 and len(h.appended) == before

    status, accepted = await call(session, doc, called, "delete", one,
                                  "/api/v1/worlds/w/bodies/7")
    assert status == 202 and h.appended[-1].command.body_id == 7
    status, problem = await call(session, doc, called, "delete", one,
                                 "/api/v1/worlds/w/bodies/seven")
    assert status == 400

    # The outcome of a command the gateway admitted: pending, then applied at its tick.
    commands = "/api/v1/commands/{command_id}"
    cid = accepted["command_id"]
    status, outcome = await call(session, doc, called, "get", commands, f"/api/v1/commands/{cid}")
    assert status == 200 and outcome == {"command_id": cid, "state": "pending", "tick": None,
                                         "reason": None, "message": None}
    h.core.outcomes.tick({"world_id": "w", "tick": 9, "command_partition": accepted["partition"],
                          "first_command_offset": accepted["offset"],
                          "last_command_offset": accepted["offset"], "n_rejected": 0})
    status, outcome = await call(session, doc, called, "get", commands, f"/api/v1/commands/{cid}",
                                 params={"wait_ms": "1000"})
    assert (outcome["state"], outcome["tick"], outcome["reason"]) == ("applied", 9, None)
    spawned = h.appended[-2]
    h.core.outcomes.rejection({
        "command_id": str(spawned.command_id), "world_id": "w", "reason": "DUPLICATE_ID",
        "message": "body 5000 exists", "tick": 10, "command_offset": len(h.appended) - 2}, 1)
    status, outcome = await call(session, doc, called, "get", commands,
                                 f"/api/v1/commands/{spawned.command_id}")
    assert (outcome["state"], outcome["tick"], outcome["reason"], outcome["message"]) == (
        "rejected", 10, "DUPLICATE_ID", "body 5000 exists")
    for path, params, code, kind in (
            (f"/api/v1/commands/{uuid.uuid4()}", {}, 404, "unknown-command"),
            ("/api/v1/commands/not-a-uuid", {}, 400, "bad-request"),
            (f"/api/v1/commands/{cid}", {"wait_ms": "-5"}, 400, "bad-request"),
            (f"/api/v1/commands/{cid}", {"wait_ms": "0.5"}, 400, "bad-request")):
        status, problem = await call(session, doc, called, "get", commands, path, params=params)
        assert status == code and problem["type"] == rest.PROBLEM_BASE + kind, path

    # A retried request (the same Command-Id) is answered with the first offset, once.
    n = len(h.appended)
    retry = {"Command-Id": str(uuid.uuid4())}
    status, first = await call(session, doc, called, "delete", one,
                               "/api/v1/worlds/w/bodies/8", headers=retry)
    status, second = await call(session, doc, called, "delete", one,
                                "/api/v1/worlds/w/bodies/8", headers=retry)
    assert first == second and first["command_id"] == retry["Command-Id"]
    assert len(h.appended) == n + 1
    status, problem = await call(session, doc, called, "delete", one,
                                 "/api/v1/worlds/w/bodies/9", headers=retry)
    assert status == 409 and problem["type"].endswith("command-id-in-use")
    status, problem = await call(session, doc, called, "post", bodies, "/api/v1/worlds/w/bodies",
                                 json=new, headers={"Command-Id": "nope"})
    assert status == 400 and len(h.appended) == n + 1

    # Without a token, or with a forged one, nothing is read or sent.
    forged = h.token[:-4] + ("AAAA" if not h.token.endswith("AAAA") else "BBBB")
    for headers in ({"Authorization": ""}, {"Authorization": f"Bearer {forged}"}):
        n = len(h.appended)
        status, problem = await call(session, doc, called, "get", worlds, worlds,
                                     headers=headers)
        assert status == 401 and problem["type"].endswith("unauthenticated")
        status, problem = await call(session, doc, called, "post", bodies,
                                     "/api/v1/worlds/w/bodies", json=new, headers=headers)
        assert status == 401 and len(h.appended) == n
        # Not even whether a body exists is told to a caller without a token.
        for body_id in (int(h.world.feed.latest.ids[0]), 987654321):
            status, problem = await call(session, doc, called, "put", one,
                                         f"/api/v1/worlds/w/bodies/{body_id}", headers=headers,
                                         json={"dv": {"x": 1, "y": 0, "z": 0}})
            assert status == 401 and len(h.appended) == n

    documented = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert called == documented
    # Every command attempt, refused or not, is one audit record, and the chain holds.
    submits = [r for r in h.auth.records if r["action"] == "submit"]
    assert len(submits) == len(SUBMITS) and audit.verify(h.auth.records)[1] == []
