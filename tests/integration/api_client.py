"""A running API for tests: the real runtime (store, bus, workers) behind an in-process HTTP
client, users of any role logged in over HTTP, and the app served over TCP when a test needs a
real socket (an SSE stream, which the in-process transport would buffer for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from ferry_api.bootstrap import running
from ferry_api.commands.accounts import create_user
from ferry_api.http.asgi import asgi_app
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings
from ferry_events.schemas import Role

SECRET_KEY = "test-only-" + "k" * 40


def make_api_settings(
    database_url: str, broker_url: str, data_dir: Path, **overrides: Any
) -> Settings:
    """The API beside stand-in agents that all log in as the tests' one broker user (guest):
    the development mode FERRY_SHARED_BROKER_USER (tests/security runs strict)."""
    return Settings(
        database_url=database_url,
        broker_url=broker_url,
        data_dir=data_dir,
        secret_key=SECRET_KEY,
        **({"shared_broker_user": "guest"} | overrides),
    )


def password_of(username: str) -> str:
    return f"pw-{username}-correct-horse"


@dataclass
class Api:
    runtime: Runtime
    app: FastAPI
    http: httpx.AsyncClient
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)

    async def user(self, username: str, role: Role = "developer") -> dict[str, str]:
        """Auth headers of `username` (created with `role` on first use, then logged in)."""
        if username not in self.sessions:
            await create_user(self.runtime, username, role, password_of(username), by="admin")
            self.sessions[username] = await self.login(username)
        return self.sessions[username]

    async def login(self, username: str, password: str | None = None) -> dict[str, str]:
        response = await self.http.post(
            "/api/v1/auth/login",
            json={"username": username, "password": password or password_of(username)},
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    async def events(self, after: int = 0) -> list[dict[str, Any]]:
        admin = await self.user("admin", "admin")
        response = await self.http.get(
            "/api/v1/events", params={"after": after, "limit": 1000}, headers=admin
        )
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events


@contextlib.asynccontextmanager
async def serving_api(settings: Settings) -> AsyncIterator[Api]:
    async with running(settings) as runtime:
        app = asgi_app(runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ferry") as http:
            yield Api(runtime, app, http)


@contextlib.asynccontextmanager
async def over_tcp(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` on a free local port; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
