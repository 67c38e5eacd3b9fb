"""Stage a ticket: check its source out into a new tree, record that tree in git, push it to
the publisher's release repo under refs/staged/<ticket>, and switch the workspace to it."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from ferry_events.schemas import StagingRequested
from ferry_events.validation import APP_NAME, check_ref, check_source_url

from ferry_staging_agent.blobs import list_tree, write_tree
from ferry_staging_agent.settings import Settings
from ferry_staging_agent.vcs import (
    Git,
    commit_directory,
    diff_summary,
    export_svn,
    fetch_git_source,
    redact,
    remove_empty_dirs,
    resolve_git_ref,
    split_svn_ref,
)
from ferry_staging_agent.workspace import StagedTree, Workspace

# Also a safe git ref component: the ticket names refs/staged/<ticket_id>.
_TICKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_VERSION_TAG = re.compile(r"^refs/tags/([0-9]{1,18})$")


def check_request(cmd: StagingRequested, allow_file_urls: bool) -> None:
    """Defence in depth: the API checked all this, and a forged command must still run nothing."""
    if not re.match(APP_NAME, cmd.app):
        raise ValueError(f"invalid app name {cmd.app!r}")
    if not _TICKET_ID.match(cmd.ticket_id):
        raise ValueError(f"invalid ticket id {cmd.ticket_id!r}")
    check_ref(cmd.ref)
    check_source_url(cmd.source.url, cmd.source.type, allow_file=allow_file_urls)


def _is_local(base: str) -> bool:
    """A path, not a URL (`scheme://`) nor git's scp form (`host:path`)."""
    colon, slash = base.find(":"), base.find("/")
    return "://" not in base and not (colon > 0 and (slash == -1 or colon < slash))


class Stager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, app: str) -> asyncio.Lock:
        """One staging at a time per app: they share one workspace."""
        return self._locks.setdefault(app, asyncio.Lock())

    def workspace(self, app: str) -> Workspace:
        return Workspace(self.settings.staging_dir / app, self.settings.keep_trees)

    def release_repo(self, app: str) -> str:
        base = self.settings.release_repo_base
        if _is_local(base):
            return str(Path(base).resolve() / f"{app}.git")
        return f"{base.rstrip('/')}/{app}.git"

    def stage(self, cmd: StagingRequested) -> StagedTree:
        """Blocking: run it in a thread. Raises VcsError or ValueError with a reason to report."""
        check_request(cmd, self.settings.allow_file_urls)
        workspace = self.workspace(cmd.app)
        git = Git(workspace.repo, self.settings.command_timeout)
        git.init_bare()
        release = self.release_repo(cmd.app)
        if _is_local(self.settings.release_repo_base):
            Git(Path(release), self.settings.command_timeout).init_bare()
        tree_dir = workspace.new_tree_dir()
        try:
            staged = self._stage_into(cmd, git, release, tree_dir)
        except BaseException:
            shutil.rmtree(tree_dir, ignore_errors=True)
            raise
        workspace.switch(tree_dir, staged)  # a crash before this leaves the old tree served
        return staged

    def _stage_into(
        self, cmd: StagingRequested, git: Git, release: str, tree_dir: Path
    ) -> StagedTree:
        live = live_release(git, release)
        if cmd.source.type == "git":
            commit, tree, revision, files = self._check_out_git(cmd, git, tree_dir)
        else:
            commit, tree, revision, files = self._export_svn(cmd, git, tree_dir, parent=live)
        git.run("update-ref", f"refs/staged/{cmd.ticket_id}", commit)
        push = ["push", "--quiet", "--force", "--end-of-options", release]
        git.run(*push, f"{commit}:refs/staged/{cmd.ticket_id}")
        if live:
            summary = diff_summary(git, live, commit)
        else:  # the first release: everything is new
            summary = {"added": files, "modified": 0, "deleted": 0}
        return StagedTree(
            ticket_id=cmd.ticket_id,
            attempt=cmd.attempt,
            commit=commit,
            tree=tree,
            source_revision=revision,
            files=files,
            diff_summary=summary,
        )

    def _check_out_git(
        self, cmd: StagingRequested, git: Git, tree_dir: Path
    ) -> tuple[str, str, str, int]:
        fetch_git_source(git, cmd.source.url)
        commit = resolve_git_ref(git, cmd.ref)
        entries = list_tree(git, commit)
        tree_dir.mkdir()
        write_tree(git, entries, tree_dir)
        tree = git.text("rev-parse", "--verify", "--end-of-options", f"{commit}^{{tree}}")
        return commit, tree, commit, len(entries)

    def _export_svn(
        self, cmd: StagingRequested, git: Git, tree_dir: Path, parent: str | None
    ) -> tuple[str, str, str, int]:
        revision = export_svn(cmd.source.url, cmd.ref, tree_dir, self.settings.command_timeout)
        remove_empty_dirs(tree_dir)
        path, _ = split_svn_ref(cmd.ref)
        where = f"{redact(cmd.source.url.rstrip('/'))}/{path}@{revision}"
        message = f"Staged {where}\n\nsvn: {where}\nticket: {cmd.ticket_id}\n"
        commit, tree = commit_directory(git, tree_dir, message, parent)
        files = len(list_tree(git, tree))
        return commit, tree, revision, files


def live_release(git: Git, release: str) -> str | None:
    """The commit of the release repo's highest numeric tag, fetched here; None before any."""
    out = git.text("ls-remote", "--tags", "--refs", "--end-of-options", release)
    names = (line.split("\t")[-1] for line in out.splitlines())
    versions = [int(m[1]) for name in names if (m := _VERSION_TAG.match(name))]
    if not versions:
        return None
    tag = f"refs/tags/{max(versions)}"
    fetch = ["fetch", "--quiet", "--no-tags", "--force", "--end-of-options", release]
    git.run(*fetch, f"+{tag}:refs/ferry/live")
    return git.text("rev-parse", "--verify", "--end-of-options", "refs/ferry/live^{commit}")
