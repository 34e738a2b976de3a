"""The browser viewer and the API page, served from the bundle ``scripts/build-viewer`` makes.

``/`` is the viewer (``web/viewer``: three.js over the same WebSocket frames as every
client), ``/docs`` renders ``/openapi.json``, and ``/viewer/NAME`` serves the bundle's
files. The bundle is generated at install time into ``static/`` beside this module and
not committed; a gateway started without it still serves every API and answers these
pages with a 503 that says how to build it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Viewer not built</title>
<link rel="icon" href="data:,"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto">
<h1>The viewer is not built</h1>
<p>This gateway serves its APIs (<a href="/openapi.json">/openapi.json</a>,
WebSocket <code>/ws</code>, REST <code>/api/v1</code>), but the browser viewer's bundle
is missing from <code>{where}</code>.</p>
<p>Build it with <code>scripts/build-viewer</code> (needs Node.js and npm;
<code>infra/local/install.sh</code> runs it), then reload this page.</p>
</body></html>
"""


class ViewerFace:
    def __init__(self, root: Path = STATIC) -> None:
        self.root = root

    def _page(self, name: str) -> web.StreamResponse:
        path = self.root / name
        if not path.is_file():
            return web.Response(text=_NOT_BUILT.format(where=self.root), status=503,
                                content_type="text/html", headers={"Retry-After": "60"})
        # Pages are small and change with each build: always revalidate.
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._page("index.html")

    async def docs(self, request: web.Request) -> web.StreamResponse:
        return self._page("docs.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        folder = self.root / "viewer"
        # Only names the build wrote, looked up in its folder: no path from the URL is
        # ever joined onto the file system.
        files = {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
        path = files.get(name)
        if path is None:
            if not files:
                return self._page("viewer/" + name)
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


def routes(root: Path = STATIC) -> list[web.RouteDef]:
    if not (root / "index.html").is_file():
        log.warning("the browser viewer is not built (%s): / answers 503 until "
                    "scripts/build-viewer runs", root)
    face = ViewerFace(root)
    return [web.get("/", face.index), web.get("/docs", face.docs),
            web.get("/viewer/{name}", face.asset)]
