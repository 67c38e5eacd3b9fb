"""Apps, hosts, the audit log and the probes over HTTP against the real API (PostgreSQL,
RabbitMQ): app config and its validation, host queues that wait for agents, hosts online or not
from heartbeats sent over the real bus, drift, the events feed and its SSE stream, /metrics, and
read models that rebuild to the same state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from api_client import Api, over_tcp
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS, Bus
from ferry_events.envelope import Message
from ferry_events.schemas import AgentHeartbeat, PublishRequested, ReleaseTagged

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

WAIT = 20.0
SHOP = {
    "name": "shop",
    "source": {"type": "git", "url": "https://git.example.com/shop.git"},
    "staging_url": "https://staging.example.com/shop/",
    "hosts": ["web-1", "web-2"],
    "target_path": "/srv/shop",
    "excludes": [".git", "*.log"],
    "keep_releases": 5,
}


@pytest.fixture
async def agent_bus(amqp_url: str) -> AsyncIterator[Bus]:
    """A separate connection, as an agent on another machine has."""
    bus = await open_bus(amqp_url)
    yield bus
    await bus.close()


async def create_shop(api: Api, **changes: Any) -> dict[str, Any]:
    admin = await api.user("admin", "admin")
    response = await api.http.post("/api/v1/apps", json={**SHOP, **changes}, headers=admin)
    assert response.status_code == 201, response.text
    app: dict[str, Any] = response.json()
    return app


async def test_an_admin_creates_and_changes_an_app_and_the_log_says_who(api: Api) -> None:
    admin = await api.user("admin", "admin")
    dev = await api.user("dev", "developer")
    start = await api.runtime.store.last_position()
    created = await create_shop(api)
    assert {k: created[k] for k in SHOP} == SHOP
    assert created["created_by"] == created["updated_by"] == "admin"
    assert (await api.http.get("/api/v1/apps", headers=dev)).json() == [created]
    assert (await api.http.get("/api/v1/apps/shop", headers=dev)).json() == created
    assert (await api.http.get("/api/v1/apps/blog", headers=dev)).status_code == 404

    changed = await api.http.patch(
        "/api/v1/apps/shop",
        headers=admin,
        json={"keep_releases": 3, "hosts": ["web-1", "web-3"], "target_path": "/srv/shop"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["keep_releases"] == 3 and changed.json()["hosts"] == ["web-1", "web-3"]
    unchanged = await api.http.patch("/api/v1/apps/shop", json={"keep_releases": 3}, headers=admin)
    assert unchanged.status_code == 200
    assert unchanged.json()["updated_at"] == changed.json()["updated_at"]  # no new event

    events = [e for e in await api.events(after=start) if e["stream"] == "app-shop"]
    assert [(e["type"], e["metadata"]["actor"]) for e in events] == [
        ("app.created", "admin"),
        ("app.updated", "admin"),
    ]
    assert events[1]["data"]["changes"] == {"keep_releases": 3, "hosts": ["web-1", "web-3"]}
    again = await api.http.post("/api/v1/apps", json=SHOP, headers=admin)
    assert again.status_code == 409


BAD_APPS = [
    ("source.url", {"source": {"type": "git", "url": "http://git.example.com/shop.git"}}),
    ("source.url", {"source": {"type": "git", "url": "ftp://git.example.com/shop.git"}}),
    ("source.url", {"source": {"type": "git", "url": "file:///srv/repos/shop.git"}}),
    ("source.url", {"source": {"type": "git", "url": "ssh://-oProxyCommand=x/shop"}}),
    ("source.url", {"source": {"type": "git", "url": "ext::sh -c touch% /tmp/pwned"}}),
    ("source.url", {"source": {"type": "svn", "url": "svn+ssh://-oProxyCommand=x/r"}}),
    ("source.url", {"source": {"type": "svn", "url": "https://svn.example.com/r\n--x"}}),
    ("source.url", {"source": {"type": "git", "url": "https://ci:t0ken@git.example.com/s"}}),
    ("source.url", {"source": {"type": "svn", "url": "svn://t0ken@svn.example.com/r"}}),
    ("source.type", {"source": {"type": "cvs", "url": "https://cvs.example.com/r"}}),
    ("source.url", {"source": {"type": "git"}}),
    ("hosts.0", {"hosts": ["-oProxyCommand=x"]}),
    ("hosts.1", {"hosts": ["web-1", "web 2"]}),
    ("hosts", {"hosts": ["web-1", "web-1"]}),
    ("name", {"name": "-shop"}),
    ("name", {"name": "Shop_1"}),
    ("keep_releases", {"keep_releases": 0}),
    ("keep_releases", {"keep_releases": 101}),
    ("target_path", {"target_path": "srv/shop"}),
    ("target_path", {"target_path": "/srv/../etc"}),
    ("excludes.0", {"excludes": ["--delete-excluded"]}),
    ("excludes.0", {"excludes": ["+ secrets"]}),
    ("staging_url", {"staging_url": "javascript:alert(1)"}),
    ("staging_url", {"staging_url": "https://qa:pw@staging.example.com/"}),
    ("owner", {"owner": "me"}),
]


async def test_bad_app_config_is_422_naming_the_field_and_writes_nothing(api: Api) -> None:
    admin = await api.user("admin", "admin")
    await create_shop(api)
    before = await api.runtime.store.last_position()
    for field, change in BAD_APPS:
        body = {**SHOP, "name": "blog", **change}
        response = await api.http.post("/api/v1/apps", json=body, headers=admin)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["message"].startswith(field), (change, response.text)
        if field in ("name", "owner"):
            continue
        patched = await api.http.patch("/api/v1/apps/shop", json=change, headers=admin)
        assert patched.status_code == 422, (change, patched.text)
        assert patched.json()["message"].startswith(field), (change, patched.text)
    assert await api.runtime.store.last_position() == before
    assert (await api.http.get("/api/v1/apps/blog", headers=admin)).status_code == 404


async def test_file_urls_only_where_the_settings_allow_them(api: Api) -> None:
    local = {"source": {"type": "git", "url": "file:///srv/repos/shop.git"}}
    admin = await api.user("admin", "admin")
    refused = await api.http.post("/api/v1/apps", json={**SHOP, **local}, headers=admin)
    assert refused.status_code == 422
    assert "scheme must be one of ['https', 'ssh']" in refused.json()["message"]
    api.runtime.settings.allow_file_urls = True
    await create_shop(api, **local)
    remote = await api.http.patch(
        "/api/v1/apps/shop",
        headers=admin,
        json={"source": {"type": "git", "url": "file://host/relative"}},
    )
    assert remote.status_code == 422


async def test_a_hosts_commands_wait_in_its_queue_until_its_agent_starts(
    api: Api, agent_bus: Bus
) -> None:
    await create_shop(api, hosts=["web-1"])
    command = Message(
        message_id="m-1",
        routing_key="host.sync_requested.web-1",
        type="host.sync_requested",
        body={"probe": 1},
    )
    await agent_bus.publish(EVENTS, [command], mandatory=True)  # Unroutable without a queue
    received: asyncio.Queue[Message] = asyncio.Queue()
    await agent_bus.consume("host.web-1", received.put)  # the agent comes up only now
    async with asyncio.timeout(WAIT):
        assert (await received.get()).message_id == "m-1"


async def send_heartbeat(bus: Bus, host: str, apps: dict[str, int | None]) -> None:
    beat = AgentHeartbeat(
        host=host,
        agent="ferry-rsync-agent",
        agent_version="1.2.3",
        apps=apps,
        sent_at=datetime.now(UTC).isoformat(),
    )
    await bus.publish(REPORTS, [Message.report(beat)])


async def hosts_when(api: Api, ready: Any) -> dict[str, dict[str, Any]]:
    """GET /hosts, polled until `ready(hosts by name)` holds."""
    dev = await api.user("dev", "developer")
    async with asyncio.timeout(WAIT):
        while True:
            response = await api.http.get("/api/v1/hosts", headers=dev)
            assert response.status_code == 200, response.text
            hosts = {h["host"]: h for h in response.json()}
            if ready(hosts):
                return hosts
            await asyncio.sleep(0.1)


async def test_hosts_are_online_while_their_agents_send_heartbeats(
    api: Api, agent_bus: Bus
) -> None:
    await create_shop(api)
    await send_heartbeat(agent_bus, "web-1", {"shop": None})
    await send_heartbeat(agent_bus, "edge-9", {})  # an agent no app names yet
    hosts = await hosts_when(api, lambda h: h.get("web-1", {}).get("online") and "edge-9" in h)
    assert sorted(hosts) == ["edge-9", "web-1", "web-2"]
    web1 = hosts["web-1"]
    assert (web1["agent"], web1["agent_version"]) == ("ferry-rsync-agent", "1.2.3")
    assert web1["apps"] == [
        {
            "app": "shop",
            "configured": True,
            "current": None,
            "target": None,
            "latest": None,
            "drift": False,
        }
    ]
    assert hosts["web-2"]["online"] is False and hosts["web-2"]["last_seen"] is None
    assert hosts["edge-9"]["apps"] == []

    api.runtime.settings.heartbeat_timeout_seconds = 0.5
    await asyncio.sleep(0.6)
    hosts = await hosts_when(api, lambda h: not h["web-1"]["online"])
    assert hosts["web-1"]["last_seen"] is not None


async def test_drift_is_a_host_not_running_what_the_latest_publish_asked_for(
    api: Api, agent_bus: Bus
) -> None:
    await create_shop(api)
    # The facts the ticket side would record, on a stream of their own (no ticket to drive).
    await api.runtime.append(
        "fixture-shop-release",
        [
            PublishRequested(ticket_id="t1", app="shop", by="lead", version=1),
            ReleaseTagged(
                ticket_id="t1",
                app="shop",
                version=1,
                commit="c" * 40,
                tree="t" * 40,
                digest="sha256:" + "d" * 64,
                files=3,
                bytes=10,
            ),
        ],
        0,
        actor="ferry",
    )
    await send_heartbeat(agent_bus, "web-1", {"shop": 1})
    await send_heartbeat(agent_bus, "web-2", {"shop": None})
    hosts = await hosts_when(api, lambda h: h["web-1"]["online"] and h["web-2"]["online"])
    assert hosts["web-1"]["apps"][0] == {
        "app": "shop",
        "configured": True,
        "current": 1,
        "target": 1,
        "latest": 1,
        "drift": False,
    }
    assert hosts["web-2"]["apps"][0]["drift"] is True


async def test_the_audit_log_pages_in_global_order_and_its_chain_verifies(api: Api) -> None:
    admin = await api.user("admin", "admin")
    for name in ("a1", "a2", "a3", "a4"):
        await api.user(name)
    seen, after = [], 0
    while True:
        page = await api.http.get(
            "/api/v1/events", params={"after": after, "limit": 2}, headers=admin
        )
        assert page.status_code == 200
        body = page.json()
        seen += [e["position"] for e in body["events"]]
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == list(range(1, await api.runtime.store.last_position() + 1))
    assert len(seen) >= 5
    verified = (await api.http.get("/api/v1/events/verify", headers=admin)).json()
    assert verified["ok"] is True and verified["events"] == len(seen)
    bad = await api.http.get("/api/v1/events", params={"limit": 0}, headers=admin)
    assert bad.status_code == 422 and bad.json()["message"].startswith("limit")


async def read_sse(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    """The next `count` SSE messages (id, data) of a streaming response."""
    messages, current = [], {}
    async for line in response.aiter_lines():
        if line.startswith(("id:", "data:")):
            key, _, value = line.partition(":")
            current[key] = value.strip()
        elif not line and "data" in current:
            messages.append({"id": int(current["id"]), **json.loads(current["data"])})
            current = {}
            if len(messages) == count:
                return messages
    raise AssertionError("stream ended")


async def test_the_event_stream_delivers_new_events_and_resumes(api: Api) -> None:
    admin = await api.user("admin", "admin")
    async with over_tcp(api.app) as url, httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        async with http.stream("GET", "/api/v1/events/stream", headers=admin) as live:
            assert live.status_code == 200
            assert live.headers["content-type"].startswith("text/event-stream")
            await api.user("carol")
            async with asyncio.timeout(WAIT):
                [event] = await read_sse(live, 1)
        assert (event["type"], event["data"]["username"]) == ("user.created", "carol")
        assert event["id"] == event["position"] == await api.runtime.store.last_position()

        resume = {**admin, "Last-Event-ID": str(event["position"] - 1)}
        async with http.stream("GET", "/api/v1/events/stream", headers=resume) as again:
            async with asyncio.timeout(WAIT):
                assert [e["position"] for e in await read_sse(again, 1)] == [event["position"]]
        token = admin["Authorization"].removeprefix("Bearer ")
        async with http.stream(
            "GET", "/api/v1/events/stream", params={"token": token, "after": 0}
        ) as browser:
            async with asyncio.timeout(WAIT):
                assert [e["position"] for e in await read_sse(browser, 2)] == [1, 2]
        refused = await http.get("/api/v1/events/stream", params={"token": "nope"})
        assert refused.status_code == 401


async def test_probes_and_metrics(api: Api) -> None:
    assert (await api.http.get("/readyz")).json() == {"status": "ready"}
    admin = await api.user("admin", "admin")
    await create_shop(api)
    assert (await api.http.get("/metrics")).status_code == 401
    response = await api.http.get("/metrics", headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'ferry_http_requests_total{method="POST",route="/api/v1/apps",status="201"} 1.0' in text
    assert 'route="/api/v1/auth/login",status="200"' in text
    assert 'ferry_tickets{state="testing"} 0.0' in text
    for name in (
        "ferry_relay_lag_events",
        "ferry_report_ingest_lag_seconds",
        'ferry_projection_lag_events{projection="apps"}',
        "ferry_events_stored",
    ):
        assert name in text, name


async def snapshot(api: Api, collections: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {c: await api.runtime.store.find(c, limit=10_000) for c in collections}


async def test_users_apps_and_hosts_read_models_rebuild_to_the_same_state(
    api: Api, agent_bus: Bus
) -> None:
    admin = await api.user("admin", "admin")
    dev = await api.user("dev")
    await api.http.patch("/api/v1/users/dev", json={"role": "lead"}, headers=admin)
    token = (await api.http.post("/api/v1/tokens", json={"name": "x"}, headers=dev)).json()
    await api.http.delete(f"/api/v1/tokens/{token['id']}", headers=dev)
    await api.http.post("/api/v1/tokens", json={"name": "kept"}, headers=admin)
    await create_shop(api)
    await api.http.patch("/api/v1/apps/shop", json={"hosts": ["web-2", "web-3"]}, headers=admin)
    await send_heartbeat(agent_bus, "web-2", {"shop": None})
    await hosts_when(api, lambda h: h.get("web-2", {}).get("online"))

    collections = ["users", "tokens", "apps", "hosts", "app_hosts"]
    before = await snapshot(api, collections)
    assert all(before.values())
    await api.runtime.projector.rebuild(["users", "apps", "hosts"])
    assert await snapshot(api, collections) == before
    # Secrets and heartbeats are not projections: a rebuild keeps them.
    assert (await api.http.get("/api/v1/me", headers=await api.login("dev"))).status_code == 200
    assert await api.runtime.store.get("heartbeats", "web-2") is not None
