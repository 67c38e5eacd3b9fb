"""Failed logins are throttled per user (5 in 15 minutes) and per client address (20), counted
where every API process sees them: past the limit a login gets 429 with Retry-After, even with
the right password, until the window passes; a success resets the user's count.
Two API processes on one database share the count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from api_client import Api, make_api_settings, password_of, serving_api
from ferry_api.bootstrap import running
from ferry_api.http.asgi import asgi_app
from ferry_api.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

WINDOW = 15 * 60


@pytest.fixture
def settings(pg_url: str, amqp_url: str, tmp_path: Path) -> Settings:
    return make_api_settings(pg_url, amqp_url, tmp_path)  # the default limits


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serving_api(settings) as running_api:
        for name in ("alice", "bob", "carol"):
            await running_api.user(name)
        yield running_api


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the same database."""
    async with running(settings, start_workers=False) as runtime:
        transport = httpx.ASGITransport(app=asgi_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http


async def login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/api/v1/auth/login", json={"username": username, "password": password})


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "too_many_requests"
    assert "too many failed logins" in response.json()["message"]
    assert 0 < int(response.headers["Retry-After"]) <= WINDOW
    assert "token" not in response.json()


async def test_five_failures_for_a_user_on_two_processes_lock_that_user(
    api: Api, other: httpx.AsyncClient
) -> None:
    for attempt in range(5):
        http = api.http if attempt % 2 else other
        assert (await login(http, "alice", f"wrong-{attempt}")).status_code == 401
    for http in (api.http, other):
        assert_throttled(await login(http, "alice", password_of("alice")))  # even the right one
        assert_throttled(await login(http, "alice", "wrong-again"))
    # Another user from the same address is not locked by alice's failures.
    assert (await login(other, "bob", password_of("bob"))).status_code == 200


async def test_a_success_resets_the_users_count(api: Api, other: httpx.AsyncClient) -> None:
    for attempt in range(4):
        assert (await login(api.http, "alice", f"wrong-{attempt}")).status_code == 401
    assert (await login(other, "alice", password_of("alice"))).status_code == 200
    for attempt in range(4):
        assert (await login(other, "alice", f"wrong-again-{attempt}")).status_code == 401
    assert (await login(api.http, "alice", password_of("alice"))).status_code == 200


async def test_twenty_failures_from_one_address_lock_that_address(
    api: Api, other: httpx.AsyncClient
) -> None:
    names = [f"nobody-{n}" for n in range(20)]  # unknown names count too
    for number, name in enumerate(names):
        http = api.http if number % 2 else other
        assert (await login(http, name, "guess")).status_code == 401
    for http in (api.http, other):
        assert_throttled(await login(http, "carol", password_of("carol")))


async def test_a_malformed_login_is_no_failed_one(api: Api) -> None:
    for _ in range(4):
        assert (await login(api.http, "alice", "wrong")).status_code == 401
    for _ in range(3):
        bad = await api.http.post("/api/v1/auth/login", json={"username": "alice"})
        assert bad.status_code == 422
    assert (await login(api.http, "alice", password_of("alice"))).status_code == 200
