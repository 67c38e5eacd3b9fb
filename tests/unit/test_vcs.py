"""git and svn plumbing of the staging agent, on real repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ferry_events import manifest
from ferry_staging_agent.blobs import list_tree, write_tree
from ferry_staging_agent.vcs import (
    Git,
    VcsError,
    commit_directory,
    diff_summary,
    export_svn,
    fetch_git_source,
    redact,
    resolve_git_ref,
)


def run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(work: Path, message: str) -> str:
    run("git", "add", "-A", cwd=work)
    run("git", "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", message, cwd=work)
    return run("git", "rev-parse", "HEAD", cwd=work)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    work = tmp_path / "source"
    work.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=work)
    (work / "a.txt").write_text("one\n")
    # Would turn LF into CRLF on a checkout: the staged bytes must stay the blob's.
    (work / ".gitattributes").write_text("*.txt text eol=crlf\n")
    commit_all(work, "first")
    run("git", "-c", "user.name=T", "-c", "user.email=t@x", "tag", "-a", "-m", "v1", "v1", cwd=work)
    (work / "b.txt").write_text("two\n")
    commit_all(work, "second")
    return work


@pytest.fixture
def mirror(tmp_path: Path, source: Path) -> Git:
    git = Git(tmp_path / "mirror.git")
    git.init_bare()
    fetch_git_source(git, f"file://{source}")
    return git


def test_resolve_branch_tag_and_commits(source: Path, mirror: Git) -> None:
    head = run("git", "rev-parse", "main", cwd=source)
    first = run("git", "rev-parse", "v1^{commit}", cwd=source)
    assert resolve_git_ref(mirror, "main") == head
    assert resolve_git_ref(mirror, "refs/heads/main") == head
    assert resolve_git_ref(mirror, "v1") == first
    assert resolve_git_ref(mirror, first) == first
    assert resolve_git_ref(mirror, first[:8]) == first
    with pytest.raises(VcsError, match="no branch, tag or commit named 'nope'"):
        resolve_git_ref(mirror, "nope")


def test_a_commit_the_source_does_not_hold_is_not_resolved(tmp_path: Path, mirror: Git) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "x").write_text("x")
    commit, _ = commit_directory(mirror, stray, "not from the source", None)
    with pytest.raises(VcsError):
        resolve_git_ref(mirror, commit)


def test_write_tree_writes_blobs_byte_for_byte(tmp_path: Path, source: Path, mirror: Git) -> None:
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    (source / "link").symlink_to("a.txt")
    (source / "deep" / "er").mkdir(parents=True)
    (source / "deep" / "er" / "c.bin").write_bytes(bytes(range(256)) * 5000)
    commit = commit_all(source, "more")
    fetch_git_source(mirror, f"file://{source}")
    entries = list_tree(mirror, commit)
    out = tmp_path / "out"
    out.mkdir()
    write_tree(mirror, entries, out)

    assert (out / "a.txt").read_bytes() == b"one\n"  # not CRLF: no attribute was applied
    assert os.readlink(out / "link") == "a.txt"
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755
    assert (out / "deep/er/c.bin").read_bytes() == bytes(range(256)) * 5000
    on_disk = [manifest.entry_from_disk(out, e.path) for e in entries]
    assert manifest.render(on_disk) == manifest.render(entries)


def test_write_tree_refuses_paths_through_its_own_symlinks(tmp_path: Path, mirror: Git) -> None:
    oid = run("git", f"--git-dir={mirror.git_dir}", "hash-object", "-w", "/dev/null")
    entries = [
        manifest.Entry("escape", manifest.SYMLINK, oid, 0),
        manifest.Entry("escape/passwd", manifest.REGULAR, oid, 0),
    ]
    with pytest.raises(VcsError, match="below a symlink"):
        write_tree(mirror, entries, tmp_path)
    with pytest.raises(VcsError, match="unsafe path"):
        write_tree(mirror, [manifest.Entry("../x", manifest.REGULAR, oid, 0)], tmp_path)


def test_commit_directory_keeps_bytes_modes_links_and_ignored_files(
    tmp_path: Path, mirror: Git
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / ".gitignore").write_text("*.log\n")
    (tree / ".gitattributes").write_text("* text eol=crlf\n")
    (tree / "sub" / "debug.log").write_text("kept although ignored\n")
    (tree / "dos.txt").write_bytes(b"a\r\nb\r\n")
    (tree / "tool").write_text("#!/bin/sh\n")
    (tree / "tool").chmod(0o755)
    (tree / "here").symlink_to("sub/debug.log")

    commit, tree_id = commit_directory(mirror, tree, "svn file:///x/trunk@3", None)

    entries = list_tree(mirror, commit)
    on_disk = [manifest.entry_from_disk(tree, e.path) for e in entries]
    assert {e.path for e in entries} == {
        ".gitignore",
        ".gitattributes",
        "sub/debug.log",
        "dos.txt",
        "tool",
        "here",
    }
    assert manifest.render(on_disk) == manifest.render(entries)
    assert mirror.text("rev-parse", f"{commit}^{{tree}}") == tree_id
    assert "svn file:///x/trunk@3" in mirror.text("log", "-1", "--format=%B", commit)


def test_diff_summary(source: Path, mirror: Git) -> None:
    first = resolve_git_ref(mirror, "v1")
    (source / "a.txt").write_text("changed\n")
    (source / "b.txt").unlink()
    (source / "c.txt").write_text("new\n")
    (source / "d.txt").write_text("new\n")
    last = commit_all(source, "third")
    fetch_git_source(mirror, f"file://{source}")
    assert diff_summary(mirror, first, last) == {"added": 2, "modified": 1, "deleted": 0}
    second = run("git", "rev-parse", "HEAD~1", cwd=source)
    assert diff_summary(mirror, second, last) == {"added": 2, "modified": 1, "deleted": 1}


@pytest.fixture
def svn_url(tmp_path: Path) -> str:
    repo = tmp_path / "svnrepo"
    run("svnadmin", "create", str(repo))
    url = f"file://{repo}"
    run("svn", "mkdir", "-q", "-m", "layout", f"{url}/trunk", f"{url}/branches")  # r1
    work = tmp_path / "wc"
    run("svn", "checkout", "-q", f"{url}/trunk", str(work))
    (work / "index.html").write_text("v2\n")
    run("svn", "add", "-q", "index.html", cwd=work)
    run("svn", "commit", "-q", "-m", "r2", cwd=work)
    (work / "index.html").write_text("v3\n")
    run("svn", "commit", "-q", "-m", "r3", cwd=work)
    return url


def test_export_svn_path_at_revision_and_head(tmp_path: Path, svn_url: str) -> None:
    assert export_svn(svn_url, "trunk@2", tmp_path / "at2", 60) == "2"
    assert (tmp_path / "at2" / "index.html").read_text() == "v2\n"
    assert export_svn(svn_url, "trunk", tmp_path / "head", 60) == "3"
    assert (tmp_path / "head" / "index.html").read_text() == "v3\n"
    assert not (tmp_path / "head" / ".svn").exists()
    with pytest.raises(VcsError, match="svn info failed"):
        export_svn(svn_url, "nope@2", tmp_path / "nope", 60)
    with pytest.raises(VcsError, match="not a directory"):
        export_svn(svn_url, "trunk/index.html", tmp_path / "file", 60)


def test_redact_hides_credentials() -> None:
    assert redact("fatal: https://bob:s3cret@example.org/x") == "fatal: https://***@example.org/x"
