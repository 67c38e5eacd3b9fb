"""First sync, delta sync with hard links, and what a release may change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed
from ferry_rsync_agent.config import AgentConfig

from .publishing import (
    FIRST,
    Publisher,
    shop,
    sync,
    tree_of,
)


async def test_first_sync_makes_release_1_current_with_the_published_content(
    config: AgentConfig, publisher: Publisher
) -> None:
    digest = publisher.export("shop", 1, FIRST, links={"home.html": "index.html"})
    (publisher.exports / "shop/1/bin/run").chmod(0o755)
    digest = publisher.seal("shop", 1)

    report = await sync(config, 1, digest)

    assert isinstance(report, HostSyncCompleted), report
    assert (report.version, report.digest, report.files, report.attempt) == (1, digest, 203, 2)
    assert report.bytes_transferred > 200 * 4096
    assert os.readlink(shop(config).current) == "releases/1"
    assert tree_of(shop(config).current) == tree_of(publisher.exports / "shop/1")
    assert os.access(shop(config).current / "bin/run", os.X_OK)
    assert os.listdir(shop(config).releases) == ["1"]


async def test_second_release_transfers_the_delta_and_hard_links_the_rest(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    changed = {"dir1/file1.dat": b"changed", "new/file.txt": b"new"}  # 1% of 200 files
    digest = publisher.export_changed("shop", 2, changed)
    (publisher.exports / "shop/2/dir2/file2.dat").unlink()
    digest = publisher.seal("shop", 2)

    report = await sync(config, 2, digest)

    assert isinstance(report, HostSyncCompleted), report
    assert report.digest == digest and report.files == 202
    assert report.bytes_transferred < 20 * 4096  # the whole tree is 800 KiB
    one, two = shop(config).release(1), shop(config).release(2)
    assert (two / "dir3/file3.dat").stat().st_ino == (one / "dir3/file3.dat").stat().st_ino
    assert (two / "dir1/file1.dat").stat().st_ino != (one / "dir1/file1.dat").stat().st_ino
    assert not (two / "dir2/file2.dat").exists() and (one / "dir2/file2.dat").exists()
    assert tree_of(two) == tree_of(publisher.exports / "shop/2")
    assert os.readlink(shop(config).current) == "releases/2"


async def test_a_change_rsyncs_quick_check_misses_is_caught_and_pulled(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    digest = publisher.export_changed("shop", 2, {"index.html": b"<h1>2"})  # same size
    one = publisher.exports / "shop/1/index.html"
    os.utime(
        publisher.exports / "shop/2/index.html", ns=(one.stat().st_atime_ns, one.stat().st_mtime_ns)
    )

    report = await sync(config, 2, digest)

    assert isinstance(report, HostSyncCompleted), report
    assert (shop(config).current / "index.html").read_bytes() == b"<h1>2"
    assert (shop(config).release(1) / "index.html").read_bytes() == b"<h1>1"


async def test_only_the_changed_paths_are_pulled_even_where_a_file_becomes_a_directory(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST, links={"lib": "dir1"}))
    publisher.export_changed("shop", 2, {})
    two = publisher.exports / "shop/2"
    (two / "index.html").unlink()
    shutil.rmtree(two / "dir9")  # a whole directory goes
    (two / "index.html").mkdir()
    (two / "index.html/body.html").write_bytes(b"<p>now a directory")
    (two / "lib").unlink()
    os.symlink("dir2", two / "lib")  # a link retargeted

    report = await sync(config, 2, publisher.seal("shop", 2))

    assert isinstance(report, HostSyncCompleted), report
    assert report.bytes_transferred < 4096  # two small entries, not the 800 KiB tree
    assert tree_of(shop(config).current) == tree_of(two)
    assert not (shop(config).current / "dir9").exists()
    assert (shop(config).release(1) / "index.html").read_bytes() == b"<h1>1"


async def test_a_tree_that_differs_from_its_manifest_is_refused(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    digest = publisher.export_changed("shop", 2, {"index.html": b"<h1>2"})
    (publisher.exports / "shop/2/index.html").write_bytes(b"<h1>X")  # after the manifest

    report = await sync(config, 2, digest)

    assert isinstance(report, HostSyncFailed) and "differs from the manifest" in report.reason
    assert os.readlink(shop(config).current) == "releases/1"
    assert shop(config).versions() == [1]


async def test_files_written_into_the_live_release_never_reach_the_next_one(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    layout = shop(config)
    assert tree_of(layout.spare) == tree_of(layout.release(1))  # made while idle
    (layout.current / "cache.tmp").write_bytes(b"written by the app")
    digest = publisher.export_changed("shop", 2, {"index.html": b"<h1>2"})

    from_spare = await sync(config, 2, digest)
    assert isinstance(from_spare, HostSyncCompleted)
    assert tree_of(layout.release(2)) == tree_of(publisher.exports / "shop/2")
    (layout.current / "cache.tmp").write_bytes(b"written by the app")
    shutil.rmtree(layout.spare)  # no spare: one is made now, and refused for the extra file
    from_whole = await sync(config, 3, publisher.export_changed("shop", 3, {"v": b"3"}))

    assert isinstance(from_whole, HostSyncCompleted) and from_whole.bytes_transferred > 800_000
    assert tree_of(layout.release(3)) == tree_of(publisher.exports / "shop/3")


async def test_without_a_published_manifest_the_whole_tree_is_pulled_and_verified(
    config: AgentConfig, publisher: Publisher
) -> None:
    publisher.manifests = False  # an older publisher
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    digest = publisher.export_changed("shop", 2, {"index.html": b"<h1>2"})

    report = await sync(config, 2, digest)

    assert isinstance(report, HostSyncCompleted), report
    assert report.bytes_transferred > 200 * 4096
    assert tree_of(shop(config).current) == tree_of(publisher.exports / "shop/2")


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | str]]:
    """Every file's and symlink's inode, mode, mtime and content, as a host admin would compare."""
    found: dict[str, tuple[int, int, int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or path.is_file():
            info = path.lstat()
            content = os.readlink(path) if path.is_symlink() else path.read_bytes()
            key = path.relative_to(root).as_posix()
            found[key] = (info.st_ino, info.st_mode, info.st_mtime_ns, content)
    return found


@pytest.mark.parametrize("change", ["mode", "mtime", "mode and mtime", "symlink mtime"])
async def test_a_release_changing_only_attributes_leaves_the_previous_release_untouched(
    config: AgentConfig, publisher: Publisher, change: str
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST, links={"home.html": "index.html"}))
    before = snapshot(shop(config).release(1))
    publisher.export_changed("shop", 2, {})
    two = publisher.exports / "shop/2"
    if "mode" in change:
        (two / "bin/run").chmod(0o755)
    if change in ("mtime", "mode and mtime"):
        os.utime(two / "dir3/file3.dat", (1_000_000_000, 1_000_000_000))
    if change == "symlink mtime":
        os.utime(two / "home.html", (1_000_000_000, 1_000_000_000), follow_symlinks=False)

    report = await sync(config, 2, publisher.seal("shop", 2))

    assert isinstance(report, HostSyncCompleted), report
    assert snapshot(shop(config).release(1)) == before
    assert tree_of(shop(config).release(2)) == tree_of(two)
    assert os.access(shop(config).release(2) / "bin/run", os.X_OK) == ("mode" in change)
    if "mtime" in change and change != "symlink mtime":
        # A release is contents and modes, as in git: a new mtime alone moves nothing.
        assert (shop(config).release(2) / "dir3/file3.dat").stat().st_ino == before[
            "dir3/file3.dat"
        ][0]
    assert (shop(config).release(2) / "dir4/file4.dat").stat().st_ino == before["dir4/file4.dat"][0]
