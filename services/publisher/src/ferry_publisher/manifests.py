"""A release's manifest carried from one release to the next: the previous release's lines, with
only the paths git's diff names replaced, instead of listing and parsing the whole tree again.

Kept as ferry_events.manifest renders it (one `Entry.line()` a path, sorted by path), so its
digest is manifest.digest of the same entries; each export's is saved, under its digest.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ferry_events.manifest import SYMLINK, Entry
from ferry_events.tree_rules import check_tree


@dataclass(frozen=True)
class ReleaseManifest:
    lines: dict[str, str]  # path -> its manifest line, newline included

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> ReleaseManifest:
        return cls({e.path: e.line() for e in entries})

    @classmethod
    def read(cls, path: Path) -> ReleaseManifest | None:
        """The saved manifest, or None if there is none (an export made before they were) or it
        does not match the digest saved above it (cut short by a crash): then git is asked."""
        try:
            # Bytes decoded, not read_text(): no "\r" translated into a line break.
            digest, _, text = path.read_bytes().decode().partition("\n")
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            return None
        lines = (line + "\n" for line in text.split("\n")[:-1])
        return cls({line.partition("\t")[2][:-1]: line for line in lines})

    def write(self, path: Path) -> None:
        """Its digest, then its text (check() first: one line a path)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        temporary.write_text(f"{self.digest}\n{self.text}", newline="")
        os.replace(temporary, path)

    def changed(self, deleted: Iterable[str], written: Iterable[Entry]) -> ReleaseManifest:
        lines = dict(self.lines)
        for path in deleted:
            lines.pop(path, None)
        lines.update((e.path, e.line()) for e in written)
        return ReleaseManifest(lines)

    @cached_property
    def text(self) -> str:
        """= manifest.render(entries)."""
        return "".join(self.lines[path] for path in sorted(self.lines))

    @cached_property
    def digest(self) -> str:
        """= manifest.digest(entries): sha256 of the rendered manifest."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def files(self) -> int:
        return len(self.lines)

    @property
    def bytes(self) -> int:
        return sum(int(line.split(" ", 2)[2].partition("\t")[0]) for line in self.lines.values())

    @property
    def links(self) -> list[str]:
        """The paths of its symlinks."""
        return [path for path, line in self.lines.items() if line.startswith(SYMLINK + " ")]

    def check(self) -> None:
        """Refuse a tree the hosts would refuse (tree_rules.check_tree: names the manifest cannot
        carry, unsafe paths, paths below a symlink) before anything of it is written."""
        check_tree(sorted(self.lines), self.links)
