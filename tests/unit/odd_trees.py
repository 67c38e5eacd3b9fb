"""Trees with odd names and symlinks, and the whole way from a developer's git repo to a host:
the staging agent and the publisher on one data dir (as in `make run`), the publisher's own
rsync daemon, and one host's agent. Shared by test_odd_names.py and test_tree_defence.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from ferry_events.registry import Event
from ferry_events.schemas import (
    HostSyncRequested,
    ReleaseTagged,
    ReleaseTagRequested,
    Source,
    StagingCompleted,
    StagingRequested,
)
from ferry_publisher.handlers import tag_release
from ferry_publisher.releases import Publisher
from ferry_publisher.rsyncd import RsyncDaemon
from ferry_publisher.settings import Settings as PublisherSettings
from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.handlers import sync_release
from ferry_rsync_agent.releases import Layout, make_spare
from ferry_staging_agent.handlers import stage_ticket
from ferry_staging_agent.settings import Settings as StagingSettings
from ferry_staging_agent.stager import Stager

PASSWORD = "pw-odd-names"
HOST = "web-1"


@dataclass(frozen=True)
class Link:
    target: str


Tree = dict[bytes, "bytes | Link"]


# What a host could not take, and what the refusal says (after "refusing a ..."), path named.
REFUSED: dict[str, tuple[Tree, str]] = {
    "not UTF-8": ({b"caf\xe9.txt": b"latin-1\n"}, "not valid UTF-8: 'caf\\xe9.txt'"),
    "newline": ({b"two\nlines.txt": b"x\n"}, "line break in it: 'two\\nlines.txt'"),
    "carriage return": ({b"dos\r.txt": b"x\n"}, "line break in it: 'dos\\r.txt'"),
    "absolute symlink": ({b"etc": Link("/etc")}, "absolute path: 'etc' -> '/etc'"),
    "parent symlink": (
        {b"passwd": Link("../../etc/passwd")},
        "outside the tree: 'passwd' -> '../../etc/passwd'",
    ),
    # Each looks contained; followed, sub/esc is sub/up/.. = the root's parent.
    "escape through a link": (
        {b"sub/up": Link(".."), b"sub/esc": Link("up/..")},
        "outside the tree: 'sub/esc' -> 'up/..'",
    ),
}


def run(*argv: str | bytes, cwd: Path | None = None) -> bytes:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True).stdout


def write(root: Path, tree: Tree) -> None:
    for path, content in tree.items():
        full = os.path.join(os.fsencode(root), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if isinstance(content, Link):
            os.symlink(content.target, full)
        else:
            with open(full, "wb") as f:
                f.write(content)


def commit(work: Path, tree: Tree) -> str:
    write(work, tree)
    run("git", "add", "-A", cwd=work)
    run("git", "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "c", cwd=work)
    return run("git", "rev-parse", "HEAD", cwd=work).decode().strip()


def git_tree(repo: Path, ref: str) -> dict[bytes, tuple[str, bytes]]:
    """Every file and link of a commit: path bytes -> (git mode, content or link target)."""
    found = {}
    for record in filter(None, run("git", "ls-tree", "-r", "-z", ref, cwd=repo).split(b"\0")):
        meta, _, path = record.partition(b"\t")
        mode, _, oid = meta.split()
        found[path] = (mode.decode(), run("git", "cat-file", "blob", oid, cwd=repo))
    return found


def disk_tree(root: Path) -> dict[bytes, tuple[str, bytes]]:
    """The same view of a directory, by bytes paths (nothing decoded)."""
    found = {}
    top = os.fsencode(root.resolve())
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, top)
            if os.path.islink(full):
                found[relative] = ("120000", os.readlink(full))
            elif os.path.isfile(full):
                mode = "100755" if os.stat(full).st_mode & 0o100 else "100644"
                with open(full, "rb") as f:
                    found[relative] = (mode, f.read())
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Reports(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


async def stage(stager: Stager, work: Path, ticket: str) -> Event:
    """The staging agent on one command for the work tree's main; its last report."""
    source = Source(type="git", url=f"file://{work}")
    reports = Reports()
    await stage_ticket(
        StagingRequested(ticket_id=ticket, app="shop", source=source, ref="main"), stager, reports
    )
    return reports[-1]


@dataclass
class Pipeline:
    """A developer's git repo, the staging agent and the publisher on one data dir (as in `make
    run`), the publisher's own rsync daemon, and one host's agent."""

    work: Path
    stager: Stager
    publisher: Publisher
    agent: AgentConfig

    @property
    def layout(self) -> Layout:
        return Layout(self.agent.apps["shop"].target)

    async def release(self, ticket: str, version: int) -> ReleaseTagged:
        """Stage, tag and export the work tree's HEAD as release N."""
        staged = await stage(self.stager, self.work, ticket)
        assert isinstance(staged, StagingCompleted), staged
        reports = Reports()
        request = ReleaseTagRequested(
            ticket_id=ticket, app="shop", version=version, commit=staged.commit,
            tree=staged.tree, reason="r", author="dev", approver="lead",
        )  # fmt: skip
        await tag_release(request, self.publisher, reports)
        await self.publisher.idle()
        assert isinstance(reports[-1], ReleaseTagged), reports[-1]
        return reports[-1]

    async def sync(self, version: int, digest: str) -> Event:
        """The host's agent on one command; then, as once idle, the next sync's spare."""
        reports = Reports()
        command = HostSyncRequested(
            ticket_id=f"t{version}", app="shop", host=HOST, version=version, digest=digest
        )
        await sync_release(command, self.agent, reports)
        if (live := self.layout.current_version()) is not None:
            make_spare(self.layout, live)
        assert len(reports) == 1, reports
        return reports[0]


def new_work_tree(path: Path) -> Path:
    """A developer's git repo on branch main with a first commit."""
    path.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=path)
    commit(path, {b"index.html": b"v1\n", b"static/app.js": b"js\n"})
    return path


@asynccontextmanager
async def open_pipeline(
    tmp_path: Path, work: Path, rebuild_hook: bool = True
) -> AsyncIterator[Pipeline]:
    """The Pipeline for this work tree, its rsync daemon running; without the hook that
    rebuilds a missing export, it serves whatever is in the exports, as an older one did."""
    data = tmp_path / "data"
    settings = PublisherSettings(data_dir=data, rsync_password=PASSWORD)
    daemon = RsyncDaemon(
        settings.exports_dir, tmp_path / "rsyncd", address="127.0.0.1", port=free_port(),
        user="ferry", password=PASSWORD, hosts_allow="127.0.0.1",
        rebuild=[sys.executable, "-m", "ferry_publisher.reexport", str(settings.repos_dir)]
        if rebuild_hook else [],
    )  # fmt: skip
    password_file = tmp_path / "agent.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    (tmp_path / "host" / "shop").mkdir(parents=True)
    agent = AgentConfig.model_validate(
        {
            "host": HOST,
            "rsync_source": f"rsync://ferry@127.0.0.1:{daemon.port}/",
            "password_file": password_file,
            "state_dir": tmp_path / "state",
            "apps": {"shop": {"target": tmp_path / "host" / "shop", "keep": 3}},
        }
    )
    stager = Stager(StagingSettings(data_dir=data, allow_file_urls=True))
    async with daemon:
        yield Pipeline(work, stager, Publisher(settings, on_new_export=daemon.write_config), agent)
