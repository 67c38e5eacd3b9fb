"""A host's releases of one app: `<target>/releases/<N>/`, `current -> releases/<N>`, and the
manifests the agent keeps beside them in `<target>/.ferry/`.

Invariant: `releases/<N>` appears (by rename) only once its tree was verified, and `current`
changes only by os.replace() of a new link, so a kill at any point leaves `current` on a complete
release. Anything in `releases/` that is not a bare number is a leftover, removed by `prepare`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ferry_events import manifest

from ferry_rsync_agent.tree import UnsafeTree, inventory

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

    @property
    def spare(self) -> Path:
        """A verified hard-linked copy of an installed release, made while the host is idle, that
        the next sync starts from: the copy's link() per file (about 0.5 s of kernel time for
        20,000 files here) is then paid off the path from publish to switch."""
        return self.state / "spare"

    @property
    def spare_manifest(self) -> Path:
        """What the spare holds; written before the spare gets its name, never changed while
        it has it."""
        return self.state / "spare.manifest"

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
            remove(leftover)
    for leftover in layout.manifests.glob("*.tmp"):
        leftover.unlink()
    (layout.target / CURRENT_LINK_TMP).unlink(missing_ok=True)
    remove(layout.state / "spare.tmp")


def manifest_text(path: Path) -> str | None:
    """The manifest kept at path, exactly as written (bytes decoded, not read_text(): no "\r"
    read as a line break); None if there is none, or none this agent could have written."""
    try:
        return path.read_bytes().decode()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def make_spare(layout: Layout, version: int) -> str | None:
    """Make the spare a copy of release `version` (`cp -al`, at C speed), checked against the
    release's manifest so that nothing written into the live tree since slips into the next
    one. The spare's manifest once it is that release, else None."""
    text = manifest_text(layout.manifest_file(version))
    if text is None:
        return None
    if layout.spare.is_dir() and manifest_text(layout.spare_manifest) == text:
        return text
    try:
        entries = {entry.path: entry for entry in manifest.parse(text)}
    except manifest.ManifestError:
        return None  # kept by an older agent for a name it should have refused: pull it whole
    remove(layout.spare)
    building = layout.state / "spare.tmp"
    remove(building)
    _link_copy(layout.release(version), building)
    try:
        found = inventory(building, layout.release(version), entries)
    except UnsafeTree:
        found = None
    if found is None or found.digest != hashlib.sha256(text.encode()).hexdigest():
        remove(building)
        return None
    _write_durably(layout.spare_manifest, text)
    os.rename(building, layout.spare)
    return text


def seed(layout: Layout, version: int, base: int | None) -> str | None:
    """Start `incoming(version)` as the spare (renamed: instant), made now from release `base`
    if there is none; the manifest of what it holds, or None if there is nothing to start from."""
    remove(layout.incoming(version))
    text = manifest_text(layout.spare_manifest) if layout.spare.is_dir() else None
    if text is None and base is not None:
        text = make_spare(layout, base)
    if text is None:
        return None
    os.rename(layout.spare, layout.incoming(version))
    return text


def install(
    layout: Layout, version: int, manifest_text: str, written: Collection[str] | None = None
) -> None:
    """Give the verified tree in `incoming(version)` its final name, its manifest first.

    A power cut must not leave a named release with files whose data never reached the disk:
    the paths `written` (or removed) in a durable seed (the spare) and their directories are
    flushed one by one, side by side, so that the flush waits for this release's bytes, not for
    everything the host wrote lately as sync() would; a tree written whole (None): sync()."""
    # Not flushed: whoever reads it checks it against the tree or the digest first.
    _write_atomically(layout.manifest_file(version), manifest_text)
    incoming = layout.incoming(version)
    if written is None:
        os.sync()
    else:
        directories = {str(incoming / parent) for p in written for parent in Path(p).parents}
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_fsync_file, [str(incoming / p) for p in written]))
            list(pool.map(_fsync_dir_if_there, directories))
    os.rename(incoming, layout.release(version))
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
    remove(doomed)


def prune(layout: Layout, keep: int) -> list[int]:
    """Remove all but the `keep` newest releases, never `current` nor the previous one."""
    protected = {layout.current_version(), layout.previous_version()} - {None}
    newest_first = sorted(layout.versions(), reverse=True)
    others = [v for v in newest_first if v not in protected]
    doomed = others[max(keep - len(protected), 0) :]
    for version in doomed:
        discard(layout, version)
    return doomed


def _link_copy(source: Path, target: Path) -> None:
    """At a low priority: housekeeping, never on a release's path."""
    copied = subprocess.run(
        ["nice", "-n", "10", "cp", "-al", "--", str(source), str(target)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if copied.returncode != 0:
        raise OSError(f"cp -al exited {copied.returncode}: {copied.stderr.decode()[:300]}")


def remove(path: Path) -> None:
    """A file, a symlink or a whole directory; nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str, flush: bool = False) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as f:
        f.write(text)
        if flush:
            f.flush()
            os.fsync(f.fileno())
    os.replace(temporary, path)
    if flush:
        _fsync_dir(path.parent)


def _write_durably(path: Path, text: str) -> None:
    _write_atomically(path, text, flush=True)


def _fsync_file(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return  # removed, or a symlink: its directory's flush keeps it
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir_if_there(path: str) -> None:
    """A directory emptied by the removals is gone; its parent's flush keeps that."""
    try:
        _fsync_dir(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
