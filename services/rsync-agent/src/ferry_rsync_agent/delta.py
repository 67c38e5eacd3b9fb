"""From a verified release to the next by its manifests alone: which paths go, which come new.

The publisher serves release N's manifest beside its tree, and its sha256 is the digest the
approved command carries, so the manifest is as trustworthy as the tree. Comparing it with the
manifest of a release this host already verified tells exactly what differs, so a sync touches
only those paths: no walk of the whole tree on either side, no hashing of what did not change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ferry_events import manifest
from ferry_events.manifest import Entry, entry_from_disk
from ferry_events.tree_rules import check_links, check_path, shown

from ferry_rsync_agent.releases import remove


class DeltaRefused(Exception):
    """The new manifest or the tree built from it is not what the command names."""


@dataclass(frozen=True)
class Delta:
    deleted: list[str]  # paths in the old release only, deepest first
    changed: list[Entry]  # entries new or different in the new release
    links: list[str]  # every symlink of the new release (each is checked, changed or not)
    files: int  # entries in the new release


def manifest_of(data: bytes, digest: str) -> str:
    """Release N's manifest from the bytes served: checked against the command's digest, then
    decoded as UTF-8 (strictly, and with no newline translation, unlike read_text())."""
    found = hashlib.sha256(data).hexdigest()
    if found != digest:
        raise DeltaRefused(
            f"digest mismatch: the published manifest hashes to {found}, expected {digest}"
        )
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise DeltaRefused(f"the published manifest is not UTF-8 (byte {e.start})") from e


def delta(old_text: str, new_text: str) -> Delta:
    """Line sets in C: a 20,000-entry manifest pair is compared in milliseconds."""
    old_lines, new_lines = old_text.split("\n"), new_text.split("\n")
    old, new = set(old_lines), set(new_lines)
    try:
        changed = manifest.parse("\n".join(sorted(new - old)))
        gone = manifest.parse("\n".join(old - new))
    except ValueError as e:
        raise DeltaRefused(f"a manifest line does not parse: {e}") from e
    changed_paths = {entry.path for entry in changed}
    deleted = [entry.path for entry in gone if entry.path not in changed_paths]
    for path in (*changed_paths, *deleted):
        check_path(path)  # UnsafeTree: the publisher refuses such a tree, and so does a host
    links = [line.partition("\t")[2] for line in new_lines if line.startswith(manifest.SYMLINK)]
    return Delta(sorted(deleted, reverse=True), changed, links, len(new) - ("" in new))


def clear(root: Path, found: Delta) -> None:
    """Remove from the seed what the new release does not have, and every path about to be
    replaced: rsync then writes each changed file to a fresh inode, never to one the seed
    shares with an installed release."""
    for relative in found.deleted:
        remove(root / relative)
        _remove_empty_parents(root, root / relative)
    for entry in found.changed:
        remove(root / entry.path)


def verify(root: Path, found: Delta) -> None:
    """Hash what was pulled and check every symlink; the rest is the verified seed's."""
    for entry in found.changed:
        try:
            got = entry_from_disk(root, entry.path)
        except (FileNotFoundError, ValueError) as e:
            raise DeltaRefused(f"{shown(entry.path)}: not received as published ({e})") from e
        if got != entry:
            raise DeltaRefused(f"{shown(entry.path)}: received content differs from the manifest")
    check_links(root, found.links)


def _remove_empty_parents(root: Path, path: Path) -> None:
    parent = path.parent
    while parent != root:
        try:
            parent.rmdir()  # only if empty
        except OSError:
            return
        parent = parent.parent
