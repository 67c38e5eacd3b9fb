"""Release N of an app: annotated tag N on exactly the staged commit, its immutable export,
and its manifest digest. Asking again for the same N and commit is harmless."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from ferry_events.schemas import ReleaseTagRequested
from ferry_events.validation import APP_NAME

from ferry_publisher.exports import Exports
from ferry_publisher.gitrepo import ReleaseRepo
from ferry_publisher.settings import Settings

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TICKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class ReleaseRefused(Exception):
    """This release cannot be made as asked; nothing was changed."""


@dataclass(frozen=True)
class Release:
    version: int
    commit: str
    tree: str
    digest: str
    files: int
    bytes: int
    export: Path


class Publisher:
    def __init__(self, settings: Settings, on_new_export: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.on_new_export = on_new_export  # e.g. the rsync daemon's config for a new app
        self._locks: dict[str, asyncio.Lock] = {}
        self._tidying: set[asyncio.Task[None]] = set()

    def lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def repo(self, app: str) -> ReleaseRepo:
        return ReleaseRepo(self.settings.repos_dir / f"{app}.git", self.settings.command_timeout)

    def exports(self, app: str) -> Exports:
        keep = self.settings.publisher_keep_exports
        return Exports(self.settings.exports_dir / app, self.repo(app), keep)

    def publish(self, cmd: ReleaseTagRequested) -> Release:
        """Blocking: run it in a thread. Raises ReleaseRefused, GitError or TreeError (UnsafeTree
        for a tree the hosts would refuse) with the reason."""
        _check(cmd)
        repo = self.repo(cmd.app)
        if not repo.exists():
            raise ReleaseRefused(f"no release repo for app {cmd.app}")
        tree, tagged = _tree_to_tag(repo, cmd)
        # Exported before it is tagged: a tree the hosts would refuse leaves no tag behind.
        export, manifest = self.exports(cmd.app).build(cmd.version, cmd.commit)
        if not tagged:
            repo.create_tag(cmd.version, cmd.commit, tag_message(cmd))
        if self.on_new_export:
            self.on_new_export()
        return Release(
            version=cmd.version,
            commit=cmd.commit,
            tree=tree,
            digest=manifest.digest,
            files=manifest.files,
            bytes=manifest.bytes,
            export=export,
        )

    def tidy_later(self, app: str, version: int) -> None:
        """Prune old exports and prepare the next release's copy, after the report is out: the
        hosts start pulling meanwhile. The app's lock holds the next release back until done."""
        task = asyncio.create_task(self._tidy(app, version))
        self._tidying.add(task)
        task.add_done_callback(self._tidying.discard)

    async def _tidy(self, app: str, version: int) -> None:
        async with self.lock(app):
            try:
                await asyncio.to_thread(self.exports(app).tidy, version)
            except OSError as e:  # the releases are fine; only disk or the next one's speed suffer
                structlog.get_logger().warning("exports.tidy_failed", reason=str(e))

    async def idle(self) -> None:
        """Wait for the tidying started so far (before stopping)."""
        while self._tidying:
            await asyncio.gather(*self._tidying, return_exceptions=True)


def tag_message(cmd: ReleaseTagRequested) -> str:
    return (
        f"Release {cmd.version} of {cmd.app}\n\n"
        f"Ticket: {cmd.ticket_id}\nReason: {cmd.reason}\n"
        f"Author: {cmd.author}\nApprover: {cmd.approver}\n"
    )


def _check(cmd: ReleaseTagRequested) -> None:
    """Defence in depth: the names become paths and refs."""
    if not re.match(APP_NAME, cmd.app):
        raise ReleaseRefused(f"invalid app name {cmd.app!r}")
    if not _TICKET_ID.match(cmd.ticket_id):
        raise ReleaseRefused(f"invalid ticket id {cmd.ticket_id!r}")
    if not _COMMIT.match(cmd.commit) or not _COMMIT.match(cmd.tree):
        raise ReleaseRefused("commit and tree must be full 40-hex git ids")
    if cmd.version < 1:
        raise ReleaseRefused(f"invalid version {cmd.version}")


def _tree_to_tag(repo: ReleaseRepo, cmd: ReleaseTagRequested) -> tuple[str, bool]:
    """The tree of the commit to tag as N, and whether tag N is there already (on it)."""
    tagged = repo.tag_commit(cmd.version)
    if tagged is None:
        return _check_staged(repo, cmd), False
    if tagged != cmd.commit:
        raise ReleaseRefused(
            f"tag {cmd.version} already names commit {tagged}, not {cmd.commit}:"
            " refusing to move a release"
        )
    return repo.tree_of(cmd.commit), True


def _check_staged(repo: ReleaseRepo, cmd: ReleaseTagRequested) -> str:
    """Tag only what staging pushed for this ticket, and only the tree that was tested (its
    id is returned)."""
    staged = repo.commit_of(f"refs/staged/{cmd.ticket_id}")
    if staged != cmd.commit:
        raise ReleaseRefused(
            f"refs/staged/{cmd.ticket_id} is {staged or 'missing'}, not commit {cmd.commit}"
        )
    tree = repo.tree_of(cmd.commit)
    if tree != cmd.tree:
        raise ReleaseRefused(f"commit {cmd.commit} has tree {tree}, not the tested tree {cmd.tree}")
    return tree
