"""The same tree rules everywhere: an svn source staged, and a tree that slipped past staging
refused by the publisher and by a host themselves, each with a reason naming the path; a host
that once installed a name its agent should have refused gets going again.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ferry_events import manifest
from ferry_events.schemas import (
    HostSyncCompleted,
    HostSyncFailed,
    ReleaseTagFailed,
    ReleaseTagRequested,
    Source,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
)
from ferry_publisher.handlers import tag_release
from ferry_rsync_agent.delta import DeltaRefused, manifest_of
from ferry_rsync_agent.releases import install, prepare, switch_current
from ferry_staging_agent.handlers import stage_ticket
from ferry_staging_agent.settings import Settings as StagingSettings
from ferry_staging_agent.stager import Stager

from .odd_trees import (
    REFUSED,
    Link,
    Pipeline,
    Reports,
    Tree,
    commit,
    disk_tree,
    git_tree,
    new_work_tree,
    open_pipeline,
    run,
    write,
)


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with open_pipeline(tmp_path, new_work_tree(tmp_path / "work")) as opened:
        yield opened


# --- svn: symlinks are svn:special files; svn export writes them as links ----------------------


def svn_source(tmp_path: Path, tree: Tree) -> str:
    repo = tmp_path / "svnrepo"
    run("svnadmin", "create", str(repo))
    url = f"file://{repo}"
    run("svn", "mkdir", "-q", "-m", "layout", f"{url}/trunk")
    checkout = tmp_path / "wc"
    run("svn", "checkout", "-q", f"{url}/trunk", str(checkout))
    write(checkout, {b"index.php": b"<?php\n", **tree})
    run("svn", "add", "-q", "--force", ".", cwd=checkout)
    run("svn", "commit", "-q", "-m", "r2", cwd=checkout)
    return url


async def stage_svn(tmp_path: Path, url: str) -> tuple[StagingRequested | object, Path]:
    settings = StagingSettings(data_dir=tmp_path / "data", allow_file_urls=True)
    cmd = StagingRequested(
        ticket_id="t1", app="shop", source=Source(type="svn", url=url), ref="trunk"
    )
    reports = Reports()
    await stage_ticket(cmd, Stager(settings), reports)
    return reports[-1], settings.data_dir / "staging" / "shop"


@pytest.mark.parametrize(
    "case", ["absolute symlink", "parent symlink", "escape through a link"], ids=str
)
async def test_svn_symlinks_out_of_the_tree_are_refused_at_staging(
    tmp_path: Path, case: str
) -> None:
    tree, reason = REFUSED[case]
    report, workspace = await stage_svn(tmp_path, svn_source(tmp_path, tree))

    assert isinstance(report, StagingFailed), report
    assert reason in report.reason
    assert not (workspace / "site").exists()
    assert [p for p in (workspace / "trees").iterdir() if p.is_dir()] == []


async def test_svn_non_ascii_names_and_in_tree_symlinks_are_staged_as_they_are(
    tmp_path: Path,
) -> None:
    tree: Tree = {
        "café/naïve ü.txt".encode(): b"utf-8\n",  # svn itself refuses control characters
        b"home.php": Link("index.php"),
        b"lib": Link("café"),
    }
    report, workspace = await stage_svn(tmp_path, svn_source(tmp_path, tree))

    assert isinstance(report, StagingCompleted), report
    expected = {b"index.php": ("100644", b"<?php\n")} | {
        path: ("120000", content.target.encode())
        if isinstance(content, Link)
        else ("100644", content)
        for path, content in tree.items()
    }
    assert disk_tree(workspace / "site") == expected
    release_repo = tmp_path / "data" / "publisher" / "repos" / "shop.git"
    assert git_tree(release_repo, "refs/staged/t1") == expected


# --- the publisher: a staged ref that staging never checked -------------------------------------


def smuggle(pipeline: Pipeline, tree: Tree, ticket: str) -> ReleaseTagRequested:
    """Push a commit straight to refs/staged/<ticket>, as a staging agent that checks nothing
    would, and the command to tag it."""
    sha = commit(pipeline.work, tree)
    repo = pipeline.publisher.repo("shop").git_dir
    if not repo.exists():
        run("git", "init", "-q", "--bare", str(repo))
    run("git", "push", "-q", "-f", str(repo), f"{sha}:refs/staged/{ticket}", cwd=pipeline.work)
    tree_id = run("git", "rev-parse", f"{sha}^{{tree}}", cwd=pipeline.work).decode().strip()
    return ReleaseTagRequested(
        ticket_id=ticket, app="shop", version=2, commit=sha, tree=tree_id, reason="r",
        author="dev", approver="lead",
    )  # fmt: skip


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
async def test_the_publisher_refuses_an_unsafe_tree_and_tags_and_serves_nothing(
    pipeline: Pipeline, case: str
) -> None:
    first = await pipeline.release("t1", 1)  # release 2 is built from its export
    exports = pipeline.publisher.settings.exports_dir / "shop"
    one_before = disk_tree(exports / "1")
    tree, reason = REFUSED[case]
    reports = Reports()
    await tag_release(smuggle(pipeline, tree, "t2"), pipeline.publisher, reports)

    assert isinstance(reports[-1], ReleaseTagFailed), reports[-1]
    assert reason in reports[-1].reason
    tags = run("git", "tag", cwd=pipeline.publisher.repo("shop").git_dir).split()
    assert tags == [b"1"]  # release 2 can still be made of a good tree
    assert sorted(p.name for p in exports.iterdir()) == ["1", "1.manifest"]
    assert disk_tree(exports / "1") == one_before
    assert isinstance(await pipeline.sync(1, first.digest), HostSyncCompleted)


# --- a host: a tree that slipped past staging and the publisher ---------------------------------


@pytest.fixture
async def older_publisher(tmp_path: Path) -> AsyncIterator[Pipeline]:
    """A publisher that serves what is in its exports (its daemon rebuilds nothing)."""
    work = new_work_tree(tmp_path / "work")
    async with open_pipeline(tmp_path, work, rebuild_hook=False) as opened:
        yield opened


@pytest.mark.parametrize("case", ["not UTF-8", "newline", "carriage return"], ids=str)
async def test_a_host_refuses_a_name_it_cannot_verify_and_keeps_current(
    older_publisher: Pipeline, case: str
) -> None:
    pipeline = older_publisher
    first = await pipeline.release("t1", 1)
    assert isinstance(await pipeline.sync(1, first.digest), HostSyncCompleted)
    # Exported as an older publisher did: no manifest served (none could list such a name).
    forged = pipeline.publisher.settings.exports_dir / "shop" / "2"
    write(forged, {b"index.html": b"v2\n", **REFUSED[case][0]})

    report = await pipeline.sync(2, "0" * 64)  # refused before any digest is compared

    assert isinstance(report, HostSyncFailed), report
    assert REFUSED[case][1] in report.reason
    assert pipeline.layout.current_version() == 1
    assert os.listdir(pipeline.layout.releases) == ["1"]


async def test_a_host_that_once_installed_a_newline_name_takes_the_next_releases(
    pipeline: Pipeline,
) -> None:
    """An older agent installed such a tree and kept its manifest; the next sync crashed on it."""
    layout = pipeline.layout
    prepare(layout)
    write(layout.incoming(1), {b"index.html": b"v1\n", b"two\nlines.txt": b"x\n"})
    entries = [
        manifest.entry_from_disk(layout.incoming(1), p) for p in ("index.html", "two\nlines.txt")
    ]
    install(layout, 1, manifest.render(entries))
    switch_current(layout, 1)

    for version in (2, 3):  # the second one by the manifest delta, from a spare
        commit(pipeline.work, {b"index.html": f"v{version}\n".encode()})
        tagged = await pipeline.release(f"t{version}", version)
        report = await pipeline.sync(version, tagged.digest)
        assert isinstance(report, HostSyncCompleted), report
        assert disk_tree(layout.current) == git_tree(pipeline.work, "HEAD")
    same = [os.stat(layout.release(v) / "static" / "app.js").st_ino for v in (2, 3)]
    assert same[0] == same[1]


def test_a_manifest_line_is_cut_at_newlines_only(tmp_path: Path) -> None:
    names = ["tab\there", "a\u2028b", "fs\x1cgs\x1drs\x1e", "vt\x0bff\x0c", "nel\x85"]
    write(tmp_path, {name.encode(): name.encode() for name in names})
    entries = sorted(manifest.entry_from_disk(tmp_path, name) for name in names)

    assert manifest.parse(manifest.render(entries)) == entries


def test_a_symlink_target_that_is_not_utf8_is_hashed_as_git_does(tmp_path: Path) -> None:
    os.symlink(b"caf\xe9", os.path.join(os.fsencode(tmp_path), b"link"))
    git = subprocess.run(
        ["git", "hash-object", "--stdin"], input=b"caf\xe9", capture_output=True, check=True
    )
    assert manifest.entry_from_disk(tmp_path, "link").oid == git.stdout.decode().strip()


def test_a_served_manifest_is_taken_as_bytes_hashed_then_decoded() -> None:
    exact = "100644 " + "0" * 40 + " 1\tdos\r.txt\n"  # read_text() would make "\r" a "\n"
    data = exact.encode()
    assert manifest_of(data, hashlib.sha256(data).hexdigest()) == exact
    latin = b"100644 " + b"0" * 40 + b" 1\tcaf\xe9\n"
    with pytest.raises(DeltaRefused, match="not UTF-8"):
        manifest_of(latin, hashlib.sha256(latin).hexdigest())
    with pytest.raises(DeltaRefused, match="digest mismatch"):
        manifest_of(data, "0" * 64)
