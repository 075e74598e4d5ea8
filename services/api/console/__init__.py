"""The operators' web console (/ui) and the interactive API documentation (/docs, /openapi.json).

Plain HTML, CSS and JavaScript modules from ``static/``, served as they are: no build step, nothing
fetched from another host. The pages call the REST routes of the same server, so they see exactly
what curl sees, with the bearer token the operator types in. The pages themselves need no token: they
hold no data until the API gives it. /openapi.json is the file ``make proto`` writes next to the generated
code (services/api/openapi.py), served as it is.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from shared.proto.jobs.v1 import job_service_pb2

__all__ = ["CONTENT_TYPES", "OPENAPI_DOCUMENT", "STATIC_DIR", "add_console_routes"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Written by `make proto` (scripts/gen_protos.py) next to the generated code, and shipped in the wheel with it.
OPENAPI_DOCUMENT = Path(job_service_pb2.__file__).with_name("openapi.json")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

# Everything from this origin and nothing from anywhere else; no inline scripts.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(),
        headers={"Content-Type": CONTENT_TYPES[path.suffix], **SECURITY_HEADERS},
    )


def add_console_routes(app: web.Application) -> None:
    """Mount / (a redirect), /ui, /ui/static/*, /docs and /openapi.json on ``app``."""
    assets = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in CONTENT_TYPES and path.is_file()}
    document = OPENAPI_DOCUMENT.read_bytes()

    async def root(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui")

    async def console(_: web.Request) -> web.Response:
        return _asset(assets["index.html"])

    async def docs(_: web.Request) -> web.Response:
        return _asset(assets["docs.html"])

    async def static(request: web.Request) -> web.Response:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return _asset(path)

    async def openapi(_: web.Request) -> web.Response:
        headers = {"Content-Type": "application/json", "Cache-Control": "no-cache"}
        return web.Response(body=document, headers=headers)

    app.router.add_get("/", root)
    app.router.add_get("/ui", console)
    app.router.add_get("/ui/", console)
    app.router.add_get("/ui/static/{name}", static)
    app.router.add_get("/docs", docs)
    app.router.add_get("/openapi.json", openapi)
