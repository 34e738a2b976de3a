"""The viewer's routes: the built bundle is served; a missing build is a clear 503 page,
not a stack trace; nothing outside the bundle's folder can be reached by its URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streams.gateway import rest, viewer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Path], Any]]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(root: Path) -> aiohttp.ClientSession:
        app = web.Application(middlewares=[rest.problems])
        app.add_routes(viewer.routes(root))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        session = aiohttp.ClientSession(f"http://127.0.0.1:{port}")
        sessions.append(session)
        return session

    yield start
    for s in sessions:
        await s.close()
    for r in runners:
        await r.cleanup()


async def test_a_missing_build_answers_503_saying_how_to_build(serve, tmp_path):
    session = await serve(tmp_path / "static")
    for path in ("/", "/docs", "/viewer/viewer.js"):
        async with session.get(path) as resp:
            assert resp.status == 503, path
            assert resp.content_type == "text/html"
            assert "scripts/build-viewer" in await resp.text()


async def test_the_built_bundle_is_served_and_only_it(serve, tmp_path):
    root = tmp_path / "static"
    (root / "viewer").mkdir(parents=True)
    (root / "index.html").write_text("<title>viewer</title>")
    (root / "docs.html").write_text("<title>docs</title>")
    (root / "viewer" / "viewer.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not for the web")
    session = await serve(root)
    async with session.get("/") as resp:
        assert resp.status == 200 and "viewer" in await resp.text()
        assert resp.headers["Cache-Control"] == "no-cache"
    async with session.get("/docs") as resp:
        assert resp.status == 200 and "docs" in await resp.text()
    async with session.get("/viewer/viewer.js") as resp:
        assert resp.status == 200 and await resp.text() == "console.log(1)"
    for path in ("/viewer/nope.js", "/viewer/..%2F..%2Fsecret.txt", "/viewer/%2E%2E%2Findex.html"):
        async with session.get(path) as resp:
            assert resp.status == 404, path
            assert resp.content_type == "application/problem+json"
