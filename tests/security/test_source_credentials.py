"""Credentials in a source URL: refused when an app is created or changed (with advice on where
repository credentials belong), and shown redacted wherever a URL already in the log comes back:
GET /apps, the audit log, a ticket's timeline and the live SSE stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import make_api_settings, over_tcp, serving_api
from ferry_api.commands import apps as app_commands
from ferry_events.schemas import AppCreated, Source
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

TOKEN = "glpat-S3CRET-token-4242"  # what must never come back
OLD_URL = f"https://deploy:{TOKEN}@git.example.com/shop.git"
SHOWN = "https://***@git.example.com/shop.git"


@pytest.fixture
async def ferry(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Ferry]:
    async with (
        serving_api(make_api_settings(pg_url, amqp_url, tmp_path)) as api,
        stand_ins(api) as stack,
    ):
        yield stack


def app_body(url: str, kind: str = "git") -> dict[str, Any]:
    return {"name": "shop", "source": {"type": kind, "url": url}, "hosts": ["web-1"]}


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (f"https://deploy:{TOKEN}@git.example.com/shop.git", "git"),
        (f"https://{TOKEN}@git.example.com/shop.git", "git"),  # a token as the user name
        (f"ssh://git:{TOKEN}@git.example.com/shop.git", "git"),
        (f"svn://bob:{TOKEN}@svn.example.com/repo", "svn"),
        (f"https://bob:{TOKEN}@svn.example.com/repo", "svn"),
        (f"svn+ssh://bob:{TOKEN}@svn.example.com/repo", "svn"),
    ],
)
async def test_a_source_url_with_credentials_is_refused_and_writes_nothing(
    ferry: Ferry, url: str, kind: str
) -> None:
    before = await ferry.runtime.store.last_position()
    created = await ferry.post("admin", "/apps", app_body(url, kind))
    assert created.status_code == 422, created.text
    message = created.json()["message"]
    assert "credentials" in message and "credential helper" in message
    assert "~/.netrc" in message and "ssh key" in message and "svn" in message
    assert TOKEN not in message
    assert await ferry.runtime.store.last_position() == before
    assert (await ferry.get("admin", "/apps")).json() == []

    plain = await ferry.post("admin", "/apps", app_body("https://git.example.com/shop.git"))
    assert plain.status_code == 201, plain.text
    before = await ferry.runtime.store.last_position()
    changed = await ferry.http.patch(
        "/api/v1/apps/shop",
        json={"source": {"type": kind, "url": url}},
        headers=ferry.auth("admin"),
    )
    assert changed.status_code == 422, changed.text
    assert await ferry.runtime.store.last_position() == before
    shown = await ferry.get("dev", "/apps/shop")
    assert shown.json()["source"]["url"] == "https://git.example.com/shop.git"


async def test_an_ssh_login_name_is_no_secret_and_is_kept(ferry: Ferry) -> None:
    url = "ssh://git@git.example.com/shop.git"
    created = await ferry.post("admin", "/apps", app_body(url))
    assert created.status_code == 201, created.text
    assert (await ferry.get("dev", "/apps/shop")).json()["source"]["url"] == url


async def sse_events(base: str, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The first `count` events the live stream sends, from the start of the log."""
    found: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base) as http,
        http.stream("GET", "/api/v1/events/stream", params={"after": 0}, headers=headers) as sse,
        asyncio.timeout(20),
    ):
        async for line in sse.aiter_lines():
            if line.startswith("data:"):
                found.append(json.loads(line.removeprefix("data:").strip()))
                if len(found) == count:
                    break
    return found


async def test_credentials_already_in_the_log_are_shown_redacted(ferry: Ferry) -> None:
    # An app configured before URLs with credentials were refused: straight into the log.
    old = AppCreated(
        name="shop", source=Source(type="git", url=OLD_URL), hosts=["web-1"], by="admin"
    )
    await app_commands.create_app(ferry.runtime, old)
    svn_url = f"svn://bob:{TOKEN}@svn.example.com/repo"
    await app_commands.update_app(
        ferry.runtime, "shop", {"source": {"type": "svn", "url": svn_url}}, "admin"
    )
    await app_commands.update_app(
        ferry.runtime, "shop", {"source": {"type": "git", "url": OLD_URL}}, "admin"
    )
    ticket = await ferry.submit("dev", "shop")
    command = await ferry.staging.command(ticket)
    assert command.source.url == OLD_URL  # type: ignore[attr-defined]  # the agent needs it

    listed = await ferry.get("dev", "/apps")
    assert [app["source"]["url"] for app in listed.json()] == [SHOWN]
    assert (await ferry.get("dev", "/apps/shop")).json()["source"]["url"] == SHOWN
    log = (await ferry.get("dev", "/events", limit=1000)).json()["events"]
    timeline = (await ferry.get("dev", f"/tickets/{ticket}/events")).json()["events"]
    async with over_tcp(ferry.api.app) as base:
        live = await sse_events(base, ferry.auth("dev"), len(log))
    for shown in (log, timeline, live):
        text = json.dumps(shown)
        assert TOKEN not in text and "bob" not in text and "deploy:" not in text
    assert json.dumps(log).count(SHOWN) == 3  # app.created, the last update, staging request
    assert "svn://***@svn.example.com/repo" in json.dumps(log)
    staging = next(e for e in timeline if e["type"] == "ticket.staging_requested")
    assert staging["data"]["source"]["url"] == SHOWN
    assert [e["position"] for e in live] == [e["position"] for e in log]
    # The log itself is unchanged: its hash chain still holds.
    assert (await ferry.get("admin", "/events/verify")).json()["ok"] is True
