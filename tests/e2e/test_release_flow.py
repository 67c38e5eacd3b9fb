"""The whole release flow with every service a real process: a git app and an svn app, through
REST only, from a ticket to the same tree live on three hosts, a second release, a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import Cluster
from ferry_rest import Ferry, app_body
from processes import wait_until
from source_repos import GitSource, SvnSource, Tree, snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def assert_live(cluster: Cluster, app: str, version: int, expected: Tree) -> None:
    """Every host serves release `version` of the app, file for file the expected tree."""
    for host in cluster.hosts.values():
        assert host.current_link(app) == f"releases/{version}", host.name
        assert snapshot(host.current(app)) == expected, host.name


async def test_a_git_release_goes_live_on_every_host_and_rolls_back(
    cluster: Cluster, ferry: Ferry, git_source: GitSource
) -> None:
    hosts = sorted(cluster.hosts)
    await ferry.ok("admin", "POST", "/apps", app_body("shop", "git", git_source.url, hosts), 201)

    ticket = await ferry.submit("dev", "shop", "v1.0", reason="first release")
    staged = await ferry.wait_state("dev", ticket["id"], "testing")
    assert staged["staged_commit"] == git_source.git("rev-parse", "v1.0^{commit}").strip()
    assert snapshot(cluster.staging_site("shop")) == git_source.tree("v1.0")

    await ferry.act("dev", ticket["id"], "return", comment="take main instead")
    await ferry.act("dev", ticket["id"], "resubmit", ref="main", reason="main, with v2")
    await ferry.wait_state("dev", ticket["id"], "testing")
    first = git_source.tree("main")
    assert first != git_source.tree("v1.0")
    assert snapshot(cluster.staging_site("shop")) == first

    await ferry.act("dev", ticket["id"], "pass-tests")
    refused = await ferry.call("dev", "POST", f"/tickets/{ticket['id']}/approve")
    assert refused.status_code == 403, refused.text  # four eyes: never the author
    await ferry.act("lead", ticket["id"], "approve")
    await ferry.act("dev", ticket["id"], "publish")
    published = await ferry.wait_state("dev", ticket["id"], "published")
    assert published["version"] == 1
    assert sorted(published["hosts"]) == hosts
    assert_live(cluster, "shop", 1, first)

    git_source.commit(
        {
            "index.html": "<h1>shop v3</h1>\n",
            "static/new.css": "h1{}\n",
            "data/with space.txt": None,
        },
        "fourth",
    )
    second = git_source.tree("main")
    ticket = await ferry.deploy("dev", "lead", "shop", "main")
    assert ticket["version"] == 2
    assert_live(cluster, "shop", 2, second)

    rollback = await ferry.submit("dev", "shop", version=1, reason="v2 broke the cart")
    await ferry.wait_state("dev", rollback["id"], "awaiting_approval")
    await ferry.act("lead", rollback["id"], "approve")
    await ferry.act("dev", rollback["id"], "publish")
    await ferry.wait_state("dev", rollback["id"], "published")
    assert_live(cluster, "shop", 1, first)

    releases = await ferry.ok("dev", "GET", "/apps/shop/releases")
    assert [r["version"] for r in releases["releases"]] == [2, 1]

    async def hosts_report_release_1() -> bool:
        listed = {h["host"]: h for h in await ferry.ok("dev", "GET", "/hosts")}
        shop = {
            name: [a for a in listed[name]["apps"] if a["app"] == "shop"]
            for name in hosts
            if name in listed and listed[name]["online"]
        }
        return len(shop) == len(hosts) and all(
            rows and (rows[0]["current"], rows[0]["drift"]) == (1, False) for rows in shop.values()
        )

    await wait_until(hosts_report_release_1, 15, "GET /hosts to show release 1, no drift")
    verified = await ferry.ok("admin", "GET", "/events/verify")
    assert verified["ok"], verified


async def test_an_svn_release_goes_live_on_every_host(
    cluster: Cluster, ferry: Ferry, svn_source: SvnSource, tmp_path: Path
) -> None:
    hosts = sorted(cluster.hosts)
    await ferry.ok("admin", "POST", "/apps", app_body("blog", "svn", svn_source.url, hosts), 201)

    ticket = await ferry.submit("dev", "blog", "trunk@2")
    staged = await ferry.wait_state("dev", ticket["id"], "testing")
    assert staged["source_revision"] == "2"
    assert snapshot(cluster.staging_site("blog")) == svn_source.tree("trunk", 2, tmp_path / "r2")

    await ferry.act("lead", ticket["id"], "return", comment="the cache is in r3")
    await ferry.act("dev", ticket["id"], "resubmit", ref="trunk", reason="trunk head")
    staged = await ferry.wait_state("dev", ticket["id"], "testing")
    head = svn_source.tree("trunk", 3, tmp_path / "r3")
    assert staged["source_revision"] == "3"
    assert snapshot(cluster.staging_site("blog")) == head

    await ferry.act("dev", ticket["id"], "pass-tests")
    await ferry.act("lead", ticket["id"], "approve")
    await ferry.act("lead", ticket["id"], "publish")
    published = await ferry.wait_state("dev", ticket["id"], "published")
    assert published["version"] == 1
    assert_live(cluster, "blog", 1, head)
