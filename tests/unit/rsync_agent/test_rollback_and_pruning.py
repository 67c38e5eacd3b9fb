"""Rolling back to a kept release, and pruning beyond `keep`."""

from __future__ import annotations

import os

from ferry_events.schemas import HostSyncCompleted
from ferry_rsync_agent.config import AgentConfig

from .publishing import (
    FIRST,
    Publisher,
    shop,
    sync,
)


async def test_rollback_to_a_kept_release_only_switches(
    config: AgentConfig, publisher: Publisher
) -> None:
    first = publisher.export("shop", 1, FIRST)
    await sync(config, 1, first)
    await sync(config, 2, publisher.export_changed("shop", 2, {"index.html": b"<h1>2"}))
    inode = (shop(config).release(1) / "index.html").stat().st_ino
    publisher.stop()  # nothing can be pulled now

    report = await sync(config, 1, first)

    assert isinstance(report, HostSyncCompleted) and report.bytes_transferred == 0
    assert os.readlink(shop(config).current) == "releases/1"
    assert (shop(config).current / "index.html").stat().st_ino == inode


async def test_rollback_to_a_kept_release_that_changed_on_disk_pulls_it_again(
    config: AgentConfig, publisher: Publisher
) -> None:
    first = publisher.export("shop", 1, FIRST)
    await sync(config, 1, first)
    await sync(config, 2, publisher.export_changed("shop", 2, {"index.html": b"<h1>2"}))
    (shop(config).release(1) / "index.html").write_bytes(b"edited on the host")

    report = await sync(config, 1, first)

    assert isinstance(report, HostSyncCompleted) and report.bytes_transferred > 0
    assert (shop(config).current / "index.html").read_bytes() == b"<h1>1"


async def test_prune_keeps_keep_releases_but_never_current_or_previous(
    config: AgentConfig, publisher: Publisher
) -> None:
    digests = {1: publisher.export("shop", 1, FIRST)}
    for version in (2, 3, 4):
        digests[version] = publisher.export_changed("shop", version, {"v": str(version).encode()})
    for version in (1, 2, 3):
        await sync(config, version, digests[version])
    assert shop(config).versions() == [1, 2, 3]  # keep = 3

    await sync(config, 1, digests[1])  # rollback: current 1, previous 3
    await sync(config, 4, digests[4])  # current 4, previous 1; 2 is the one to go

    assert shop(config).versions() == [1, 3, 4]
    assert sorted(os.listdir(shop(config).manifests)) == ["1", "3", "4"]
