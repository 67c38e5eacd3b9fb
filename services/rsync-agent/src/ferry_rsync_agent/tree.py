"""Read a release tree on disk back into its manifest, and refuse a tree that reaches outside
or holds a name the manifest cannot carry (ferry_events.tree_rules: staging and the publisher
refuse the same trees by the same rules).

Incremental: a file that is the very inode of the base release's file (seeded as a hard link
and left alone by rsync, which replaces a changed file by rename) takes the base's verified
entry; every other file is hashed. The inode is the ground truth of "not transferred", whatever
rsync chose to print.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ferry_events import manifest
from ferry_events.manifest import Entry, entry_from_disk
from ferry_events.tree_rules import UnsafeTree, check_link, check_name, shown

__all__ = ["Inventory", "UnsafeTree", "check_link", "inventory"]


@dataclass(frozen=True)
class Inventory:
    entries: list[Entry]
    hashed: int  # files read and hashed; the others were reused from the base release

    @cached_property
    def digest(self) -> str:
        return manifest.digest(self.entries)


def inventory(
    root: Path, base: Path | None = None, base_entries: Mapping[str, Entry] | None = None
) -> Inventory:
    """The manifest entries of every file and symlink under root (directories are not entries,
    as in git). Raises UnsafeTree."""
    real_root = os.path.realpath(root)
    entries: list[Entry] = []
    hashed = 0
    for relative, item in _walk(root):
        check_name(relative)
        if item.is_symlink():
            check_link(real_root, root / relative, relative)
            entries.append(entry_from_disk(root, relative))
        elif item.is_file(follow_symlinks=False):
            known = (base_entries or {}).get(relative)
            if base and known and _same_file(item, f"{base}/{relative}", known):
                entries.append(known)
            else:
                entries.append(entry_from_disk(root, relative))
                hashed += 1
        else:
            raise UnsafeTree(
                f"{shown(relative)}: neither a regular file, a directory nor a symlink"
            )
    return Inventory(entries, hashed)


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry below root with its '/'-separated relative path; directories are entered,
    never followed through a symlink."""
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(root / prefix if prefix else root) as items:
            for item in items:
                relative = f"{prefix}{item.name}"
                if item.is_dir(follow_symlinks=False):
                    pending.append(relative + "/")
                else:
                    yield relative, item


def _same_file(item: os.DirEntry[str], base_file: str, known: Entry) -> bool:
    try:
        base_info = os.lstat(base_file)  # a str, not a Path: this runs for every file
    except FileNotFoundError:
        return False
    info = item.stat(follow_symlinks=False)
    same_inode = (base_info.st_ino, base_info.st_dev) == (info.st_ino, info.st_dev)
    # Size and mode as verified: a stale entry (its inode chmod-ed since) is never reused.
    mode = manifest.EXECUTABLE if info.st_mode & stat.S_IXUSR else manifest.REGULAR
    return same_inode and info.st_size == known.size and mode == known.mode
