"""Immutable per-version exports of an app's releases: <exports>/<app>/<N>/.

Built in <N>.tmp and renamed, so a crash never leaves a half export under the final name; a
tree the hosts would refuse (ferry_events.tree_rules) is never renamed, and since the publisher
tags N only once its export is built, an export without its tag is a leftover, built again.
Incremental: a hard-linked copy of an earlier export, then only the changed files rewritten;
unchanged files keep their inode and mtime, so rsync's quick check skips them on the hosts.
That copy costs a link per file (most of a second for 20,000 files), so it is made ahead, after
each release while nothing waits (`tidy`): next-<N> is a copy of export N, and the next release
only renames it. `tidy` also prunes the oldest exports beyond `keep` (renamed away first, so a
half-removed export is never served); their tags stay, and the rsync daemon rebuilds a pruned
export when a host asks for it (reexport.py). Each export's manifest is saved, so the next one
is the previous one plus git's diff. One builder at a time per app, across processes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from ferry_events.git_blobs import write_blobs
from ferry_events.tree_rules import check_links

from ferry_publisher.gitrepo import ReleaseRepo
from ferry_publisher.manifests import ReleaseManifest

_NEXT, _PRUNED = "next-", "pruned-"


class Exports:
    def __init__(self, root: Path, repo: ReleaseRepo, keep: int = 10) -> None:
        self.root = root
        # What hosts are not served, beside the exports on the same file system (hard links):
        # <exports>/.ferry/<app>/ (rsyncd serves only apps' directories).
        self.state = root.parent / ".ferry" / root.name
        self.repo = repo
        self.keep = max(1, keep)  # the newest export is the next release's base

    def path(self, version: int) -> Path:
        return self.root / str(version)

    def versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive over this app's exports: the publisher and the rsync daemon's hook build."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def manifest_file(self, version: int) -> Path:
        return self.state / "manifests" / str(version)

    def served_manifest(self, version: int) -> Path:
        """`<N>.manifest` beside `<N>/`: the hosts fetch it first and pull only what differs
        from a release they have; its sha256 is the digest their command carries."""
        return self.root / f"{version}.manifest"

    def build(self, version: int, commit: str) -> tuple[Path, ReleaseManifest]:
        """The export of this version and its manifest, built now unless it is there already.
        A tree the hosts would refuse raises UnsafeTree, and nothing of it is left to serve."""
        final = self.path(version)
        with self.locked():
            if final.is_dir() and self.repo.tag_commit(version) == commit:
                return final, self._existing(version, commit)
            building = self.root / f"{version}.tmp"
            for stale in (building, final):  # a crashed attempt; an export never tagged
                if stale.exists():
                    shutil.rmtree(stale)
            base = self._base_for(version)
            log = structlog.get_logger().bind(version=version, base=base and base[0])
            try:
                manifest = self._build_into(building, base, commit)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
            manifest.write(self.manifest_file(version))
            _write_served(self.served_manifest(version), manifest)
            os.rename(building, final)
        log.info("export.built", files=manifest.files)
        return final, manifest

    def _existing(self, version: int, commit: str) -> ReleaseManifest:
        """The manifest of an export that is there already, checked again as a new one is."""
        manifest = self._manifest(version, commit)
        manifest.check()
        check_links(self.path(version), manifest.links)
        if not self.served_manifest(version).is_file():  # an export made before they were
            _write_served(self.served_manifest(version), manifest)
        return manifest

    def _build_into(
        self, building: Path, base: tuple[int, str] | None, commit: str
    ) -> ReleaseManifest:
        """The tree of commit written at `building`, its names checked before, its symlinks
        after (resolved on disk, as the hosts resolve them)."""
        if base:
            manifest = self._build_from(base, commit, building)
        else:
            manifest = self._build_whole(commit, building)
        check_links(building, manifest.links)
        return manifest

    def _manifest(self, version: int, commit: str) -> ReleaseManifest:
        saved = ReleaseManifest.read(self.manifest_file(version))
        return saved or ReleaseManifest.of(self.repo.list_tree(commit))

    def _base_for(self, version: int) -> tuple[int, str] | None:
        """The nearest earlier export (else the nearest later one) whose tag git still has."""
        versions = self.versions()
        ordered = [v for v in reversed(versions) if v < version] + [
            v for v in versions if v > version
        ]
        for candidate in ordered:
            commit = self.repo.tag_commit(candidate)
            if commit:
                return candidate, commit
        return None

    def _build_whole(self, commit: str, into: Path) -> ReleaseManifest:
        entries = self.repo.list_tree(commit)
        manifest = ReleaseManifest.of(entries)
        manifest.check()
        into.mkdir()
        write_blobs(self.repo, entries, into)
        return manifest

    def _build_from(self, base: tuple[int, str], commit: str, into: Path) -> ReleaseManifest:
        """The base's manifest and export with only what git's diff names changed."""
        deleted, written = self.repo.changes(base[1], commit)
        manifest = self._manifest(*base).changed(deleted, written)
        manifest.check()
        ready = self.state / f"{_NEXT}{base[0]}"
        if ready.is_dir():
            os.rename(ready, into)  # made by `tidy` after release base[0]
        else:
            _link_copy(self.path(base[0]), into)
        for relative in deleted:
            (into / relative).unlink(missing_ok=True)
            _remove_empty_parents(into, into / relative)
        write_blobs(self.repo, written, into)
        return manifest

    def tidy(self, built: int) -> None:
        """After export `built`: prune beyond `keep` (never `built`, never the newest), then
        make the copy of the newest export that the next release starts from."""
        with self.locked():
            versions = self.versions()
            pruned = [v for v in versions[: -self.keep] if v != built]
            for old in pruned:
                self.served_manifest(old).unlink(missing_ok=True)
                os.rename(self.path(old), self.state / f"{_PRUNED}{old}")
                self.manifest_file(old).unlink(missing_ok=True)
            ready = self.state / f"{_NEXT}{versions[-1]}" if versions else None
            for leftover in self.state.iterdir():
                if leftover.name.startswith((_PRUNED, _NEXT)) and leftover != ready:
                    _run_quietly("rm", "-rf", "--", str(leftover))
            if ready is not None and not ready.is_dir():
                copying = ready.with_name(ready.name + ".tmp")
                _run_quietly("cp", "-al", "--", str(self.path(versions[-1])), str(copying))
                os.rename(copying, ready)
        structlog.get_logger().info("exports.tidied", pruned=pruned, next_base=versions[-1:])


def _write_served(path: Path, manifest: ReleaseManifest) -> None:
    """Its text exactly (checked: one line a path), readable by the rsync daemon's user."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(manifest.text, newline="")
    temporary.chmod(0o644)
    os.replace(temporary, path)


def _link_copy(source: Path, target: Path) -> None:
    """`cp -al`: the same inodes under new names, in C."""
    _run("cp", "-al", "--", str(source), str(target))


def _run_quietly(*argv: str) -> None:
    """Work nobody waits for, at a low priority: the hosts may be pulling the release now."""
    _run("nice", "-n", "10", *argv)


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        command = " ".join(argv[:-2])  # without the paths: `cp -al --`, `nice -n 10 rm -rf --`
        raise OSError(f"{command} failed: {proc.stderr.decode(errors='replace').strip()}")


def _remove_empty_parents(root: Path, path: Path) -> None:
    parent = path.parent
    while parent != root and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
