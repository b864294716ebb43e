"""A 405 names every method of its path (connectors/ingress/errors.py: allowed_methods)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from connectors.ingress.errors import install_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    # Two routes on one path, POST first: Starlette alone answers `Allow: POST`.
    @app.post("/things/")
    async def create() -> dict[str, str]:
        return {"made": "one"}

    @app.get("/things/")
    async def listing() -> dict[str, str]:
        return {"listed": "all"}

    @app.get("/other/")
    async def other() -> dict[str, str]:
        return {}

    return app


async def test_a_405_lists_the_methods_of_every_route_on_the_path() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        resp = await client.options("/things/")
        assert resp.status_code == 405
        assert resp.headers["allow"] == "GET, POST"
        assert resp.json() == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
        assert (await client.delete("/other/")).headers["allow"] == "GET"
