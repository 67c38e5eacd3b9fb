"""Blobs written to an export byte for byte, streamed by one `git cat-file --batch`.

Not `git archive` or `git checkout`: those apply .gitattributes (eol, export-ignore, filters),
and an export must hold exactly the blobs the manifest lists. Files of an export may be hard
links shared with older exports, so a file is never opened for writing in place: a new one is
written under a temporary name and renamed over the old name.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from ferry_events.manifest import EXECUTABLE, SYMLINK, Entry

from ferry_publisher.gitrepo import GitError, ReleaseRepo

_CHUNK = 1 << 20


def check_paths(entries: Iterable[Entry]) -> None:
    """Refuse a tree that would write outside the export or through one of its own links."""
    entries = list(entries)
    links = {e.path for e in entries if e.mode == SYMLINK}
    for entry in entries:
        if any(p in ("", ".", "..", ".git") for p in entry.path.split("/")):
            raise GitError(f"refusing an unsafe path in the tree: {entry.path!r}")
        if links & {str(p) for p in PurePosixPath(entry.path).parents}:
            raise GitError(f"refusing a path below a symlink: {entry.path!r}")


def write_blobs(repo: ReleaseRepo, entries: Sequence[Entry], root: Path) -> None:
    """Write each entry's blob at root/path, replacing by rename whatever is there."""
    proc = subprocess.Popen(
        repo.argv("cat-file", "--batch"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=repo.env(),
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
        raise GitError(f"git has no blob {entry.oid} for {entry.path}")
    remaining = int(header[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.ferry-tmp")
    if entry.mode == SYMLINK:
        os.symlink(stream.read(remaining), temporary)
    else:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while remaining:
                chunk = stream.read(min(remaining, _CHUNK))
                if not chunk:
                    raise GitError(f"git cat-file ended early on {entry.path}")
                out.write(chunk)
                remaining -= len(chunk)
            os.fchmod(out.fileno(), 0o755 if entry.mode == EXECUTABLE else 0o644)
    os.replace(temporary, path)
    stream.read(1)  # the newline after each object
