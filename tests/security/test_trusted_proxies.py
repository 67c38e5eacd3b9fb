"""Behind a TLS-terminating proxy: X-Forwarded-Proto and X-Forwarded-For are believed only from
the addresses in FERRY_TRUSTED_PROXIES. Via a trusted proxy an https login gets Secure cookies and
the login throttle counts the forwarded client; from anyone else the headers change nothing,
also on a real `ferry-api serve` process over TCP from 127.0.0.1 (uvicorn's own default would
trust that address).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from ferry_api.bootstrap import running
from ferry_api.commands.accounts import create_user
from ferry_api.http.asgi import asgi_app
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings
from ferry_events.signing import generate_key

PASSWORD = "pw-dev-correct-horse"
PROXY = ("10.0.0.5", 40000)
STRANGER = ("192.0.2.10", 40000)
HTTPS = {"X-Forwarded-Proto": "https"}
NAMES = itertools.count()

Client = Callable[[tuple[str, int]], AbstractAsyncContextManager[httpx.AsyncClient]]


def settings_of(sqlite_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=sqlite_url,
        broker_url="memory://",
        data_dir=tmp_path,
        secret_key="s" * 48,
        **overrides,
    )


@pytest.fixture
async def runtime(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = settings_of(
        sqlite_url, tmp_path, trusted_proxies="10.0.0.0/8", login_failures_per_address=3
    )
    async with running(settings) as started:
        await create_user(started, "dev", "developer", PASSWORD, by="admin")
        yield started


@pytest.fixture
def client(runtime: Runtime) -> Client:
    app = asgi_app(runtime)

    @asynccontextmanager
    async def from_address(peer: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://ferry.test") as http:
            yield http

    return from_address


async def cookie_login(http: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    body = {"username": "dev", "password": PASSWORD, "cookie": True}
    response = await http.post("/api/v1/auth/login", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return [header.lower() for header in response.headers.get_list("set-cookie")]


async def test_a_trusted_proxys_https_makes_the_cookies_secure(client: Client) -> None:
    async with client(PROXY) as http:
        cookies = await cookie_login(http, HTTPS)
    assert len(cookies) == 2 and all("; secure" in cookie for cookie in cookies)


async def test_a_strangers_forwarded_proto_changes_nothing(client: Client) -> None:
    async with client(STRANGER) as http:
        cookies = await cookie_login(http, HTTPS)
    assert len(cookies) == 2 and not any("secure" in cookie for cookie in cookies)


async def fail(http: httpx.AsyncClient, forwarded_for: str) -> int:
    """A failed login for a new name each time: only the address counter adds up."""
    response = await http.post(
        "/api/v1/auth/login",
        json={"username": f"nobody-{next(NAMES)}", "password": "guess"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


async def test_the_throttle_counts_the_forwarded_client_only_behind_a_trusted_proxy(
    client: Client,
) -> None:
    async with client(PROXY) as proxy, client(STRANGER) as stranger:
        assert [await fail(proxy, "203.0.113.7") for _ in range(3)] == [401] * 3
        assert await fail(proxy, "203.0.113.7") == 429  # that client is throttled
        assert await fail(proxy, "203.0.113.8") == 401  # the proxy's other clients are not
        # A stranger's X-Forwarded-For is ignored: its failures count against its own address.
        assert [await fail(stranger, f"198.51.100.{n}") for n in range(3)] == [401] * 3
        assert await fail(stranger, "198.51.100.99") == 429
        assert await fail(proxy, "203.0.113.9") == 401


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def served(settings: Settings, key: Path) -> AsyncIterator[str]:
    """`ferry-api serve` as a process of its own, as deployed; its base URL once it answers."""
    generate_key(key)
    env = {
        **os.environ,
        "FERRY_DATABASE_URL": settings.database_url,
        "FERRY_BROKER_URL": "memory://",
        "FERRY_DATA_DIR": str(settings.data_dir),
        "FERRY_SECRET_KEY": "s" * 48,
        "FERRY_SIGNING_KEY_FILE": str(key),
        "FERRY_HOST": "127.0.0.1",
        "FERRY_PORT": str(settings.port),
    }
    env.pop("FERRY_TRUSTED_PROXIES", None)
    argv = [sys.executable, "-m", "ferry_api.main", "serve"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{settings.port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http, asyncio.timeout(30):
            while process.poll() is None:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        assert process.poll() is None, process.communicate()[1].decode(errors="replace")
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=15)


async def test_the_served_api_trusts_no_proxy_unless_told(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_of(sqlite_url, tmp_path, port=free_port())
    async with running(settings, start_workers=False) as runtime:
        await create_user(runtime, "dev", "developer", PASSWORD, by="admin")
    async with served(settings, tmp_path / "api.key") as base:
        async with httpx.AsyncClient(base_url=base) as http:  # from 127.0.0.1
            cookies = await cookie_login(http, HTTPS)
    assert len(cookies) == 2 and not any("secure" in cookie for cookie in cookies)
