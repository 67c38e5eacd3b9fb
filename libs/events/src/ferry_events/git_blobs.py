"""A git tree written to a directory byte for byte: its listing, its safety check, and its
blobs streamed by one `git cat-file --batch` (the staging agent and the publisher share these).

Not `git checkout` or `git archive`: those apply .gitattributes (eol, export-ignore, filters),
and the files written must be exactly the blobs whose ids the manifest lists. A file that is
there already may be a hard link shared with another tree, so it is never opened for writing in
place: the new one is written under a temporary name and renamed over it. What a tree may hold
is ferry_events.tree_rules: its names and paths are checked here before anything is written,
its symlinks (tree_rules.check_links) once it is written.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from ferry_events.manifest import EXECUTABLE, REGULAR, SYMLINK, Entry
from ferry_events.tree_rules import TreeError, check_tree, shown

__all__ = [
    "GitRepo",
    "TreeError",
    "canonical_mode",
    "check_paths",
    "list_tree",
    "symlinks",
    "write_blobs",
]

_CHUNK = 1 << 20


class GitRepo(Protocol):
    """What these functions need of a repository: its git command line, environment, runner."""

    def argv(self, *args: str) -> list[str]: ...

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]: ...

    def run(
        self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> bytes: ...


def list_tree(git: GitRepo, treeish: str) -> list[Entry]:
    """Every file and symlink of a tree with its mode, blob id and size (submodules skipped)."""
    out = git.run("ls-tree", "-r", "-l", "-z", "--full-tree", "--end-of-options", treeish)
    entries = []
    for record in filter(None, out.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        mode, kind, oid, size = meta.split()
        if kind == b"blob":
            entries.append(Entry(os.fsdecode(path), canonical_mode(mode), oid.decode(), int(size)))
    return entries


def canonical_mode(mode: bytes) -> str:
    """The manifest's mode of a git tree entry's mode: symlink, executable or regular file."""
    if mode == SYMLINK.encode():
        return SYMLINK
    return EXECUTABLE if int(mode, 8) & 0o100 else REGULAR


def check_paths(entries: Iterable[Entry]) -> None:
    """Refuse a tree whose names the manifest cannot carry, or that would write outside the
    directory or through one of its own links (tree_rules.check_tree)."""
    entries = list(entries)
    check_tree(sorted(e.path for e in entries), symlinks(entries))


def symlinks(entries: Iterable[Entry]) -> list[str]:
    """The paths of the entries that are symlinks."""
    return [e.path for e in entries if e.mode == SYMLINK]


def write_blobs(git: GitRepo, entries: Sequence[Entry], root: Path) -> None:
    """Write each entry's blob at root/path; one that is there already is replaced by rename."""
    proc = subprocess.Popen(
        git.argv("cat-file", "--batch"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=git.env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    feeder = threading.Thread(target=_feed, args=(proc.stdin, entries), daemon=True)
    feeder.start()
    try:
        for entry in entries:
            _write_blob(proc.stdout, entry, root / entry.path)
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
        feeder.join()


def _feed(stdin: IO[bytes], entries: Sequence[Entry]) -> None:
    try:
        for entry in entries:
            stdin.write(entry.oid.encode() + b"\n")
        stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # the reader stopped early and says why


def _write_blob(stream: IO[bytes], entry: Entry, path: Path) -> None:
    header = stream.readline().split()
    if len(header) != 3 or header[1] != b"blob":
        raise TreeError(f"git has no blob {entry.oid} for {shown(entry.path)}")
    size = int(header[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.mode == SYMLINK:
        target = stream.read(size)
        create: Callable[[Path], None] = lambda at: os.symlink(target, at)  # noqa: E731
    else:
        create = lambda at: _write_file(stream, entry, size, at)  # noqa: E731
    try:
        create(path)
    except FileExistsError:  # perhaps a hard link shared with another tree: never write through
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.ferry-tmp")
        create(temporary)
        os.replace(temporary, path)
    stream.read(1)  # the newline after each object


def _write_file(stream: IO[bytes], entry: Entry, size: int, path: Path) -> None:
    """A new file at path; if path is there already, FileExistsError before anything is read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        remaining = size
        while remaining:
            chunk = stream.read(min(remaining, _CHUNK))
            if not chunk:
                raise TreeError(f"git cat-file ended early on {shown(entry.path)}")
            out.write(chunk)
            remaining -= len(chunk)
        os.fchmod(out.fileno(), 0o755 if entry.mode == EXECUTABLE else 0o644)
