"""Odd file names and symlinks end to end, on real git, rsync daemon and directories:
staging -> tag -> export -> manifest -> a host's whole and delta syncs -> verify.

A name is carried byte for byte, or refused at staging with the path named; a symlink out of
the tree is refused at staging. What slips past staging is refused by the publisher and the
hosts themselves (test_tree_defence.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ferry_events.schemas import HostSyncCompleted, StagingCompleted, StagingFailed
from ferry_staging_agent.settings import Settings as StagingSettings
from ferry_staging_agent.stager import Stager

from .odd_trees import (
    REFUSED,
    Link,
    Pipeline,
    Tree,
    commit,
    disk_tree,
    git_tree,
    new_work_tree,
    open_pipeline,
    run,
    stage,
)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return new_work_tree(tmp_path / "work")


@pytest.fixture
async def pipeline(tmp_path: Path, work: Path) -> AsyncIterator[Pipeline]:
    async with open_pipeline(tmp_path, work) as opened:
        yield opened


CARRIED: dict[str, Tree] = {
    "tab": {b"tab\there.txt": b"tab\n", b"dir\twith tab/x": b"x\n"},
    "leading dash": {b"-rf": b"not an option\n", b"--delete/-x": b"nor this\n"},
    "shell characters": {b"$(touch pwned) `id` 'q' \"dq\"; *.txt": b"inert\n"},
    # U+2028 and U+001C end a line for str.splitlines(); the manifest splits at "\n" only.
    "unicode": {"café/naïve ü.txt".encode(): b"utf-8\n", "a\u2028b\x1cc.txt".encode(): b"x\n"},
    "in-tree symlinks": {
        b"img/logo.png": bytes(range(256)),
        b"home.html": Link("index.html"),
        b"lib": Link("static"),  # a directory
        b"static/logo": Link("../img/logo.png"),
        b"static/up": Link(".."),  # the root itself: inside
        b"static/again": Link("up/static/app.js"),  # through another link, still inside
        b"dangling": Link("not/there"),
    },
}


@pytest.mark.parametrize("case", CARRIED, ids=list(CARRIED))
async def test_an_odd_name_reaches_the_host_byte_for_byte_and_a_delta_release_follows(
    pipeline: Pipeline, case: str
) -> None:
    first = commit(pipeline.work, CARRIED[case])
    tagged = await pipeline.release("t1", 1)
    assert isinstance(await pipeline.sync(1, tagged.digest), HostSyncCompleted)
    assert disk_tree(pipeline.layout.current) == git_tree(pipeline.work, first)

    # Release 2: a changed file, and every odd entry again under another directory, so that
    # the delta pulls odd names by its NUL-separated file list and hard-links the others.
    again = {b"again/" + path: content for path, content in CARRIED[case].items()}
    second = commit(pipeline.work, {b"index.html": b"v2\n", **again})
    tagged = await pipeline.release("t2", 2)
    synced = await pipeline.sync(2, tagged.digest)
    assert isinstance(synced, HostSyncCompleted), synced
    assert disk_tree(pipeline.layout.current) == git_tree(pipeline.work, second)
    releases = pipeline.layout.releases
    for path, content in CARRIED[case].items():
        if not isinstance(content, Link):  # unchanged: the seed's hard link, not pulled again
            old, new = (os.path.join(os.fsencode(releases / v), path) for v in ("1", "2"))
            assert os.stat(old).st_ino == os.stat(new).st_ino


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
async def test_staging_refuses_what_a_host_could_not_take_and_keeps_the_staged_tree(
    tmp_path: Path, work: Path, case: str
) -> None:
    stager = Stager(StagingSettings(data_dir=tmp_path / "data", allow_file_urls=True))
    good = commit(work, {b"keep.txt": b"fine\n"})
    assert isinstance(await stage(stager, work, "t1"), StagingCompleted)
    workspace = tmp_path / "data" / "staging" / "shop"
    site_before = os.readlink(workspace / "site")

    tree, reason = REFUSED[case]
    commit(work, tree)
    refused = await stage(stager, work, "t2")

    assert isinstance(refused, StagingFailed), refused
    assert reason in refused.reason
    assert os.readlink(workspace / "site") == site_before  # testers still see t1's tree
    assert disk_tree(workspace / "site") == git_tree(work, good)
    trees = sorted(p.name for p in (workspace / "trees").iterdir() if p.is_dir())
    assert trees == [Path(site_before).name]  # the refused tree was removed, not left half
    release_repo = tmp_path / "data" / "publisher" / "repos" / "shop.git"
    staged = run("git", "for-each-ref", "--format=%(refname)", cwd=release_repo).split()
    assert staged == [b"refs/staged/t1"]  # nothing pushed for the publisher to tag
