"""What the agent refuses: digest mismatches, empty or missing sources and targets, apps
not configured here, links out of the release; and that it touches nothing then."""

from __future__ import annotations

import os
from pathlib import Path

from ferry_events.schemas import HostSyncCompleted, HostSyncFailed
from ferry_rsync_agent.config import AgentConfig

from .publishing import (
    FIRST,
    Publisher,
    shop,
    sync,
)


async def test_digest_mismatch_is_refused_and_current_stays(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    publisher.export_changed("shop", 2, {"index.html": b"tampered"})

    report = await sync(config, 2, "0" * 64)

    assert isinstance(report, HostSyncFailed) and "digest mismatch" in report.reason
    assert os.readlink(shop(config).current) == "releases/1"
    assert os.listdir(shop(config).releases) == ["1"]


async def test_empty_source_is_refused(config: AgentConfig, publisher: Publisher) -> None:
    digest = publisher.export("shop", 1, {})

    report = await sync(config, 1, digest)

    assert isinstance(report, HostSyncFailed) and "empty" in report.reason
    assert not os.path.lexists(shop(config).current) and os.listdir(shop(config).releases) == []


async def test_missing_source_version_is_reported_with_rsyncs_reason(
    config: AgentConfig, publisher: Publisher
) -> None:
    report = await sync(config, 9, "0" * 64)

    assert isinstance(report, HostSyncFailed) and report.reason.startswith("rsync exited")
    assert os.listdir(shop(config).releases) == []


async def test_missing_target_is_refused_and_not_created(
    config: AgentConfig, publisher: Publisher
) -> None:
    target = shop(config).target
    target.rmdir()

    report = await sync(config, 1, publisher.export("shop", 1, FIRST))

    assert isinstance(report, HostSyncFailed) and "missing" in report.reason
    assert not target.exists()


async def test_app_not_in_the_local_config_is_refused_and_nothing_touched(
    config: AgentConfig, publisher: Publisher, tmp_path: Path
) -> None:
    digest = publisher.export("blog", 1, FIRST)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    report = await sync(config, 1, digest, app="blog")

    assert isinstance(report, HostSyncFailed) and "not configured" in report.reason
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


async def test_symlinks_out_of_the_release_are_never_created(
    config: AgentConfig, publisher: Publisher
) -> None:
    inside = {"home.html": "index.html", "lib": "dir1"}
    outside = {"etc": "/etc", "up": "../../../../.."}
    safe_digest = publisher.export("shop", 1, FIRST, links=inside)
    with_unsafe = publisher.export("shop", 2, FIRST, links={**inside, **outside})

    refused = await sync(config, 2, with_unsafe)
    accepted = await sync(config, 1, safe_digest)

    assert isinstance(refused, HostSyncFailed) and "digest mismatch" in refused.reason
    assert isinstance(accepted, HostSyncCompleted)
    current = shop(config).current
    assert os.readlink(current / "lib") == "dir1" and not os.path.lexists(current / "etc")
    assert not os.path.lexists(current / "up") and os.listdir(shop(config).releases) == ["1"]


async def test_links_that_escape_only_when_followed_are_refused(
    config: AgentConfig, publisher: Publisher
) -> None:
    # Each text looks contained; followed, dir1/e reaches the parent of the release. Recent
    # rsync drops it (digest mismatch), older ones did not (the agent's own check refuses it).
    digest = publisher.export("shop", 1, FIRST, links={"dir1/s": "..", "dir1/e": "s/../.."})

    report = await sync(config, 1, digest)

    assert isinstance(report, HostSyncFailed)
    assert "digest mismatch" in report.reason or "dir1/e" in report.reason
    assert not os.path.lexists(shop(config).current) and os.listdir(shop(config).releases) == []
