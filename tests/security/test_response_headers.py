"""Every response, the UI's pages and files, the API's answers and its errors, forbids being
framed (clickjacking) and content sniffing. The embedded store and bus, in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ferry_api.bootstrap import running
from ferry_api.commands.accounts import create_user
from ferry_api.http.asgi import asgi_app
from ferry_api.settings import Settings

PASSWORD = "pw-dev-correct-horse"


@pytest.fixture
async def http(sqlite_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=sqlite_url, broker_url="memory://", data_dir=tmp_path, secret_key="s" * 48
    )
    async with running(settings) as runtime:
        await create_user(runtime, "dev", "developer", PASSWORD, by="admin")
        transport = httpx.ASGITransport(app=asgi_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://ferry.test") as client:
            yield client


async def test_every_response_forbids_framing_and_sniffing(http: httpx.AsyncClient) -> None:
    login = await http.post("/api/v1/auth/login", json={"username": "dev", "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {login.json()['token']}"}
    responses = [
        login,
        await http.get("/"),
        await http.get("/js/main.js"),
        await http.get("/healthz"),
        await http.get("/openapi.json"),
        await http.get("/api/v1/me", headers=bearer),
        await http.get("/api/v1/me"),  # 401
        await http.get("/api/v1/nowhere"),  # 404
        await http.post("/api/v1/auth/login", json={}),  # 422
        await http.put("/healthz"),  # 405
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 401, 404, 422, 405]
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        assert response.headers.get("x-frame-options") == "DENY", where
        assert response.headers.get("x-content-type-options") == "nosniff", where
        policies = response.headers.get_list("content-security-policy")
        assert any("frame-ancestors 'none'" in policy for policy in policies), where


async def test_the_pages_own_policy_still_holds(http: httpx.AsyncClient) -> None:
    page = (await http.get("/")).text
    assert "Content-Security-Policy" in page and "script-src 'self'" in page
