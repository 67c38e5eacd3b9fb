"""git and svn as argument lists only: fetch a source, resolve a ref, export a tree, commit one.

No value reaches git or svn where it could be read as an option: refs and URLs are checked
again here, and `--end-of-options` / `--` stand before every ref, URL and path.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ferry_events import tree_rules
from ferry_events.tree_rules import shown

_CREDENTIALS = re.compile(r"(://)[^/@\s]*@")
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
# Variables that would point git at another repository, index or work tree than ours.
_GIT_LOCATION_VARS = frozenset(
    "GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_COMMON_DIR"
    " GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_NAMESPACE GIT_PREFIX".split()
)
COMMITTER = {
    "GIT_AUTHOR_NAME": "Ferry staging agent",
    "GIT_AUTHOR_EMAIL": "ferry-staging@localhost",
    "GIT_COMMITTER_NAME": "Ferry staging agent",
    "GIT_COMMITTER_EMAIL": "ferry-staging@localhost",
}


class VcsError(Exception):
    """A fetch, checkout or commit failed; the message is safe to show the ticket's author."""


def redact(text: str) -> str:
    """Hide user:password@ in URLs before a message is logged or reported."""
    return _CREDENTIALS.sub(r"\1***@", text)


def _stderr_tail(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return redact(" | ".join(lines[-3:])) or "no message"


def _run(
    argv: list[str], what: str, timeout: float, env: Mapping[str, str], stdin: bytes | None = None
) -> bytes:
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, env=dict(env), timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise VcsError(f"{what} timed out after {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise VcsError(f"{what} failed: {_stderr_tail(proc.stderr)}")
    return proc.stdout


class Git:
    """One repository, run with prompts off and the `ext::` transport refused."""

    def __init__(self, git_dir: Path, timeout: float = 900.0) -> None:
        self.git_dir = git_dir
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        return ["git", "-c", "protocol.ext.allow=never", f"--git-dir={self.git_dir}", *args]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        env["GIT_TERMINAL_PROMPT"] = "0"
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        return env | dict(extra or {})

    def run(
        self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> bytes:
        return _run(self.argv(*args), f"git {args[0]}", self.timeout, self.env(env), stdin)

    def text(self, *args: str) -> str:
        return self.run(*args).decode().strip()

    def probe(self, *args: str) -> str | None:
        """The output of a query that may rightly fail (a ref that does not exist)."""
        try:
            return self.text(*args) or None
        except VcsError:
            return None

    def init_bare(self) -> None:
        if not (self.git_dir / "HEAD").exists():
            self.git_dir.parent.mkdir(parents=True, exist_ok=True)
            _run(
                ["git", "init", "--quiet", "--bare", "--", str(self.git_dir)],
                "git init",
                self.timeout,
                self.env(),
            )


# --- git sources -------------------------------------------------------------------------------


def fetch_git_source(git: Git, url: str) -> None:
    """Mirror the source's branches and tags under refs/source/ (incremental after the first)."""
    git.run(
        "fetch",
        "--quiet",
        "--prune",
        "--no-tags",
        "--force",
        "--end-of-options",
        url,
        "+refs/heads/*:refs/source/heads/*",
        "+refs/tags/*:refs/source/tags/*",
    )


def resolve_git_ref(git: Git, ref: str) -> str:
    """The commit a branch, tag, or full or abbreviated commit id of the source names."""
    if ref.startswith("refs/heads/"):
        candidates = [f"refs/source/heads/{ref.removeprefix('refs/heads/')}"]
    elif ref.startswith("refs/tags/"):
        candidates = [f"refs/source/tags/{ref.removeprefix('refs/tags/')}"]
    else:  # git's own order: a tag wins over a branch of the same name
        candidates = [f"refs/source/tags/{ref}", f"refs/source/heads/{ref}"]
    for name in candidates:
        commit = _commit_of(git, name)
        if commit:
            return commit
    if _HEX.match(ref):
        commit = _commit_of(git, ref)
        # Only a commit the source itself holds, not one this repo got from elsewhere.
        if commit and git.probe(
            "for-each-ref", "--count=1", f"--contains={commit}", "refs/source/"
        ):
            return commit
    raise VcsError(f"the source has no branch, tag or commit named {ref!r}")


def _commit_of(git: Git, name: str) -> str | None:
    return git.probe("rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}")


# --- svn sources -------------------------------------------------------------------------------


def _svn(args: list[str], timeout: float) -> bytes:
    # UTF-8, not C: under C svn cannot write a non-ASCII name at all ("Can't convert string
    # from 'UTF-8' to native encoding"); its messages stay in English either way.
    env = dict(os.environ, LC_ALL="C.UTF-8")
    argv = ["svn", "--non-interactive", "--no-auth-cache", *args]
    return _run(argv, f"svn {args[0]}", timeout, env)


def split_svn_ref(ref: str) -> tuple[str, str]:
    """`trunk@12` -> (trunk, 12); `branches/x` -> (branches/x, HEAD)."""
    path, at, rev = ref.rpartition("@")
    return (path, rev) if at else (ref, "HEAD")


def export_svn(url: str, ref: str, dest: Path, timeout: float) -> str:
    """Export path@revision (externals ignored) into dest, which must not exist; the revision."""
    path, rev = split_svn_ref(ref)
    target = f"{url.rstrip('/')}/{path}"
    revision = _svn(["info", "--show-item", "revision", "--", f"{target}@{rev}"], timeout)
    number = revision.decode().strip()
    if not number.isdigit():
        raise VcsError(f"svn gave no revision for {redact(target)}@{rev}")
    export = ["export", "--quiet", "--ignore-externals", "--", f"{target}@{number}", str(dest)]
    _svn(export, timeout)
    if dest.is_symlink() or not dest.is_dir():
        raise VcsError(f"{path}@{number} is not a directory")
    return number


# --- committing a directory --------------------------------------------------------------------


def remove_empty_dirs(root: Path) -> None:
    """git records no empty directories: drop them so the tree on disk equals the commit."""
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        if Path(dirpath) != root and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _scan(root: Path) -> tuple[list[str], list[str]]:
    """The files and symlinks under root, once the tree passes the hosts' rules."""
    files: list[str] = []
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            relative = full.relative_to(root).as_posix()
            if full.is_symlink():
                links.append(relative)
            elif full.is_file():
                files.append(relative)
            elif not full.is_dir():
                raise VcsError(f"{shown(relative)}: not a regular file, directory or symlink")
    try:
        tree_rules.check_tree(sorted(files + links), links)
        tree_rules.check_links(root, links)
    except tree_rules.TreeError as e:
        raise VcsError(str(e)) from e
    return files, links


def _index_lines(git: Git, root: Path, files: list[str], links: list[str]) -> bytes:
    paths = b"".join(os.fsencode(root / f) + b"\n" for f in files)
    oids = git.run("hash-object", "-w", "--no-filters", "--stdin-paths", stdin=paths).split()
    lines = []
    for relative, oid in zip(files, oids, strict=True):
        mode = b"100755" if os.stat(root / relative).st_mode & 0o100 else b"100644"
        lines.append(b"%s %s\t%s\0" % (mode, oid, os.fsencode(relative)))
    for relative in links:
        target = os.fsencode(os.readlink(root / relative))
        oid = git.run("hash-object", "-w", "--no-filters", "--stdin", stdin=target).strip()
        lines.append(b"120000 %s\t%s\0" % (oid, os.fsencode(relative)))
    return b"".join(lines)


def commit_directory(git: Git, root: Path, message: str, parent: str | None) -> tuple[str, str]:
    """Commit the files under root byte for byte (no filters, no ignore rules): (commit, tree)."""
    files, links = _scan(root)
    with tempfile.TemporaryDirectory(prefix="ferry-index-") as scratch:
        index_env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        lines = _index_lines(git, root, files, links)
        git.run("update-index", "--add", "-z", "--index-info", stdin=lines, env=index_env)
        tree = git.run("write-tree", env=index_env).decode().strip()
    parents = ["-p", parent] if parent else []
    commit = (
        git.run(
            "commit-tree",
            *parents,
            "-F",
            "-",
            "--end-of-options",
            tree,
            stdin=message.encode(),
            env=COMMITTER,
        )
        .decode()
        .strip()
    )
    return commit, tree


def diff_summary(git: Git, old: str, new: str) -> dict[str, int]:
    """How many files the new tree adds, modifies and deletes against the old one."""
    out = git.run(
        "diff-tree",
        "-r",
        "-z",
        "--no-renames",
        "--name-status",
        "--end-of-options",
        f"{old}^{{tree}}",
        f"{new}^{{tree}}",
    )
    statuses = out.split(b"\0")[0::2]
    summary = {"added": 0, "modified": 0, "deleted": 0}
    for status in filter(None, statuses):
        key = {b"A": "added", b"D": "deleted"}.get(status[:1], "modified")
        summary[key] += 1
    return summary
