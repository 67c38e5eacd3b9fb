"""An app's bare release repo: the staging agent pushes refs/staged/<ticket>; tags are releases.

git runs as argument lists only, prompts off, `ext::` refused, `--end-of-options` before refs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from ferry_events import git_blobs
from ferry_events.manifest import Entry

_GIT_LOCATION_VARS = frozenset(
    "GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_COMMON_DIR"
    " GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_NAMESPACE GIT_PREFIX".split()
)
# Modes in a raw diff that are no file of the tree: absent, or a submodule's commit.
_NOT_A_FILE = (b"000000", b"160000")
TAGGER = {
    "GIT_COMMITTER_NAME": "Ferry publisher",
    "GIT_COMMITTER_EMAIL": "ferry-publisher@localhost",
}


class GitError(Exception):
    """git refused or failed; the message says which command and why."""


class ReleaseRepo:
    def __init__(self, git_dir: Path, timeout: float = 900.0) -> None:
        self.git_dir = git_dir
        self.timeout = timeout

    def exists(self) -> bool:
        return (self.git_dir / "HEAD").is_file()

    def argv(self, *args: str) -> list[str]:
        return ["git", "-c", "protocol.ext.allow=never", f"--git-dir={self.git_dir}", *args]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        return env | {"GIT_TERMINAL_PROMPT": "0"} | dict(extra or {})

    def run(
        self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> bytes:
        try:
            proc = subprocess.run(
                self.argv(*args),
                input=stdin,
                capture_output=True,
                env=self.env(env),
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise GitError(f"git {args[0]} timed out") from e
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise GitError(f"git {args[0]} failed: {' | '.join(message) or 'no message'}")
        return proc.stdout

    def text(self, *args: str) -> str:
        return self.run(*args).decode().strip()

    def commit_of(self, name: str) -> str | None:
        """The commit a ref or object id names, or None."""
        try:
            return self.text(
                "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"
            )
        except GitError:
            return None

    def tag_commit(self, version: int) -> str | None:
        return self.commit_of(f"refs/tags/{version}")

    def tree_of(self, commit: str) -> str:
        return self.text("rev-parse", "--verify", "--end-of-options", f"{commit}^{{tree}}")

    def create_tag(self, version: int, commit: str, message: str) -> None:
        """Annotated tag; the message goes in on stdin, verbatim (a '#' line is kept)."""
        self.run(
            "tag",
            "--annotate",
            "--cleanup=verbatim",
            "--file=-",
            "--end-of-options",
            str(version),
            commit,
            stdin=message.encode(),
            env=TAGGER,
        )

    def list_tree(self, commit: str) -> list[Entry]:
        """Every file and symlink with mode, blob id and size: the manifest (submodules skipped)."""
        return git_blobs.list_tree(self, commit)

    def changes(self, old: str, new: str) -> tuple[list[str], list[Entry]]:
        """(deleted, written): the paths to remove and the entries to (re)write to turn old's
        tree into new's, with one `diff-tree` and one `cat-file` for the written blobs' sizes."""
        out = self.run(
            "diff-tree", "-r", "-z", "--no-renames", "--end-of-options", f"{old}^{{tree}}",
            f"{new}^{{tree}}",
        )  # fmt: skip
        fields = out.split(b"\0")
        deleted: list[str] = []
        written: list[tuple[str, bytes, str]] = []
        for meta, raw_path in zip(fields[0::2], fields[1::2], strict=False):
            old_mode, new_mode, _, oid, _ = meta[1:].split(b" ")  # ":old new oldid newid S"
            path = os.fsdecode(raw_path)
            if new_mode not in _NOT_A_FILE:
                written.append((path, new_mode, oid.decode()))  # replaced by rename if there
            elif old_mode not in _NOT_A_FILE:
                deleted.append(path)
        sizes = self._sizes(oid for _, _, oid in written)
        return deleted, [Entry(p, git_blobs.canonical_mode(m), o, sizes[o]) for p, m, o in written]

    def _sizes(self, oids: Iterable[str]) -> dict[str, int]:
        """Blob sizes by id, from one `git cat-file --batch-check`."""
        wanted = "".join(f"{oid}\n" for oid in oids).encode()
        if not wanted:
            return {}
        sizes = {}
        for line in self.run("cat-file", "--batch-check", stdin=wanted).decode().splitlines():
            found = line.split(" ")
            if len(found) != 3 or found[1] != "blob":
                raise GitError(f"git has no blob {found[0]}")
            sizes[found[0]] = int(found[2])
        return sizes
