"""A host's releases of one app: `<target>/releases/<N>/`, `current -> releases/<N>`, and the
manifests the agent keeps beside them in `<target>/.ferry/`.

Invariant: `releases/<N>` appears (by rename) only once its tree was verified, and `current`
changes only by os.replace() of a new link, so a kill at any point leaves `current` on a complete
release. Anything in `releases/` that is not a bare number is a leftover, removed by `prepare`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ferry_events import manifest
from ferry_events.manifest import Entry

CURRENT_LINK_TMP = ".current.tmp"


@dataclass(frozen=True)
class Layout:
    target: Path

    @property
    def releases(self) -> Path:
        return self.target / "releases"

    @property
    def current(self) -> Path:
        return self.target / "current"

    @property
    def state(self) -> Path:
        return self.target / ".ferry"

    @property
    def manifests(self) -> Path:
        return self.state / "manifests"

    def release(self, version: int) -> Path:
        return self.releases / str(version)

    def incoming(self, version: int) -> Path:
        return self.releases / f"{version}.tmp"

    def manifest_file(self, version: int) -> Path:
        return self.manifests / str(version)

    def current_version(self) -> int | None:
        """The release `current` points to, or None before the first switch."""
        return _version_of_link(self.current)

    def previous_version(self) -> int | None:
        """The release `current` pointed to before the last switch."""
        try:
            return int((self.state / "previous").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def versions(self) -> list[int]:
        """Installed releases, oldest first."""
        if not self.releases.is_dir():
            return []
        return sorted(int(p.name) for p in self.releases.iterdir() if is_version(p.name))


def is_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def _version_of_link(link: Path) -> int | None:
    try:
        target = os.readlink(link)
    except OSError:  # no link yet, or not a link
        return None
    head, _, name = target.rpartition("/")
    return int(name) if head == "releases" and is_version(name) else None


def prepare(layout: Layout) -> None:
    """Create the layout's directories and remove what an interrupted attempt left behind."""
    layout.releases.mkdir(exist_ok=True)
    layout.manifests.mkdir(parents=True, exist_ok=True)
    for leftover in layout.releases.iterdir():
        if not is_version(leftover.name):
            _remove(leftover)
    for leftover in layout.manifests.glob("*.tmp"):
        leftover.unlink()
    (layout.target / CURRENT_LINK_TMP).unlink(missing_ok=True)


def read_manifest(layout: Layout, version: int) -> dict[str, Entry]:
    """The verified manifest kept for a release, by path; empty if there is none."""
    try:
        text = layout.manifest_file(version).read_text()
    except FileNotFoundError:
        return {}
    return {entry.path: entry for entry in manifest.parse(text)}


def seed(layout: Layout, version: int, base: int) -> None:
    """Start `incoming(version)` as a copy of release `base` made of hard links (`cp -al`, at C
    speed), for rsync to update: only what changed is then written, always to a new inode."""
    incoming = layout.incoming(version)
    _remove(incoming)
    copied = subprocess.run(
        ["cp", "-al", "--", str(layout.release(base)), str(incoming)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if copied.returncode != 0:
        raise OSError(f"cp -al exited {copied.returncode}: {copied.stderr.decode()[:300]}")


def unshare(root: Path, paths: Iterable[str]) -> None:
    """Give these files under root inodes of their own (same bytes, mode and times), so that
    changing their attributes there leaves the installed release they were linked from alone."""
    for relative in paths:
        path = root / relative
        copy = path.with_name(path.name + ".unshared.tmp")
        if path.is_symlink():
            os.symlink(os.readlink(path), copy)
        elif path.is_file():
            shutil.copy2(path, copy)
        else:
            continue
        os.replace(copy, path)


def install(layout: Layout, version: int, entries: Iterable[Entry]) -> None:
    """Give the verified tree in `incoming(version)` its final name, its manifest first."""
    _write_durably(layout.manifest_file(version), manifest.render(entries))
    # A power cut must not leave a named release with files whose data never reached the disk.
    os.sync()
    os.rename(layout.incoming(version), layout.release(version))
    _fsync_dir(layout.releases)


def switch_current(layout: Layout, version: int) -> None:
    """Point `current` at releases/<version> in one atomic step."""
    before = layout.current_version()
    if before == version:
        return
    if before is not None:
        _write_durably(layout.state / "previous", str(before))
    temporary = layout.target / CURRENT_LINK_TMP
    temporary.unlink(missing_ok=True)
    os.symlink(f"releases/{version}", temporary)
    os.replace(temporary, layout.current)
    _fsync_dir(layout.target)


def discard(layout: Layout, version: int) -> None:
    """Remove a release that is not current; a kill half-way leaves only a leftover."""
    doomed = layout.releases / f"{version}.discard"
    os.rename(layout.release(version), doomed)
    layout.manifest_file(version).unlink(missing_ok=True)
    _remove(doomed)


def prune(layout: Layout, keep: int) -> list[int]:
    """Remove all but the `keep` newest releases, never `current` nor the previous one."""
    protected = {layout.current_version(), layout.previous_version()} - {None}
    newest_first = sorted(layout.versions(), reverse=True)
    others = [v for v in newest_first if v not in protected]
    doomed = others[max(keep - len(protected), 0) :]
    for version in doomed:
        discard(layout, version)
    return doomed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_durably(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
