"""The publisher on a real release repo: tags, incremental exports, manifests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ferry_events import manifest
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS
from ferry_events.bus_memory import MemoryBus
from ferry_events.envelope import Message
from ferry_events.registry import Event, parse_event
from ferry_events.schemas import (
    ReleaseTagFailed,
    ReleaseTagged,
    ReleaseTagRequested,
    Source,
    StagingCompleted,
    StagingRequested,
)
from ferry_publisher.daemon import rsync_daemon
from ferry_publisher.handlers import tag_release
from ferry_publisher.main import run as run_publisher
from ferry_publisher.releases import Publisher
from ferry_publisher.settings import Settings
from ferry_staging_agent import settings as staging_settings
from ferry_staging_agent.handlers import stage_ticket
from ferry_staging_agent.stager import Stager
from pydantic import SecretStr

from .agent_bus import free_port, relayed, scrape, trusted_key_file

MARKER = Path(f"/tmp/ferry-pwned-{uuid.uuid4().hex}")
REASON = f"#123 fix checkout; $(touch {MARKER}) `touch {MARKER}` 'quoted'\n\nsecond paragraph"


def run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(work: Path, message: str) -> str:
    run("git", "add", "-A", cwd=work)
    run("git", "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", message, cwd=work)
    return run("git", "rev-parse", "HEAD", cwd=work)


def disk_entries(root: Path) -> list[manifest.Entry]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            if full.is_symlink() or full.is_file():
                entries.append(manifest.entry_from_disk(root, full.relative_to(root).as_posix()))
    return entries


class Reports(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)

    def tagged(self) -> ReleaseTagged:
        assert isinstance(self[-1], ReleaseTagged), self[-1]
        return self[-1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        rsync_password="not-used-here",
        trusted_keys=[trusted_key_file(tmp_path / "keys")],
    )


@pytest.fixture
def work(tmp_path: Path, settings: Settings) -> Path:
    """A developer's clone whose commits are pushed as refs/staged/<ticket>."""
    repo = settings.repos_dir / "shop.git"
    run("git", "init", "-q", "--bare", str(repo))
    work = tmp_path / "work"
    (work / "static" / "img").mkdir(parents=True)
    run("git", "init", "-q", "-b", "main", cwd=work)
    (work / ".gitattributes").write_text("*.txt text eol=crlf\n")
    (work / "keep.txt").write_text("unchanged\n")
    (work / "change.txt").write_text("before\n")
    (work / "gone.txt").write_text("deleted later\n")
    (work / "tool.sh").write_text("#!/bin/sh\n")
    (work / "static" / "img" / "logo.png").write_bytes(bytes(range(256)) * 400)
    (work / "old-dir").mkdir()
    (work / "old-dir" / "inner").write_text("becomes a file\n")
    (work / "link").symlink_to("keep.txt")
    return work


def stage(work: Path, settings: Settings, ticket: str) -> str:
    commit = commit_all(work, ticket)
    repo = settings.repos_dir / "shop.git"
    run("git", "push", "-q", "-f", str(repo), f"{commit}:refs/staged/{ticket}", cwd=work)
    return commit


def tag_request(work: Path, commit: str, ticket: str, version: int) -> ReleaseTagRequested:
    return ReleaseTagRequested(
        ticket_id=ticket,
        app="shop",
        version=version,
        commit=commit,
        tree=run("git", "rev-parse", f"{commit}^{{tree}}", cwd=work),
        reason=REASON,
        author="dev",
        approver="lead",
    )


def git_files(work: Path, commit: str) -> dict[str, bytes]:
    names = run("git", "ls-tree", "-r", "--name-only", commit, cwd=work).splitlines()
    show = ["git", "cat-file", "blob"]
    return {
        n: subprocess.run(
            [*show, f"{commit}:{n}"], cwd=work, capture_output=True, check=True
        ).stdout
        for n in names
    }


def export_files(root: Path) -> dict[str, bytes]:
    found = {}
    for entry in disk_entries(root):
        full = root / entry.path
        found[entry.path] = os.readlink(full).encode() if full.is_symlink() else full.read_bytes()
    return found


async def test_tags_exactly_the_staged_commit_and_exports_its_tree(
    work: Path, settings: Settings
) -> None:
    commit = stage(work, settings, "t1")
    reports = Reports()
    await tag_release(tag_request(work, commit, "t1", 1), Publisher(settings), reports)

    done = reports.tagged()
    repo = settings.repos_dir / "shop.git"
    assert run("git", "rev-parse", "refs/tags/1^{commit}", cwd=repo) == commit
    assert run("git", "cat-file", "-t", "refs/tags/1", cwd=repo) == "tag"  # annotated
    tag = run("git", "cat-file", "tag", "refs/tags/1", cwd=repo)
    assert "tagger Ferry publisher <ferry-publisher@localhost>" in tag
    for line in ("Ticket: t1", f"Reason: {REASON}", "Author: dev", "Approver: lead"):
        assert line in tag
    assert not MARKER.exists()

    export = settings.exports_dir / "shop" / "1"
    assert export_files(export) == git_files(work, commit)  # blobs, not CRLF checkouts
    assert (export / "keep.txt").read_bytes() == b"unchanged\n"
    from_disk = disk_entries(export)
    assert done.digest == manifest.digest(from_disk)
    assert (done.commit, done.tree) == (commit, run("git", "rev-parse", "HEAD^{tree}", cwd=work))
    assert done.files == len(from_disk) == 8
    assert done.bytes == sum(e.size for e in from_disk)
    assert sorted(p.name for p in export.parent.iterdir()) == ["1", "1.manifest"]  # no 1.tmp
    assert (export.parent / "1.manifest").read_text() == manifest.render(from_disk)


@pytest.mark.parametrize("state", ["prepared", "from-an-older-publisher", "manifest-damaged"])
async def test_the_next_release_is_incremental_and_leaves_the_old_one_untouched(
    work: Path, settings: Settings, state: str
) -> None:
    publisher = Publisher(settings)
    await tag_release(tag_request(work, stage(work, settings, "t1"), "t1", 1), publisher, Reports())
    await publisher.idle()
    kept = settings.exports_dir / ".ferry"  # the copy made ahead and the saved manifest
    if state == "from-an-older-publisher":
        shutil.rmtree(kept)
    elif state == "manifest-damaged":  # a line lost: git is asked instead
        saved = kept / "shop" / "manifests" / "1"
        lines = saved.read_text().splitlines(keepends=True)
        saved.write_text("".join(line for line in lines if not line.endswith("\tkeep.txt\n")))
    first = settings.exports_dir / "shop" / "1"
    before = {e.path: e for e in disk_entries(first)}
    stat_before = {p: os.lstat(first / p) for p in before}

    (work / "change.txt").write_text("after\n")
    (work / "gone.txt").unlink()
    (work / "new.txt").write_text("added\n")
    (work / "tool.sh").chmod(0o755)  # mode only: the blob is the same
    (work / "link").unlink()
    (work / "link").write_text("a file now\n")
    shutil.rmtree(work / "old-dir")
    (work / "old-dir").write_text("a file where a directory was\n")
    commit = stage(work, settings, "t2")
    reports = Reports()
    await tag_release(tag_request(work, commit, "t2", 2), publisher, reports)

    second = settings.exports_dir / "shop" / "2"
    assert export_files(second) == git_files(work, commit)
    assert reports.tagged().digest == manifest.digest(disk_entries(second))
    for unchanged in ("keep.txt", "static/img/logo.png", ".gitattributes"):
        assert os.lstat(second / unchanged).st_ino == stat_before[unchanged].st_ino
        assert os.lstat(second / unchanged).st_mtime_ns == stat_before[unchanged].st_mtime_ns
    for changed in ("change.txt", "tool.sh", "link"):
        assert os.lstat(second / changed).st_ino != stat_before[changed].st_ino
    assert os.stat(second / "tool.sh").st_mode & 0o777 == 0o755
    # Release 1 is exactly as it was: nothing was written through a shared hard link.
    assert {e.path: e for e in disk_entries(first)} == before
    assert os.stat(first / "tool.sh").st_mode & 0o777 == 0o644


async def test_asking_again_reports_again_and_completes_a_crashed_export(
    work: Path, settings: Settings
) -> None:
    publisher = Publisher(settings)
    cmd = tag_request(work, stage(work, settings, "t1"), "t1", 1)
    first = Reports()
    await tag_release(cmd, publisher, first)
    export = settings.exports_dir / "shop" / "1"
    inode = os.stat(export / "keep.txt").st_ino

    again = Reports()
    await tag_release(cmd, publisher, again)
    assert again == first
    assert os.stat(export / "keep.txt").st_ino == inode  # the export was reused

    shutil.rmtree(export)  # as if the process died while exporting into 1.tmp
    (export.parent / "1.tmp").mkdir()
    (export.parent / "1.tmp" / "half").write_text("x")
    after_crash = Reports()
    await tag_release(cmd, publisher, after_crash)
    assert after_crash == first
    assert export_files(export) == git_files(work, cmd.commit)
    assert sorted(p.name for p in export.parent.iterdir()) == ["1", "1.manifest"]


async def test_a_version_tagged_on_another_commit_is_refused_and_nothing_changes(
    work: Path, settings: Settings
) -> None:
    publisher = Publisher(settings)
    await tag_release(tag_request(work, stage(work, settings, "t1"), "t1", 1), publisher, Reports())
    (work / "change.txt").write_text("other\n")
    other = tag_request(work, stage(work, settings, "t2"), "t2", 1)
    repo = settings.repos_dir / "shop.git"
    refs_before = run("git", "for-each-ref", cwd=repo)
    files_before = export_files(settings.exports_dir / "shop" / "1")

    reports = Reports()
    await tag_release(other, publisher, reports)

    assert isinstance(reports[-1], ReleaseTagFailed)
    assert "tag 1 already names commit" in reports[-1].reason
    assert run("git", "for-each-ref", cwd=repo) == refs_before
    assert export_files(settings.exports_dir / "shop" / "1") == files_before


@pytest.mark.parametrize("wrong", ["staged ref", "tree"])
async def test_only_the_tested_tree_staged_for_the_ticket_is_tagged(
    work: Path, settings: Settings, wrong: str
) -> None:
    cmd = tag_request(work, stage(work, settings, "t1"), "t1", 1)
    if wrong == "tree":
        cmd = cmd.model_copy(update={"tree": "0" * 40})
    else:
        cmd = cmd.model_copy(update={"ticket_id": "t9"})
    reports = Reports()
    await tag_release(cmd, Publisher(settings), reports)
    assert isinstance(reports[-1], ReleaseTagFailed)
    assert run("git", "tag", cwd=settings.repos_dir / "shop.git") == ""
    assert not (settings.exports_dir / "shop" / "1").exists()


async def test_publishes_what_the_staging_agent_staged(tmp_path: Path, work: Path) -> None:
    data = tmp_path / "shared-data"  # both services on one FERRY_DATA_DIR, as in `make run`
    commit_all(work, "source")
    staging = staging_settings.Settings(data_dir=data, allow_file_urls=True)
    staged = Reports()
    source = Source(type="git", url=f"file://{work}")
    cmd = StagingRequested(ticket_id="t1", app="shop", source=source, ref="main")
    await stage_ticket(cmd, Stager(staging), staged)
    done = staged[-1]
    assert isinstance(done, StagingCompleted)

    publisher = Publisher(Settings(data_dir=data, rsync_password="x"))
    reports = Reports()
    request = ReleaseTagRequested(
        ticket_id="t1",
        app="shop",
        version=1,
        commit=done.commit,
        tree=done.tree,
        reason="r",
        author="dev",
        approver="lead",
    )
    await tag_release(request, publisher, reports)
    tagged = reports.tagged()
    export = data / "publisher" / "exports" / "shop" / "1"
    site = data / "staging" / "shop" / "site"
    assert export_files(export) == export_files(site)
    assert (
        tagged.digest
        == manifest.digest(disk_entries(site))
        == manifest.digest(disk_entries(export))
    )


def publish_changes(work: Path, settings: Settings, publisher: Publisher, version: int) -> str:
    (work / "change.txt").write_text(f"release {version}\n")
    return stage(work, settings, f"t{version}")


async def test_old_exports_are_pruned_and_a_pruned_one_is_exported_again_on_request(
    work: Path, settings: Settings
) -> None:
    settings = settings.model_copy(update={"publisher_keep_exports": 2})
    publisher = Publisher(settings)
    first = Reports()
    commits = {}
    for version in (1, 2, 3, 4):
        commits[version] = publish_changes(work, settings, publisher, version)
        reports = first if version == 1 else Reports()
        await tag_release(
            tag_request(work, commits[version], f"t{version}", version), publisher, reports
        )
        await publisher.idle()
    exports = settings.exports_dir / "shop"
    assert sorted(p.name for p in exports.iterdir()) == ["3", "3.manifest", "4", "4.manifest"]
    repo = settings.repos_dir / "shop.git"
    assert run("git", "tag", "--list", cwd=repo).split() == ["1", "2", "3", "4"]  # tags stay

    # Asked again for release 1 (a retried publish): exported anew from tag 1, and kept.
    again = Reports()
    await tag_release(tag_request(work, commits[1], "t1", 1), publisher, again)
    await publisher.idle()
    assert again == first
    assert export_files(exports / "1") == git_files(work, commits[1])
    assert manifest.digest(disk_entries(exports / "1")) == first.tagged().digest
    assert sorted(p.name for p in exports.iterdir()) == [
        "1",
        "1.manifest",
        "3",
        "3.manifest",
        "4",
        "4.manifest",
    ]


async def test_a_host_pulling_a_pruned_release_gets_it_rebuilt_from_its_tag(
    work: Path, settings: Settings, tmp_path: Path
) -> None:
    """A rollback reaches the hosts without the publisher: the rsync daemon rebuilds on demand."""
    settings = settings.model_copy(
        update={
            "publisher_keep_exports": 1,
            "rsync_port": free_port(),
            "rsync_password": SecretStr("pw-1"),
        }
    )
    publisher = Publisher(settings)
    commit = publish_changes(work, settings, publisher, 1)
    first = Reports()
    await tag_release(tag_request(work, commit, "t1", 1), publisher, first)
    await publisher.idle()
    await tag_release(
        tag_request(work, publish_changes(work, settings, publisher, 2), "t2", 2),
        publisher,
        Reports(),
    )
    await publisher.idle()
    assert not (settings.exports_dir / "shop" / "1").exists()

    async with rsync_daemon(settings) as daemon:
        daemon.write_config()
        source = f"rsync://ferry@127.0.0.1:{daemon.port}/shop/"
        pulls = [
            subprocess.Popen(
                ["rsync", "-a", source + what, tmp_path / h],
                env=dict(os.environ, RSYNC_PASSWORD="pw-1"),
                stderr=subprocess.PIPE,
            )
            # At once: built once, both served. An agent asks for the manifest first.
            for h, what in (("host-a", "1/"), ("host-b", "1/"), ("host-c.manifest", "1.manifest"))
        ]
        for pull in pulls:
            _, stderr = pull.communicate(timeout=120)
            assert pull.returncode == 0, stderr.decode()
        missing = subprocess.run(
            ["rsync", "-a", f"rsync://ferry@127.0.0.1:{daemon.port}/shop/7/", tmp_path / "c"],
            env=dict(os.environ, RSYNC_PASSWORD="pw-1"),
            capture_output=True,
            check=False,
        )
    for host in ("host-a", "host-b"):
        assert manifest.digest(disk_entries(tmp_path / host)) == first.tagged().digest
    served = (tmp_path / "host-c.manifest").read_bytes()
    assert hashlib.sha256(served).hexdigest() == first.tagged().digest
    assert missing.returncode != 0
    assert b"shop has no release 7" in missing.stderr


@pytest.mark.rabbitmq
async def test_the_publisher_process_tags_from_the_bus_and_serves_over_rsync(
    amqp_url: str, work: Path, settings: Settings, tmp_path: Path
) -> None:
    cmd = tag_request(work, stage(work, settings, "t1"), "t1", 1)
    bus = await open_bus(amqp_url)
    received: asyncio.Queue[Message] = asyncio.Queue()
    await bus.declare_queue("test-reports", ["release.#"], REPORTS)
    await bus.declare_queue("publisher", ["release.tag_requested"], EVENTS)
    await bus.consume("test-reports", received.put)
    port = free_port()
    env = dict(
        os.environ,
        FERRY_BROKER_URL=amqp_url,
        FERRY_DATA_DIR=str(settings.data_dir),
        FERRY_RSYNC_PORT=str(port),
        FERRY_RSYNC_PASSWORD="pw-of-test",
        FERRY_TRUSTED_KEYS=",".join(map(str, settings.trusted_keys)),
    )
    process = subprocess.Popen(
        [Path(sys.executable).parent / "ferry-publisher"], env=env, stderr=subprocess.PIPE
    )
    try:
        await bus.publish(EVENTS, [relayed(cmd)])
        report = await asyncio.wait_for(received.get(), 60)
        tagged = parse_event(report.type, 1, report.body["data"])
        assert isinstance(tagged, ReleaseTagged), report.body
        pulled = subprocess.run(
            ["rsync", "-a", f"rsync://ferry@127.0.0.1:{port}/shop/1/", str(tmp_path / "host")],
            env=dict(os.environ, RSYNC_PASSWORD="pw-of-test"),
            capture_output=True,
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr
        assert tagged.digest == manifest.digest(disk_entries(tmp_path / "host"))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        await bus.close()
    assert process.returncode == 0, stderr.decode()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the daemon stopped with the publisher


async def test_the_publisher_counts_tag_commands_on_its_metrics_endpoint(
    work: Path, settings: Settings
) -> None:
    cmd = tag_request(work, stage(work, settings, "t1"), "t1", 1)
    bus = MemoryBus()
    received: asyncio.Queue[Message] = asyncio.Queue()
    await bus.declare_queue("test-reports", ["release.#"], REPORTS)
    await bus.consume("test-reports", received.put)
    port = free_port()
    served = settings.model_copy(update={"metrics_port": port, "rsync_port": free_port()})
    stop = asyncio.Event()
    publisher = asyncio.create_task(run_publisher(served, stop, bus))
    try:
        assert 'result="completed"' not in await scrape(port)
        await bus.publish(EVENTS, [relayed(cmd)])
        assert (await asyncio.wait_for(received.get(), 60)).type == "release.tagged"

        text = await scrape(port)
    finally:
        stop.set()
        await asyncio.wait_for(publisher, 15)
    assert 'ferry_publisher_commands_total{app="shop",result="completed"} 1.0' in text
    assert 'ferry_publisher_command_seconds_count{app="shop"} 1.0' in text
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the endpoint stops with the publisher
