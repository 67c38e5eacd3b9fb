"""Faults with real processes: an rsync agent killed with SIGKILL in the middle of a sync, a host
whose release directory is gone, an agent that is down while its release is published. Every
host's `current` is always a complete release, and the system converges once the host is back
(a host silent past FERRY_SYNC_TIMEOUT_SECONDS fails the publish; a retry then lands it)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cluster import HOSTS, Cluster, Host, MakeCluster, ferry_cluster
from ferry_rest import Ferry, app_body, as_users
from processes import Service, wait_until
from source_repos import GitSource, Tree, random_files, snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SLOW_HOST = ("web-3", "ferry-web3", 1000)  # KiB/s: a 3 MiB release takes ~3 s to pull
SYNC_DEADLINE = 8  # seconds: real rsyncs of a small tree finish well within it


@pytest.fixture
async def short_deadline_cluster(
    pg_url: str, amqp_url: str, tmp_path: Path, watch_logs: Callable[[Service], None]
) -> AsyncIterator[Cluster]:
    """The whole system, its API failing a host that has not reported in SYNC_DEADLINE s."""
    cluster = ferry_cluster(tmp_path / "cluster", pg_url, amqp_url, HOSTS)
    cluster.services["api"].env["FERRY_SYNC_TIMEOUT_SECONDS"] = str(SYNC_DEADLINE)
    for service in cluster.services.values():
        watch_logs(service)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


def live_release(host: Host, app: str, releases: dict[int, Tree]) -> int | None:
    """The version `current` names on the host, after checking it is that release, complete."""
    if host.current_link(app) is None:
        return None
    live = Path(os.path.realpath(host.current(app)))  # releases/N never changes once named
    version = int(live.name)
    assert snapshot(live) == releases[version], f"{host.name}: releases/{version} is not whole"
    return version


def assert_live(cluster: Cluster, app: str, version: int, releases: dict[int, Tree]) -> None:
    for host in cluster.hosts.values():
        assert live_release(host, app, releases) == version, host.name


def bytes_under(directory: Path) -> int:
    """What rsync has written so far (its temporary files come and go meanwhile)."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for path in directory.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size if path.is_file() else 0
    return total


async def first_release(cluster: Cluster, ferry: Ferry, git: GitSource) -> dict[int, Tree]:
    """App shop on every host, its main branch released as version 1; the trees by version."""
    body = app_body("shop", "git", git.url, sorted(cluster.hosts))
    await ferry.ok("admin", "POST", "/apps", body, 201)
    await ferry.deploy("dev", "lead", "shop", "main")
    releases = {1: git.tree("main")}
    assert_live(cluster, "shop", 1, releases)
    return releases


async def release_until_publishing(ferry: Ferry, git: GitSource, ref: str = "main") -> str:
    ticket = await ferry.submit("dev", "shop", ref)
    await ferry.wait_state("dev", ticket["id"], "testing")
    await ferry.act("dev", ticket["id"], "pass-tests")
    await ferry.act("lead", ticket["id"], "approve")
    await ferry.act("dev", ticket["id"], "publish")
    return str(ticket["id"])


async def test_an_agent_killed_mid_sync_never_serves_a_half_tree_and_converges(
    make_cluster: MakeCluster, git_source: GitSource
) -> None:
    cluster = await make_cluster([*HOSTS[:2], SLOW_HOST])
    ferry = await as_users(cluster.api_url, cluster.admin_password)
    releases = await first_release(cluster, ferry, git_source)

    git_source.commit(random_files(3, 1 << 20), "three MiB of assets")
    releases[2] = git_source.tree("main")
    ticket_id = await release_until_publishing(ferry, git_source)
    slow = cluster.hosts["web-3"]
    incoming = slow.target("shop") / "releases" / "2.tmp"

    async def pulling() -> bool:
        for host in cluster.hosts.values():
            live_release(host, "shop", releases)
        return incoming.is_dir() and bytes_under(incoming) > 0

    await wait_until(pulling, 30, "web-3 to be half-way through pulling release 2")
    cluster.agent("web-3").kill()
    assert live_release(slow, "shop", releases) == 1
    assert not (slow.target("shop") / "releases" / "2").exists()
    ticket = await ferry.ticket("dev", ticket_id)
    assert ticket["state"] == "publishing"
    assert ticket["hosts"]["web-3"]["state"] == "syncing"

    await cluster.restart("agent-web-3")

    async def settled() -> str | None:
        for host in cluster.hosts.values():
            live_release(host, "shop", releases)
        state = (await ferry.ticket("dev", ticket_id))["state"]
        return state if state in ("published", "publish_failed") else None

    if await wait_until(settled, 60, "the publish to settle") == "publish_failed":
        await ferry.act("dev", ticket_id, "retry")
    await ferry.wait_state("dev", ticket_id, "published")
    assert_live(cluster, "shop", 2, releases)
    assert not incoming.exists()
    await ferry.close()


async def test_a_host_that_is_down_fails_the_publish_until_it_is_back_and_retried(
    cluster: Cluster, ferry: Ferry, git_source: GitSource
) -> None:
    releases = await first_release(cluster, ferry, git_source)

    down = cluster.hosts["web-2"]
    unmounted = down.target("shop").with_name("shop.unmounted")
    down.target("shop").rename(unmounted)  # the host's disk is gone
    git_source.commit({"index.html": "<h1>shop v3</h1>\n"}, "fourth")
    releases[2] = git_source.tree("main")
    ticket_id = await release_until_publishing(ferry, git_source)
    failed = await ferry.wait_state("dev", ticket_id, "publish_failed")
    assert {host: row["state"] for host, row in failed["hosts"].items()} == {
        "web-1": "completed",
        "web-2": "failed",
        "web-3": "completed",
    }, failed["hosts"]
    assert "missing" in failed["hosts"]["web-2"]["error"]
    for name in ("web-1", "web-3"):
        assert live_release(cluster.hosts[name], "shop", releases) == 2

    unmounted.rename(down.target("shop"))
    assert live_release(down, "shop", releases) == 1
    await ferry.act("dev", ticket_id, "retry")
    await ferry.wait_state("dev", ticket_id, "published")
    assert_live(cluster, "shop", 2, releases)


async def test_a_host_whose_agent_is_down_fails_the_publish_and_lands_after_a_retry(
    short_deadline_cluster: Cluster, git_source: GitSource
) -> None:
    cluster = short_deadline_cluster
    ferry = await as_users(cluster.api_url, cluster.admin_password)
    releases = await first_release(cluster, ferry, git_source)
    web3 = cluster.hosts["web-3"]
    cluster.agent("web-3").stop()

    async def offline() -> bool:
        hosts = {h["host"]: h for h in await ferry.ok("dev", "GET", "/hosts")}
        return not hosts["web-3"]["online"] and hosts["web-1"]["online"]

    await wait_until(offline, 20, "web-3 to show offline")
    git_source.commit({"index.html": "<h1>shop v3</h1>\n"}, "fourth")
    releases[2] = git_source.tree("main")
    ticket_id = await release_until_publishing(ferry, git_source)

    failed = await ferry.wait_state("dev", ticket_id, "publish_failed")
    assert {host: row["state"] for host, row in failed["hosts"].items()} == {
        "web-1": "completed",
        "web-2": "completed",
        "web-3": "failed",
    }, failed["hosts"]
    assert failed["hosts"]["web-3"]["error"] == (
        f"no report from web-3 within {SYNC_DEADLINE} s: is its agent running?"
    )
    assert live_release(web3, "shop", releases) == 1

    # Back up, the agent takes the request it missed off its durable queue and lands it; its
    # report answers an attempt already failed, so the ticket stays as it was.
    await cluster.restart("agent-web-3")

    async def landed() -> bool:
        return live_release(web3, "shop", releases) == 2

    await wait_until(landed, 30, "web-3 to switch to release 2")
    await wait_until(
        lambda: late_report(ferry, ticket_id, "web-3"), 30, "web-3's late report to be recorded"
    )
    assert (await ferry.ticket("dev", ticket_id))["state"] == "publish_failed"

    await ferry.act("dev", ticket_id, "retry")
    done = await ferry.wait_state("dev", ticket_id, "published")
    assert done["hosts"]["web-3"]["attempt"] == 2
    assert_live(cluster, "shop", 2, releases)
    await ferry.close()


async def late_report(ferry: Ferry, ticket_id: str, host: str) -> bool:
    """Whether the log holds the host's sync report of the ticket's first attempt."""
    after: int | None = 0
    while after is not None:
        page = await ferry.ok("admin", "GET", f"/events?after={after}&limit=1000")
        for event in page["events"]:
            data = event["data"]
            if (
                event["type"] == "host.sync_completed"
                and event["stream"] == f"ticket-{ticket_id}"
                and (data["host"], data["attempt"]) == (host, 1)
            ):
                return True
        after = page["next"]
    return False
