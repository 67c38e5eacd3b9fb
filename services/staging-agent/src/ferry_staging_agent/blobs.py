"""A git tree written to a directory byte for byte, streamed from `git cat-file --batch`.

Not `git checkout` or `git archive`: those apply .gitattributes (eol, export-ignore, filters),
and the files served must be exactly the blobs whose ids the manifest lists.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from ferry_events.manifest import EXECUTABLE, REGULAR, SYMLINK, Entry

from ferry_staging_agent.vcs import Git, VcsError

_CHUNK = 1 << 20


def list_tree(git: Git, treeish: str) -> list[Entry]:
    """Every file and symlink of a tree with its mode, blob id and size (submodules skipped)."""
    out = git.run("ls-tree", "-r", "-l", "-z", "--full-tree", "--end-of-options", treeish)
    entries = []
    for record in filter(None, out.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        mode, kind, oid, size = meta.split()
        if kind != b"blob":
            continue
        entries.append(Entry(os.fsdecode(path), _canonical(mode.decode()), oid.decode(), int(size)))
    return entries


def _canonical(mode: str) -> str:
    if mode == SYMLINK:
        return SYMLINK
    return EXECUTABLE if int(mode, 8) & 0o100 else REGULAR


def check_paths(entries: Iterable[Entry]) -> None:
    """Refuse a tree that would write outside the directory or through one of its own links."""
    entries = list(entries)
    links = {e.path for e in entries if e.mode == SYMLINK}
    for entry in entries:
        parts = entry.path.split("/")
        if any(p in ("", ".", "..", ".git") for p in parts):
            raise VcsError(f"refusing an unsafe path in the tree: {entry.path!r}")
        parents = {str(p) for p in PurePosixPath(entry.path).parents}
        if parents & links:
            raise VcsError(f"refusing a path below a symlink: {entry.path!r}")


def write_tree(git: Git, entries: Sequence[Entry], root: Path) -> None:
    """Write the entries' blobs under root, which holds none of them yet."""
    check_paths(entries)
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
        pass  # the reader stopped early and said why


def _write_blob(stream: IO[bytes], entry: Entry, path: Path) -> None:
    header = stream.readline().split()
    if len(header) != 3 or header[1] != b"blob":
        raise VcsError(f"git has no blob {entry.oid} for {entry.path}")
    remaining = int(header[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.mode == SYMLINK:
        os.symlink(stream.read(remaining), path)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while remaining:
                chunk = stream.read(min(remaining, _CHUNK))
                if not chunk:
                    raise VcsError(f"git cat-file ended early on {entry.path}")
                out.write(chunk)
                remaining -= len(chunk)
            os.fchmod(out.fileno(), 0o755 if entry.mode == EXECUTABLE else 0o644)
    stream.read(1)  # the newline after each object
