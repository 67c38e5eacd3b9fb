"""Hostile refs and URLs, the classic ways to make git or a shell run a command, are refused at
the API (422, nothing written) and, forged straight onto the bus, by the staging agent (reported
as StagingFailed); no command ever runs: the file they would create never appears. The forged
commands are signed with the API's own key, as if the API itself had been fooled: the staging
agent's checks are the line behind the signature (tests/security: what no trusted key signed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS
from ferry_events.envelope import Message, Metadata, StoredEvent
from ferry_events.signing import CommandSigner, load_private_key
from ferry_rest import Ferry, app_body
from processes import wait_until
from source_repos import GitSource, snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def hostile(pwned: Path) -> list[str]:
    return [
        f"--upload-pack=touch {pwned}",
        f"$(touch {pwned})",
        f"ext::sh -c touch% {pwned}",
        f"ssh://-oProxyCommand=touch {pwned}/repo",
        f"ssh://-oProxyCommand=touch%20{pwned}/repo",
        f"`touch {pwned}`",
        f"main;touch {pwned}",
    ]


def assert_nothing_ran(tmp_path: Path) -> None:
    assert list(tmp_path.rglob("pwned*")) == []


async def test_hostile_refs_and_urls_are_refused_by_the_api(
    cluster: Cluster, ferry: Ferry, git_source: GitSource, tmp_path: Path
) -> None:
    hosts = sorted(cluster.hosts)
    attacks = hostile(tmp_path / "pwned")
    for url in attacks:
        for kind in ("git", "svn"):
            response = await ferry.call(
                "admin", "POST", "/apps", app_body("evil", kind, url, hosts)
            )
            assert response.status_code == 422, (url, response.text)
    assert await ferry.ok("dev", "GET", "/apps") == []

    await ferry.ok("admin", "POST", "/apps", app_body("shop", "git", git_source.url, hosts), 201)
    for url in attacks:
        response = await ferry.call(
            "admin", "PATCH", "/apps/shop", {"source": {"type": "git", "url": url}}
        )
        assert response.status_code == 422, (url, response.text)
    assert (await ferry.ok("dev", "GET", "/apps/shop"))["source"]["url"] == git_source.url

    for ref in attacks:
        response = await ferry.call(
            "dev", "POST", "/tickets", {"app": "shop", "reason": "x", "ref": ref}
        )
        assert response.status_code == 422, (ref, response.text)
    assert (await ferry.ok("dev", "GET", "/tickets"))["total"] == 0

    ticket = await ferry.submit("dev", "shop", "main")
    await ferry.wait_state("dev", ticket["id"], "testing")
    await ferry.act("dev", ticket["id"], "return")
    for ref in attacks:
        response = await ferry.call(
            "dev", "POST", f"/tickets/{ticket['id']}/resubmit", {"ref": ref, "reason": "x"}
        )
        assert response.status_code == 422, (ref, response.text)
    assert (await ferry.ticket("dev", ticket["id"]))["state"] == "returned"
    assert snapshot(cluster.staging_site("shop")) == git_source.tree("main")
    assert_nothing_ran(tmp_path)


def forged_command(ticket_id: str, source: dict[str, str], ref: str) -> Message:
    """A StagingRequested as the relay would publish it, but never checked by the API."""
    stored = StoredEvent(
        position=1_000_000,
        stream=f"ticket-{ticket_id}",
        version=2,
        event_id=uuid.uuid4(),
        type="ticket.staging_requested",
        schema_version=1,
        data={"ticket_id": ticket_id, "app": "shop", "source": source, "ref": ref, "attempt": 1},
        metadata=Metadata(actor="mallory"),
        recorded_at=datetime.now(UTC),
        hash="0" * 64,
    )
    return Message.of_stored(stored, "ticket.staging_requested")


async def test_forged_staging_commands_on_the_bus_are_refused_by_the_agent(
    cluster: Cluster, git_source: GitSource, tmp_path: Path
) -> None:
    good = {"type": "git", "url": git_source.url}
    forged = {}
    for attack in hostile(tmp_path / "pwned"):
        forged[f"ref-{uuid.uuid4().hex[:8]}"] = (good, attack)
        forged[f"url-{uuid.uuid4().hex[:8]}"] = ({"type": "git", "url": attack}, "main")
        forged[f"svn-{uuid.uuid4().hex[:8]}"] = ({"type": "svn", "url": attack}, "trunk")

    failed: dict[str, dict[str, Any]] = {}
    completed: list[str] = []
    bus = await open_bus(cluster.broker_url)
    try:
        await bus.declare_queue("e2e.staging-reports", ["staging.*"], REPORTS)

        async def collect(message: Message) -> None:
            data = message.body["data"]
            if message.type == "staging.failed":
                failed[data["ticket_id"]] = data
            elif message.type == "staging.completed":
                completed.append(data["ticket_id"])

        consumer = await bus.consume("e2e.staging-reports", collect)
        signer = CommandSigner(load_private_key(cluster.signing_key))
        commands = [signer.sign(forged_command(tid, s, ref)) for tid, (s, ref) in forged.items()]
        await bus.publish(EVENTS, commands)  # mandatory: the staging agent's queue takes them

        async def all_refused() -> bool:
            return set(failed) >= set(forged)

        await wait_until(all_refused, 60, "a StagingFailed per command")
        await consumer.stop()
    finally:
        await bus.close()

    assert completed == []
    for ticket_id, report in failed.items():
        assert report["reason"].startswith("refused"), (ticket_id, report)
    assert not cluster.staging_site("shop").exists()
    assert_nothing_ran(tmp_path)
