"""A release's manifest: path, git mode, git blob id and size of every file; and its digest.

The publisher reads it from git (`git ls-tree -r -l`: blob ids are content hashes already), the
rsync agent rebuilds it from disk for the files it received and reuses the rest from the previous
release. Both must produce the same text, so both use this module.

Lines are split at "\n" only: a path may hold any other character (a tab, a vertical tab,
U+2028) but no line break (ferry_events.tree_rules refuses those before a manifest is made).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REGULAR, EXECUTABLE, SYMLINK = "100644", "100755", "120000"


class ManifestError(ValueError):
    """A manifest line that is not `<mode> <oid> <size>\\t<path>`."""


@dataclass(frozen=True, order=True)
class Entry:
    path: str  # relative, '/'-separated; first so entries sort by path
    mode: str
    oid: str  # git blob id (sha1) of the content, or of the link target for symlinks
    size: int

    def line(self) -> str:
        return f"{self.mode} {self.oid} {self.size}\t{self.path}\n"


def git_blob_id(content: bytes) -> str:
    """What `git hash-object` prints for this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def entry_from_disk(root: Path, relative: str) -> Entry:
    """The entry of one file or symlink under root, hashed the way git would."""
    full = root / relative
    info = full.lstat()
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(os.fsencode(full))  # bytes: a target need not be UTF-8
        return Entry(relative, SYMLINK, git_blob_id(target), len(target))
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{relative}: not a regular file or symlink")
    mode = EXECUTABLE if info.st_mode & stat.S_IXUSR else REGULAR
    blob = hashlib.sha1(b"blob %d\0" % info.st_size, usedforsecurity=False)
    with full.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            blob.update(chunk)
    return Entry(relative, mode, blob.hexdigest(), info.st_size)


def render(entries: Iterable[Entry]) -> str:
    return "".join(e.line() for e in sorted(entries))


def parse(text: str) -> list[Entry]:
    """The entries of a rendered manifest; ManifestError on a line that is not one."""
    entries = []
    for line in filter(None, text.split("\n")):
        meta, _, path = line.partition("\t")
        try:
            mode, oid, size = meta.split(" ")
            entries.append(Entry(path, mode, oid, int(size)))
        except ValueError:
            raise ManifestError(f"not a manifest line: {line[:200]!r}") from None
    return entries


def digest(entries: Iterable[Entry]) -> str:
    """sha256 of the rendered manifest: what ReleaseTagged and HostSyncRequested carry."""
    return hashlib.sha256(render(entries).encode()).hexdigest()
