"""Logging out ends the session on the server: its token is refused at once by every API process
(not only its cookie cleared), while the user's other sessions go on. Changing one's own password
needs the current one; an admin resetting someone else's does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from api_client import Api, make_api_settings, password_of, serving_api
from ferry_api.bootstrap import running
from ferry_api.http.asgi import asgi_app
from ferry_api.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
def settings(pg_url: str, amqp_url: str, tmp_path: Path) -> Settings:
    return make_api_settings(pg_url, amqp_url, tmp_path)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serving_api(settings) as running_api:
        await running_api.user("admin", "admin")
        await running_api.user("dev")
        yield running_api


@asynccontextmanager
async def second_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process on the same database, without background work of its own."""
    async with running(settings, start_workers=False) as runtime:
        transport = httpx.ASGITransport(app=asgi_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http


async def test_logout_ends_the_bearer_session_on_every_process(
    api: Api, settings: Settings
) -> None:
    session = await api.login("dev")
    other_session = await api.login("dev")  # another browser of the same user
    async with second_process(settings) as other:
        assert (await other.get("/api/v1/me", headers=session)).status_code == 200
        out = await api.http.delete("/api/v1/auth/session", headers=session)
        assert out.status_code == 204, out.text
        for http in (api.http, other):
            refused = await http.get("/api/v1/me", headers=session)
            assert refused.status_code == 401, refused.text
            assert "logged out" in refused.json()["message"]
            assert (await http.get("/api/v1/me", headers=other_session)).status_code == 200
    again = await api.http.delete("/api/v1/auth/session", headers=session)
    assert again.status_code == 401


async def test_logout_ends_a_cookie_session_even_if_the_cookie_is_kept(api: Api) -> None:
    login = await api.http.post(
        "/api/v1/auth/login",
        json={"username": "dev", "password": password_of("dev"), "cookie": True},
    )
    assert login.status_code == 200, login.text
    kept = dict(api.http.cookies)
    out = await api.http.delete(
        "/api/v1/auth/session", headers={"X-CSRF-Token": kept["ferry_csrf"]}
    )
    assert out.status_code == 204, out.text
    # A copy of the cookies kept from before (the browser's were cleared).
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ferry", cookies=kept
    ) as copy:
        replayed = await copy.get("/api/v1/me")
    assert replayed.status_code == 401, replayed.text
    bearer = {"Authorization": f"Bearer {login.json()['token']}"}
    assert (await api.http.get("/api/v1/me", headers=bearer)).status_code == 401


async def change_password(api: Api, who: str, whose: str, **body: str) -> httpx.Response:
    headers = await api.user(who)
    return await api.http.patch(f"/api/v1/users/{whose}", json=body, headers=headers)


async def test_changing_ones_own_password_needs_the_current_one(api: Api) -> None:
    missing = await change_password(api, "dev", "dev", password="new-password-1")
    assert missing.status_code == 422, missing.text
    assert "current_password" in missing.json()["message"]
    wrong = await change_password(
        api, "dev", "dev", password="new-password-1", current_password="not-it-at-all"
    )
    assert wrong.status_code == 403, wrong.text
    assert "current password" in wrong.json()["message"]
    assert (await api.http.get("/api/v1/me", headers=api.sessions["dev"])).status_code == 200
    await api.login("dev")  # the old password still works: nothing changed

    done = await change_password(
        api, "dev", "dev", password="new-password-1", current_password=password_of("dev")
    )
    assert done.status_code == 200, done.text
    await api.login("dev", "new-password-1")


async def test_an_admin_resets_another_password_without_it_but_not_their_own(api: Api) -> None:
    reset = await change_password(api, "admin", "dev", password="reset-by-admin")
    assert reset.status_code == 200, reset.text
    await api.login("dev", "reset-by-admin")
    own = await change_password(api, "admin", "admin", password="admin-new-password")
    assert own.status_code == 422, own.text
    await api.login("admin")  # unchanged
