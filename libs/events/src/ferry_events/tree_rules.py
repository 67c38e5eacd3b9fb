"""What a release tree may hold: one rule set for staging, the publisher and the hosts alike.

    TreeError        the tree cannot be written or read safely (git_blobs raises it too)
     └ UnsafeTree    a name, path or symlink a release may not hold; its message names the path,
                     printable-escaped (`shown`)

Names: a manifest line is `<mode> <oid> <size>\\t<path>\\n` in UTF-8 (ferry_events.manifest).
The path is what follows the first tab, so a tab in it is carried, as is a leading dash (every
tool gets paths after `--` or below a prefix). A newline would end the line, and a carriage
return ends it for every reader that translates newlines; a name that is not UTF-8 has no text
form for the manifest, the logs or the UI. Those three are refused; everything else is carried
byte for byte.

Symlinks: resolved the way the kernel follows them, on the tree as written (os.path.realpath),
so a link that escapes only through another link is caught; lexical checks (rsync's
--safe-links) miss `a/b -> ..` followed by `a/c -> b/../..`.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "TreeError",
    "UnsafeTree",
    "check_link",
    "check_links",
    "check_name",
    "check_path",
    "check_tree",
    "shown",
]

# A path component that is empty, ".", ".." or ".git" (whole components only).
_UNSAFE = re.compile(r"(?:^|/)(?:\.{0,2}|\.git)(?:/|$)")
# Lone surrogates: the bytes of a name that is not UTF-8, as os.fsdecode carries them.
_UNDECODABLE = range(0xDC80, 0xDD00)


class TreeError(Exception):
    """The tree cannot be written or read safely."""


class UnsafeTree(TreeError):
    """A name, path or symlink that a release may not hold."""


def shown(path: str) -> str:
    """The path quoted, every character printable: undecodable bytes as \\xNN, a backslash as
    \\\\, control and invisible characters as Python escapes (\\n, \\t, \\u200b)."""
    return "'" + "".join(_shown_char(c) for c in path) + "'"


def _shown_char(c: str) -> str:
    if ord(c) in _UNDECODABLE:
        return f"\\x{ord(c) - 0xDC00:02x}"
    if c == "\\":
        return "\\\\"
    return c if c.isprintable() else c.encode("unicode_escape").decode("ascii")


def check_name(path: str) -> None:
    """Refuse a name the manifest cannot carry as one line of UTF-8 text."""
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            reason = f"refusing a file name that is not valid UTF-8: {shown(path)}"
            raise UnsafeTree(reason) from None
    if "\n" in path or "\r" in path:
        raise UnsafeTree(f"refusing a file name with a line break in it: {shown(path)}")


def check_path(path: str) -> None:
    """check_name, and a plain relative path: no component empty, '.', '..' or '.git'."""
    check_name(path)
    if _UNSAFE.search(path):
        raise UnsafeTree(f"refusing an unsafe path in the tree: {shown(path)}")


def check_tree(paths: Sequence[str], links: Iterable[str]) -> None:
    """check_path on a tree's sorted paths, and no path below one of its symlinks (which would
    be written through the link): a bisection per symlink, not a loop over each path's parents
    (this runs on every release)."""
    for path in paths:
        check_path(path)
    for link in links:
        below = bisect.bisect_left(paths, link + "/")
        if below < len(paths) and paths[below].startswith(link + "/"):
            raise UnsafeTree(f"refusing a path below a symlink: {shown(paths[below])}")


def check_link(real_root: str, link: Path, relative: str) -> None:
    """Refuse the symlink `relative` (at `link`) if it leaves the tree whose realpath is
    real_root: an absolute target, or one that resolves outside, links through links included."""
    target = os.readlink(link)
    if os.path.isabs(target):
        raise UnsafeTree(
            f"refusing a symlink to an absolute path: {shown(relative)} -> {shown(target)}"
        )
    resolved = os.path.realpath(link)
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise UnsafeTree(
            f"refusing a symlink pointing outside the tree: {shown(relative)} -> {shown(target)}"
        )


def check_links(root: Path, links: Iterable[str]) -> None:
    """check_link on each of these symlinks of the tree written at root."""
    real_root = os.path.realpath(root)
    for relative in links:
        try:
            check_link(real_root, root / relative, relative)
        except OSError as e:
            raise UnsafeTree(f"{shown(relative)}: not a symlink as listed ({e.strerror})") from e
