"""Release N of an app: annotated tag N on exactly the staged commit, its immutable export,
and its manifest digest. Asking again for the same N and commit is harmless."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ferry_events import manifest
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

    def lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def repo(self, app: str) -> ReleaseRepo:
        return ReleaseRepo(self.settings.repos_dir / f"{app}.git", self.settings.command_timeout)

    def exports(self, app: str) -> Exports:
        return Exports(self.settings.exports_dir / app, self.repo(app))

    def publish(self, cmd: ReleaseTagRequested) -> Release:
        """Blocking: run it in a thread. Raises ReleaseRefused or GitError with the reason."""
        _check(cmd)
        repo = self.repo(cmd.app)
        if not repo.exists():
            raise ReleaseRefused(f"no release repo for app {cmd.app}")
        tagged = repo.tag_commit(cmd.version)
        if tagged is None:
            _check_staged(repo, cmd)
            repo.create_tag(cmd.version, cmd.commit, tag_message(cmd))
        elif tagged != cmd.commit:
            raise ReleaseRefused(
                f"tag {cmd.version} already names commit {tagged}, not {cmd.commit}:"
                " refusing to move a release"
            )
        entries = repo.list_tree(cmd.commit)
        export = self.exports(cmd.app).build(cmd.version, cmd.commit, entries)
        if self.on_new_export:
            self.on_new_export()
        return Release(
            version=cmd.version,
            commit=cmd.commit,
            tree=repo.tree_of(cmd.commit),
            digest=manifest.digest(entries),
            files=len(entries),
            bytes=sum(e.size for e in entries),
            export=export,
        )


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


def _check_staged(repo: ReleaseRepo, cmd: ReleaseTagRequested) -> None:
    """Tag only what staging pushed for this ticket, and only the tree that was tested."""
    staged = repo.commit_of(f"refs/staged/{cmd.ticket_id}")
    if staged != cmd.commit:
        raise ReleaseRefused(
            f"refs/staged/{cmd.ticket_id} is {staged or 'missing'}, not commit {cmd.commit}"
        )
    tree = repo.tree_of(cmd.commit)
    if tree != cmd.tree:
        raise ReleaseRefused(f"commit {cmd.commit} has tree {tree}, not the tested tree {cmd.tree}")
