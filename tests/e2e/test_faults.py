"""Faults with real processes: an rsync agent killed with SIGKILL in the middle of a sync, a host
whose release directory is gone, an agent that is down while its release is published. Every
host's `current` is always a complete release, and the system converges once the host is back."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from cluster import HOSTS, Cluster, Host, MakeCluster
from ferry_rest import Ferry, app_body, as_users
from processes import wait_until
from source_repos import GitSource, Tree, random_files, snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SLOW_HOST = ("web-3", "ferry-web3", 1000)  # KiB/s: a 3 MiB release takes ~3 s to pull


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


async def test_a_release_waits_for_an_agent_that_is_down_and_lands_when_it_is_back(
    cluster: Cluster, ferry: Ferry, git_source: GitSource
) -> None:
    releases = await first_release(cluster, ferry, git_source)
    cluster.agent("web-3").stop()

    async def offline() -> bool:
        hosts = {h["host"]: h for h in await ferry.ok("dev", "GET", "/hosts")}
        return not hosts["web-3"]["online"] and hosts["web-1"]["online"]

    await wait_until(offline, 20, "web-3 to show offline")
    git_source.commit({"index.html": "<h1>shop v3</h1>\n"}, "fourth")
    releases[2] = git_source.tree("main")
    ticket_id = await release_until_publishing(ferry, git_source)

    async def others_done() -> dict[str, str] | None:
        ticket = await ferry.ticket("dev", ticket_id)
        states = {host: row["state"] for host, row in ticket["hosts"].items()}
        return states if states.get("web-1") == states.get("web-2") == "completed" else None

    states = await wait_until(others_done, 30, "web-1 and web-2 to complete")
    assert states["web-3"] == "syncing"
    assert (await ferry.ticket("dev", ticket_id))["state"] == "publishing"
    assert live_release(cluster.hosts["web-3"], "shop", releases) == 1

    await cluster.restart("agent-web-3")
    await ferry.wait_state("dev", ticket_id, "published")
    assert_live(cluster, "shop", 2, releases)
