"""A git tree written to a directory byte for byte (ferry_events.git_blobs), with its failures
reported as the staging agent's VcsError."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ferry_events import git_blobs, tree_rules
from ferry_events.manifest import Entry

from ferry_staging_agent.vcs import Git, VcsError


def list_tree(git: Git, treeish: str) -> list[Entry]:
    """Every file and symlink of a tree with its mode, blob id and size (submodules skipped)."""
    return git_blobs.list_tree(git, treeish)


def write_tree(git: Git, entries: Sequence[Entry], root: Path) -> None:
    """Write the entries' blobs under root, refusing a tree the hosts would refuse: its names and
    paths before anything is written, its symlinks once they are (resolved on disk, as a host
    resolves them)."""
    try:
        git_blobs.check_paths(entries)
        git_blobs.write_blobs(git, entries, root)
        tree_rules.check_links(root, git_blobs.symlinks(entries))
    except git_blobs.TreeError as e:
        raise VcsError(str(e)) from e
