"""Outgoing webhooks against the real API and a real HTTP receiver on a local port: each format
gets the notices it subscribed to as a ticket goes to published, a failing receiver is retried,
a dead one holds nothing up and is given up, a delivery pending when the API stops is made by the
next one, and the webhook's URL (its token) appears in no event and no log.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from api_client import make_api_settings, over_tcp, serving_api
from fastapi import FastAPI, Request, Response
from ferry_api.settings import Settings
from ferry_api.workers.webhook_deliveries import DELIVERIES
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

TOKEN = "T0SECRET-xoxb-4242-very-secret-token"  # what must never leak
ALL_EVENTS = ["approval_requested", "approved", "rejected", "published", "publish_failed"]
WAIT = 20.0


@dataclass
class Receiver:
    """Records every POST by path; /flaky/... answers 500 to its first two, and /<kind>/...
    answers 500 while `kind` is in `down`."""

    base: str = ""
    posts: dict[str, list[tuple[float, Any]]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{kind}/{token}")
        async def receive(kind: str, token: str, request: Request) -> Response:
            calls = self.posts.setdefault(kind, [])
            calls.append((time.monotonic(), await request.json()))
            failing = kind in self.down or (kind == "flaky" and len(calls) <= 2)
            status = 500 if failing else 200
            return Response(status_code=status)

        return app

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/{TOKEN}"

    async def bodies(self, kind: str, count: int) -> list[Any]:
        """The first `count` bodies posted to /kind/..., once they have arrived."""
        async with asyncio.timeout(WAIT):
            while len(self.posts.get(kind, [])) < count:
                await asyncio.sleep(0.05)
        return [body for _, body in self.posts[kind][:count]]


@pytest.fixture
def api_settings(pg_url: str, amqp_url: str, tmp_path: Path) -> Settings:
    """The receivers listen on 127.0.0.1, an inside address: allowed explicitly."""
    return make_api_settings(pg_url, amqp_url, tmp_path, webhook_allow_hosts="127.0.0.1")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    async with over_tcp(found.app()) as base:
        found.base = base
        yield found


@pytest.fixture
async def ferry(api: Any) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        await stack.add_app("shop")
        yield stack


async def put_hook(ferry: Ferry, hook_id: str, body: dict[str, Any], user: str = "admin") -> Any:
    return await ferry.http.put(
        f"/api/v1/apps/shop/webhooks/{hook_id}", json=body, headers=ferry.auth(user)
    )


async def add_hook(ferry: Ferry, hook_id: str, url: str, fmt: str, events: list[str]) -> None:
    response = await put_hook(ferry, hook_id, {"url": url, "format": fmt, "events": events})
    assert response.status_code == 200, response.text


def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Everything logged but the receiver's own access log (its server is not Ferry)."""
    ours = [r for r in caplog.records if not r.name.startswith("uvicorn")]
    return "\n".join(r.getMessage() for r in ours) + "".join(capsys.readouterr())


async def settled(ferry: Ferry) -> None:
    """Until no delivery is pending any more (delivered, given up or dropped)."""
    async with asyncio.timeout(30):
        while await ferry.runtime.store.count(DELIVERIES):
            await asyncio.sleep(0.1)


async def test_each_format_gets_its_notices_and_the_url_leaks_nowhere(
    ferry: Ferry,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_hook(ferry, "audit", receiver.url("json"), "json", ALL_EVENTS)
    await add_hook(ferry, "chat", receiver.url("slack"), "slack", ["approved", "published"])
    await add_hook(ferry, "robot", receiver.url("dingtalk"), "dingtalk", ["published"])

    ticket_id = await ferry.to_state("published", "shop")

    notices = await receiver.bodies("json", 3)
    assert [(n["event"], n["ticket_id"], n["app"]) for n in notices] == [
        ("approval_requested", ticket_id, "shop"),
        ("approved", ticket_id, "shop"),
        ("published", ticket_id, "shop"),
    ]
    assert (notices[1]["by"], notices[2]["version"]) == ("lead", 1)
    slack = await receiver.bodies("slack", 2)
    assert [set(body) for body in slack] == [{"text"}, {"text"}]
    assert f"ticket {ticket_id[:8]} approved by lead" in slack[0]["text"]
    assert "release 1 published" in slack[1]["text"]
    (robot,) = await receiver.bodies("dingtalk", 1)
    assert robot["msgtype"] == "text"
    assert "shop: release 1 published" in robot["text"]["content"]
    await asyncio.sleep(0.5)  # nothing more arrives than was asked for
    assert {kind: len(calls) for kind, calls in receiver.posts.items()} == {
        "json": 3,
        "slack": 2,
        "dingtalk": 1,
    }

    listed = (await ferry.get("admin", "/apps/shop/webhooks")).json()
    assert [(h["id"], h["format"], h["url"]) for h in listed] == [
        ("audit", "json", f"{receiver.base}/…"),
        ("chat", "slack", f"{receiver.base}/…"),
        ("robot", "dingtalk", f"{receiver.base}/…"),
    ]
    events = await ferry.api.events()
    changed = [e["data"] for e in events if e["type"] == "app.webhook_changed"]
    assert changed[0] == {
        "app": "shop",
        "webhook_id": "audit",
        "change": "added",
        "format": "json",
        "events": sorted(ALL_EVENTS),
        "by": "admin",
    }
    assert [(c["webhook_id"], c["change"]) for c in changed] == [
        ("audit", "added"),
        ("chat", "added"),
        ("robot", "added"),
    ]
    assert TOKEN not in json.dumps(events)
    await settled(ferry)
    text = logged(caplog, capsys)
    assert "webhook.delivered" in text
    assert TOKEN not in text


async def test_a_rejection_is_announced(ferry: Ferry, receiver: Receiver) -> None:
    await add_hook(ferry, "audit", receiver.url("json"), "json", ["rejected"])
    ticket_id = await ferry.to_state("awaiting_approval", "shop")
    await ferry.act("lead", ticket_id, "reject", reason="not on a friday")
    (notice,) = await receiver.bodies("json", 1)
    assert (notice["event"], notice["by"], notice["detail"]) == (
        "rejected",
        "lead",
        "not on a friday",
    )


async def test_a_failing_receiver_gets_the_notice_on_the_third_try(
    ferry: Ferry, receiver: Receiver
) -> None:
    await add_hook(ferry, "flaky", receiver.url("flaky"), "slack", ["approval_requested"])
    ticket_id = await ferry.to_state("awaiting_approval", "shop")
    await receiver.bodies("flaky", 3)
    await asyncio.sleep(0.3)
    calls = receiver.posts["flaky"]
    assert len(calls) == 3
    assert all(f"ticket {ticket_id[:8]} awaits approval" in body["text"] for _, body in calls)
    pauses = [later[0] - earlier[0] for earlier, later in itertools.pairwise(calls)]
    assert pauses[0] >= 0.9 and pauses[1] >= 1.9  # backing off


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_dead_receiver_holds_up_neither_the_release_nor_other_webhooks(
    ferry: Ferry,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    await add_hook(ferry, "dead", f"http://127.0.0.1:{port}/hook/{TOKEN}", "json", ALL_EVENTS)
    await add_hook(ferry, "alive", receiver.url("json"), "json", ["published"])
    ticket_id = await ferry.to_state("published", "shop")
    (notice,) = await receiver.bodies("json", 1)
    assert (notice["event"], notice["ticket_id"]) == ("published", ticket_id)
    # After its five tries (15 s of pauses) each notice to the dead one is given up.
    await settled(ferry)
    given_up = [
        line for line in logged(caplog, capsys).splitlines() if "webhook.delivery_given_up" in line
    ]
    assert len(given_up) == 3  # approval requested, approved, published
    assert all("ConnectError" in line and f"127.0.0.1:{port}/…" in line for line in given_up)
    assert not any(TOKEN in line for line in given_up)


async def test_a_delivery_pending_when_the_api_stops_is_made_after_a_restart(
    api_settings: Settings,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.down.add("json")
    async with serving_api(api_settings) as first, stand_ins(first) as ferry:
        await ferry.add_app("shop")
        await add_hook(ferry, "audit", receiver.url("json"), "json", ["approval_requested"])
        ticket_id = await ferry.to_state("awaiting_approval", "shop")
        await receiver.bodies("json", 1)  # answered 500: the next try is due a second later
    tried = len(receiver.posts["json"])
    receiver.down.clear()

    async with serving_api(api_settings) as second:
        notices = await receiver.bodies("json", tried + 1)
        assert {(n["event"], n["ticket_id"]) for n in notices} == {
            ("approval_requested", ticket_id)
        }
        async with asyncio.timeout(WAIT):
            while await second.runtime.store.count(DELIVERIES):
                await asyncio.sleep(0.1)
        admin = await second.login("admin")
        response = await second.http.get("/api/v1/events", params={"limit": 1000}, headers=admin)
        events = response.json()["events"]
    await asyncio.sleep(1.5)  # no stray try of a delivery that was already made
    assert len(receiver.posts["json"]) == tried + 1
    changed = [e["data"] for e in events if e["type"] == "app.webhook_changed"]
    assert [(c["webhook_id"], c["change"], c["format"]) for c in changed] == [
        ("audit", "added", "json")
    ]
    assert TOKEN not in json.dumps(events)
    text = logged(caplog, capsys)
    assert "webhook.deliveries_resumed" in text and "webhook.delivered" in text
    assert TOKEN not in text


async def test_a_delivery_to_a_removed_webhook_is_dropped(
    ferry: Ferry,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.down.add("json")
    await add_hook(ferry, "gone", receiver.url("json"), "json", ["approval_requested"])
    await ferry.to_state("awaiting_approval", "shop")
    await receiver.bodies("json", 1)
    deleted = await ferry.http.delete(
        "/api/v1/apps/shop/webhooks/gone", headers=ferry.auth("admin")
    )
    assert deleted.status_code == 204
    await settled(ferry)  # at its next try the webhook is gone
    assert len(receiver.posts["json"]) == 1
    assert "webhook.delivery_dropped" in logged(caplog, capsys)
    changed = [e["data"] for e in await ferry.api.events() if e["type"] == "app.webhook_changed"]
    assert [(c["change"], c["events"]) for c in changed] == [
        ("added", ["approval_requested"]),
        ("removed", ["approval_requested"]),
    ]


async def test_only_admins_configure_webhooks(ferry: Ferry, receiver: Receiver) -> None:
    body = {"url": receiver.url("json"), "format": "json", "events": ["published"]}
    for user in ("dev", "lead"):
        assert (await put_hook(ferry, "w", body, user)).status_code == 403
        assert (await ferry.get(user, "/apps/shop/webhooks")).status_code == 403
        gone = await ferry.http.delete("/api/v1/apps/shop/webhooks/w", headers=ferry.auth(user))
        assert gone.status_code == 403
    assert (await put_hook(ferry, "w", body)).status_code == 200
    deleted = await ferry.http.delete("/api/v1/apps/shop/webhooks/w", headers=ferry.auth("admin"))
    assert deleted.status_code == 204
    assert (await ferry.get("admin", "/apps/shop/webhooks")).json() == []
    assert (await ferry.get("admin", "/apps/shop/webhooks/w")).status_code == 404


async def test_bad_webhooks_are_refused_and_write_nothing(ferry: Ferry) -> None:
    good: dict[str, Any] = {
        "url": "https://hooks.slack.com/services/x",
        "format": "slack",
        "events": ["approved"],
    }
    refused: list[dict[str, Any]] = [
        {**good, "url": "http://hooks.example.com/x"},  # plain http off this machine
        {**good, "url": "ftp://127.0.0.1/x"},
        {**good, "url": "not a url"},
        {**good, "url": "https:///no-host"},
        {**good, "url": "https://hooks.example.com:99999/x"},
        {**good, "url": "https://169.254.169.254/latest/meta-data/"},  # inside, not allowed
        {**good, "format": "teams"},
        {**good, "events": []},
        {**good, "events": ["deployed"]},
        {**good, "extra": 1},
    ]
    before = await ferry.runtime.store.last_position()
    for body in refused:
        response = await put_hook(ferry, "w", body)
        assert response.status_code == 422, (body, response.text)
    assert (await put_hook(ferry, "Bad Id!", good)).status_code == 422
    unknown = await ferry.http.put(
        "/api/v1/apps/nowhere/webhooks/w", json=good, headers=ferry.auth("admin")
    )
    assert unknown.status_code == 404
    assert await ferry.runtime.store.last_position() == before
    assert (await ferry.get("admin", "/apps/shop/webhooks")).json() == []
