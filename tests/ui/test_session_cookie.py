"""The web UI's cookie session, over HTTP (no browser): login with {"cookie": true} sets an
HttpOnly session cookie and a readable CSRF cookie; changes need X-CSRF-Token to match; bearer
tokens work as before; logout clears both. The embedded store and bus, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ferry_api.bootstrap import running
from ferry_api.commands.accounts import create_user
from ferry_api.http.asgi import asgi_app
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings

PASSWORD = "pw-dev-correct-horse"


@pytest.fixture
async def runtime(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        database_url=sqlite_url, broker_url="memory://", data_dir=tmp_path, secret_key="s" * 48
    )
    async with running(settings) as started:
        await create_user(started, "dev", "developer", PASSWORD, by="admin")
        yield started


def client(runtime: Runtime, scheme: str = "http") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi_app(runtime))
    return httpx.AsyncClient(transport=transport, base_url=f"{scheme}://ferry.test")


async def cookie_login(http: httpx.AsyncClient) -> httpx.Response:
    response = await http.post(
        "/api/v1/auth/login", json={"username": "dev", "password": PASSWORD, "cookie": True}
    )
    assert response.status_code == 200, response.text
    return response


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, lowercased for the attribute checks."""
    return {h.split("=", 1)[0]: h.lower() for h in response.headers.get_list("set-cookie")}


async def test_cookie_login_sets_an_httponly_session_that_authenticates(runtime: Runtime) -> None:
    async with client(runtime) as http:
        cookies = set_cookies(await cookie_login(http))
        assert set(cookies) == {"ferry_session", "ferry_csrf"}
        assert "httponly" in cookies["ferry_session"]
        assert "httponly" not in cookies["ferry_csrf"]  # the page reads it to echo it
        for header in cookies.values():
            assert "samesite=strict" in header and "path=/" in header
            assert "secure" not in header  # plain http: a Secure cookie would never come back
        me = await http.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["username"] == "dev"


async def test_cookies_are_secure_over_https(runtime: Runtime) -> None:
    async with client(runtime, "https") as http:
        cookies = set_cookies(await cookie_login(http))
        assert all("; secure" in header for header in cookies.values())


async def test_a_change_by_cookie_needs_the_matching_csrf_header(runtime: Runtime) -> None:
    async with client(runtime) as http:
        await cookie_login(http)
        csrf = http.cookies["ferry_csrf"]
        wrong: list[dict[bytes, bytes]] = [
            {},
            {b"X-CSRF-Token": b"wrong"},
            {b"X-CSRF-Token": b""},
            {b"X-CSRF-Token": "é".encode()},
        ]
        for headers in wrong:
            refused = await http.post("/api/v1/tokens", json={"name": "ci"}, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "forbidden"
        listed = await http.get("/api/v1/tokens")
        assert listed.status_code == 200 and listed.json() == []  # nothing was created
        made = await http.post(
            "/api/v1/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201, made.text


async def test_a_planted_csrf_cookie_does_not_fit_the_session(runtime: Runtime) -> None:
    async with client(runtime) as http:
        await cookie_login(http)
        http.cookies.set("ferry_csrf", "planted", domain="ferry.test")
        refused = await http.post(
            "/api/v1/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": "planted"}
        )
        assert refused.status_code == 403, refused.text


async def test_bearer_tokens_work_as_before_without_csrf(runtime: Runtime) -> None:
    async with client(runtime) as http:
        login = await http.post(
            "/api/v1/auth/login", json={"username": "dev", "password": PASSWORD}
        )
        assert login.status_code == 200 and not login.headers.get_list("set-cookie")
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        made = await http.post("/api/v1/tokens", json={"name": "ci"}, headers=bearer)
        assert made.status_code == 201, made.text
        api_token = {"Authorization": f"Bearer {made.json()['token']}"}
        assert (await http.get("/api/v1/me", headers=api_token)).status_code == 200


async def test_logout_clears_the_cookies_and_needs_csrf(runtime: Runtime) -> None:
    async with client(runtime) as http:
        await cookie_login(http)
        assert (await http.delete("/api/v1/auth/session")).status_code == 403
        out = await http.delete(
            "/api/v1/auth/session", headers={"X-CSRF-Token": http.cookies["ferry_csrf"]}
        )
        assert out.status_code == 204, out.text
        cleared = set_cookies(out)
        assert set(cleared) == {"ferry_session", "ferry_csrf"}
        assert all("max-age=0" in header for header in cleared.values())
        assert (await http.get("/api/v1/me")).status_code == 401
