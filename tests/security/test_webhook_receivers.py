"""Webhook URLs that point inside (SSRF): loopback, private, link-local, multicast and reserved
addresses, also behind a host name, are refused when configured and again at each delivery,
unless FERRY_WEBHOOK_ALLOW_HOSTS names them. A refused delivery is logged, shortened, and not sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api_client import make_api_settings, over_tcp, serving_api
from fastapi import FastAPI, Request, Response
from ferry_api.settings import Settings
from ferry_api.workers.webhook_deliveries import DELIVERIES
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

TOKEN = "T0SECRET-hook-token-4242"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Any]]]:
    """A local receiver: its base URL and the bodies posted to it."""
    posts: list[Any] = []
    app = FastAPI()

    @app.post("/hook/{token}")
    async def receive(token: str, request: Request) -> Response:
        posts.append(await request.json())
        return Response(status_code=200)

    async with over_tcp(app) as base:
        yield base, posts


def settings_of(pg_url: str, amqp_url: str, tmp_path: Path, allow: str) -> Settings:
    return make_api_settings(pg_url, amqp_url, tmp_path, webhook_allow_hosts=allow)


@pytest.fixture
async def ferry(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Ferry]:
    """The API without an allow-list, as it ships."""
    async with (
        serving_api(settings_of(pg_url, amqp_url, tmp_path, "")) as api,
        stand_ins(api) as stack,
    ):
        await stack.add_app("shop")
        yield stack


async def put_hook(ferry: Ferry, url: str, hook_id: str = "w") -> Any:
    body = {"url": url, "format": "json", "events": ["approval_requested"]}
    return await ferry.http.put(
        f"/api/v1/apps/shop/webhooks/{hook_id}", json=body, headers=ferry.auth("admin")
    )


INSIDE = [
    "http://127.0.0.1:8080/hook",
    "http://localhost:8080/hook",  # a name that resolves to loopback
    "http://[::1]:8080/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.9/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "https://[fe80::1]/hook",
    "https://[fd00::5]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4 loopback inside an IPv6 address
    "https://224.0.0.1/hook",
    "https://240.0.0.1/hook",
    "https://0.0.0.0/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
]


async def test_inside_addresses_are_refused_without_the_allow_list(ferry: Ferry) -> None:
    before = await ferry.runtime.store.last_position()
    for url in INSIDE:
        response = await put_hook(ferry, url)
        assert response.status_code == 422, (url, response.text)
        assert "FERRY_WEBHOOK_ALLOW_HOSTS" in response.json()["message"], url
    assert await ferry.runtime.store.last_position() == before
    assert (await ferry.get("admin", "/apps/shop/webhooks")).json() == []


async def test_a_name_that_does_not_resolve_is_refused(ferry: Ferry) -> None:
    response = await put_hook(ferry, "https://no-such-host.invalid/hook")
    assert response.status_code == 422, response.text
    assert "resolve" in response.json()["message"]


@pytest.mark.parametrize("allow", ["127.0.0.0/8", "127.0.0.1", "::1, 127.0.0.1/32"])
async def test_the_allow_list_admits_a_local_receiver_by_address(
    pg_url: str, amqp_url: str, tmp_path: Path, allow: str
) -> None:
    async with serving_api(settings_of(pg_url, amqp_url, tmp_path, allow)) as api:
        async with stand_ins(api) as ferry:
            await ferry.add_app("shop")
            assert (await put_hook(ferry, "http://127.0.0.1:8080/hook")).status_code == 200
            assert (await put_hook(ferry, "https://10.1.2.3/hook", "x")).status_code == 422


async def test_the_allow_list_admits_a_host_by_name(
    pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    async with serving_api(settings_of(pg_url, amqp_url, tmp_path, "LocalHost")) as api:
        async with stand_ins(api) as ferry:
            await ferry.add_app("shop")
            assert (await put_hook(ferry, "http://localhost:8080/hook")).status_code == 200
            # The name is allowed, not every address it happens to share.
            assert (await put_hook(ferry, "http://127.0.0.1:8080/hook", "x")).status_code == 422


async def test_a_delivery_to_a_receiver_no_longer_allowed_is_logged_and_not_sent(
    pg_url: str,
    amqp_url: str,
    tmp_path: Path,
    receiver: tuple[str, list[Any]],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    base, posts = receiver
    log = ""
    async with serving_api(settings_of(pg_url, amqp_url, tmp_path, "127.0.0.1")) as api:
        async with stand_ins(api) as ferry:
            await ferry.add_app("shop")
            assert (await put_hook(ferry, f"{base}/hook/{TOKEN}")).status_code == 200
            ticket = await ferry.to_state("testing", "shop")
            # Where the name leads is checked at each delivery: here the allow-list that
            # admitted the receiver is gone by the time the notice is due.
            api.runtime.settings = settings_of(pg_url, amqp_url, tmp_path, "")
            await ferry.act("dev", ticket, "pass-tests")  # asks for approval: a notice
            async with asyncio.timeout(20):
                while not refused(log) or await api.runtime.store.count(DELIVERIES):
                    await asyncio.sleep(0.1)
                    log += capsys.readouterr().out
            await asyncio.sleep(0.5)
    log += "".join(capsys.readouterr()) + "\n".join(r.getMessage() for r in caplog.records)
    assert posts == []
    (line,) = refused(log)
    assert f"{base}/…" in line and "127.0.0.1" in line
    assert TOKEN not in log


def refused(log: str) -> list[str]:
    return [line for line in log.splitlines() if "webhook.delivery_refused" in line]
