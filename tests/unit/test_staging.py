"""The staging agent's handler on real git and svn repositories and real directories."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS
from ferry_events.bus_memory import MemoryBus
from ferry_events.envelope import Message, StoredEvent
from ferry_events.registry import Event, parse_event
from ferry_events.schemas import (
    Source,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
    StagingStarted,
)
from ferry_staging_agent.handlers import stage_ticket
from ferry_staging_agent.main import run as run_agent
from ferry_staging_agent.settings import Settings
from ferry_staging_agent.stager import Stager

from .agent_bus import (
    drained,
    free_port,
    listen_to_reports,
    publish_once_bound,
    relayed,
    scrape,
    signed,
    trusted_key_file,
)


def run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(work: Path, message: str) -> str:
    run("git", "add", "-A", cwd=work)
    run("git", "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", message, cwd=work)
    return run("git", "rev-parse", "HEAD", cwd=work)


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file and link under root, with its content (a link's: its target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            if full.is_symlink():
                found[full.relative_to(root).as_posix()] = os.readlink(full).encode()
            elif full.is_file():
                found[full.relative_to(root).as_posix()] = full.read_bytes()
    return found


def git_files(repo: Path, commit: str) -> dict[str, bytes]:
    names = run("git", "ls-tree", "-r", "--name-only", commit, cwd=repo).splitlines()
    show = ["git", "cat-file", "blob"]
    return {
        n: subprocess.run(
            [*show, f"{commit}:{n}"], cwd=repo, capture_output=True, check=True
        ).stdout
        for n in names
    }


class Reports(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)

    def completed(self) -> StagingCompleted:
        assert isinstance(self[-1], StagingCompleted), self[-1]
        return self[-1]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    work = tmp_path / "source"
    (work / "static").mkdir(parents=True)
    run("git", "init", "-q", "-b", "main", cwd=work)
    (work / "index.html").write_text("v1\n")
    (work / "static" / "app.js").write_text("js\n")
    (work / "static" / "old.css").write_text("css\n")
    commit_all(work, "first")
    run("git", "-c", "user.name=T", "-c", "user.email=t@x", "tag", "-a", "-m", "r", "v1", cwd=work)
    run("git", "checkout", "-q", "-b", "slim", cwd=work)
    (work / "static" / "old.css").unlink()
    (work / "index.html").write_text("slim\n")
    commit_all(work, "slim")
    run("git", "checkout", "-q", "main", cwd=work)
    return work


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        allow_file_urls=True,
        keep_trees=2,
        trusted_keys=[trusted_key_file(tmp_path / "keys")],
    )


def request(source: Path | str, ref: str, ticket: str = "t1", **kw: object) -> StagingRequested:
    url = source if isinstance(source, str) else f"file://{source}"
    kind = "svn" if url.startswith("file://") and "svn" in url else "git"
    return StagingRequested(
        ticket_id=ticket, app="shop", source=Source(type=kind, url=url), ref=ref, **kw
    )


def site(settings: Settings) -> Path:
    return settings.data_dir / "staging" / "shop" / "site"


def release_repo(settings: Settings) -> Path:
    return settings.data_dir / "publisher" / "repos" / "shop.git"


async def test_stages_a_branch_and_pushes_it_for_the_publisher(
    source: Path, settings: Settings
) -> None:
    reports = Reports()
    await stage_ticket(request(source, "main"), Stager(settings), reports)

    head = run("git", "rev-parse", "main", cwd=source)
    assert isinstance(reports[0], StagingStarted)
    done = reports.completed()
    assert (done.commit, done.source_revision, done.files) == (head, head, 3)
    assert done.tree == run("git", "rev-parse", "main^{tree}", cwd=source)
    assert done.diff_summary == {"added": 3, "modified": 0, "deleted": 0}
    assert site(settings).is_symlink()
    assert tree_files(site(settings)) == git_files(source, head)
    staged = run("git", "rev-parse", "refs/staged/t1", cwd=release_repo(settings))
    assert staged == head


@pytest.mark.parametrize("ref", ["v1", "slim", "commit", "abbreviated"])
async def test_stages_a_tag_a_branch_and_commits(
    source: Path, settings: Settings, ref: str
) -> None:
    wanted = {"v1": "v1^{commit}", "slim": "slim", "commit": "slim~1", "abbreviated": "slim~1"}
    commit = run("git", "rev-parse", wanted[ref], cwd=source)
    ref = {"commit": commit, "abbreviated": commit[:7]}.get(ref, ref)
    reports = Reports()
    await stage_ticket(request(source, ref), Stager(settings), reports)
    assert reports.completed().commit == commit
    assert tree_files(site(settings)) == git_files(source, commit)


async def test_switching_to_a_smaller_tree_leaves_nothing_behind(
    source: Path, settings: Settings
) -> None:
    stager = Stager(settings)
    await stage_ticket(request(source, "main", "t1"), stager, Reports())
    first_tree = os.readlink(site(settings))
    for ticket in ("t2", "t3"):
        await stage_ticket(request(source, "slim", ticket), stager, Reports())

    assert tree_files(site(settings)) == git_files(source, "slim")
    assert not (site(settings) / "static" / "old.css").exists()
    trees = settings.data_dir / "staging" / "shop" / "trees"
    assert len([p for p in trees.iterdir() if p.is_dir()]) == 2  # keep_trees
    assert not (site(settings).parent / first_tree).exists()


async def test_a_failed_staging_leaves_the_workspace_on_the_old_tree(
    source: Path, settings: Settings
) -> None:
    stager = Stager(settings)
    await stage_ticket(request(source, "main", "t1"), stager, Reports())
    before = os.readlink(site(settings))
    reports = Reports()
    await stage_ticket(request(source, "no-such-branch", "t2"), stager, reports)

    assert isinstance(reports[-1], StagingFailed)
    assert "no-such-branch" in reports[-1].reason
    assert os.readlink(site(settings)) == before
    trees = settings.data_dir / "staging" / "shop" / "trees"
    assert sorted(p.name for p in trees.iterdir() if p.is_dir()) == [Path(before).name]


async def test_redelivery_re_reports_and_does_nothing_else(
    source: Path, settings: Settings
) -> None:
    stager = Stager(settings)
    first = Reports()
    await stage_ticket(request(source, "main"), stager, first)
    tree_dir = os.readlink(site(settings))
    inode = os.stat(site(settings) / "index.html").st_ino

    again = Reports()
    await stage_ticket(request(source, "main"), stager, again)
    assert again == [first.completed()]  # no StagingStarted: nothing was started
    assert os.readlink(site(settings)) == tree_dir
    assert os.stat(site(settings) / "index.html").st_ino == inode

    retried = Reports()  # a new attempt of the same ticket is staged anew
    await stage_ticket(request(source, "main", attempt=2), stager, retried)
    assert isinstance(retried[0], StagingStarted) and retried.completed().attempt == 2
    assert os.readlink(site(settings)) != tree_dir


async def test_diff_summary_is_against_the_highest_numeric_release_tag(
    source: Path, settings: Settings
) -> None:
    stager = Stager(settings)
    await stage_ticket(request(source, "main", "t1"), stager, Reports())
    repo = release_repo(settings)
    tag = ["git", "-c", "user.name=P", "-c", "user.email=p@x", "tag", "-a", "-m", "r"]
    run(*tag, "9", "refs/staged/t1", cwd=repo)
    run(*tag, "10", "refs/staged/t1", cwd=repo)
    run(*tag, "v99", "refs/staged/t1", cwd=repo)  # not a release number: ignored
    reports = Reports()
    await stage_ticket(request(source, "slim", "t2"), stager, reports)
    assert reports.completed().diff_summary == {"added": 0, "modified": 1, "deleted": 1}


@pytest.fixture
def svn_url(tmp_path: Path) -> str:
    repo = tmp_path / "svnrepo"
    run("svnadmin", "create", str(repo))
    url = f"file://{repo}"
    run("svn", "mkdir", "-q", "-m", "layout", f"{url}/trunk", f"{url}/branches")  # r1
    work = tmp_path / "wc"
    run("svn", "checkout", "-q", f"{url}/trunk", str(work))
    (work / "lib" / "empty").mkdir(parents=True)
    (work / "index.php").write_text("r2\n")
    (work / "lib" / "a.php").write_text("a\n")
    run("svn", "add", "-q", "index.php", "lib", cwd=work)
    run("svn", "commit", "-q", "-m", "r2", cwd=work)
    (work / "index.php").write_text("r3\n")
    run("svn", "commit", "-q", "-m", "r3", cwd=work)
    run("svn", "copy", "-q", "-m", "r4", f"{url}/trunk", f"{url}/branches/x")
    return url


async def test_stages_svn_trunk_at_a_revision_and_a_branch(
    svn_url: str, settings: Settings
) -> None:
    stager = Stager(settings)
    reports = Reports()
    await stage_ticket(request(svn_url, "trunk@2", "t1"), stager, reports)
    done = reports.completed()
    assert (done.source_revision, done.files) == ("2", 2)
    assert tree_files(site(settings)) == {"index.php": b"r2\n", "lib/a.php": b"a\n"}
    repo = release_repo(settings)
    assert run("git", "rev-parse", "refs/staged/t1", cwd=repo) == done.commit
    assert run("git", "rev-parse", "refs/staged/t1^{tree}", cwd=repo) == done.tree
    message = run("git", "log", "-1", "--format=%B", "refs/staged/t1", cwd=repo)
    assert f"{svn_url}/trunk@2" in message
    assert git_files(repo, "refs/staged/t1") == tree_files(site(settings))

    reports = Reports()
    await stage_ticket(request(svn_url, "branches/x", "t2"), stager, reports)
    assert reports.completed().source_revision == "4"
    assert tree_files(site(settings)) == {"index.php": b"r3\n", "lib/a.php": b"a\n"}


MARKER = "/tmp/ferry-pwned-{}"


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("{source}", "--upload-pack=touch {marker}"),
        ("{source}", "$(touch {marker})"),
        ("ext::sh -c touch% {marker}", "main"),
        ("ssh://-oProxyCommand=touch {marker}/x", "main"),
        ("-oProxyCommand=touch {marker}", "main"),
    ],
)
async def test_malicious_refs_and_urls_are_refused_and_run_nothing(
    source: Path, settings: Settings, url: str, ref: str
) -> None:
    marker = Path(MARKER.format(uuid.uuid4().hex))
    source_url = url.format(source=f"file://{source}", marker=marker)
    # The API refuses these; a forged command bypasses that, and the agent must refuse it again.
    cmd = StagingRequested.model_construct(
        ticket_id="t1",
        app="shop",
        source=Source(type="git", url=source_url),
        ref=ref.format(marker=marker),
        attempt=1,
    )
    reports = Reports()
    await stage_ticket(cmd, Stager(settings), reports)

    assert isinstance(reports[-1], StagingFailed)
    assert reports[-1].reason
    assert not marker.exists()
    assert not site(settings).exists()
    assert not release_repo(settings).exists()


async def test_a_forged_command_off_the_bus_is_reported_as_failed(
    source: Path, settings: Settings
) -> None:
    marker = Path(MARKER.format(uuid.uuid4().hex))
    data = request(source, "main").model_dump(mode="json") | {
        "ref": f"--upload-pack=touch {marker}"
    }
    stored = StoredEvent(
        position=1,
        stream="ticket-t1",
        version=2,
        event_id=uuid.uuid4(),
        type="ticket.staging_requested",
        schema_version=1,
        data=data,
        metadata={},
        recorded_at=datetime.now(UTC),
        hash="0" * 64,
    )
    bus = MemoryBus()
    received = await listen_to_reports(bus, "staging.#")
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(settings, stop, bus))
    try:
        # Signed: even behind a trusted key, the agent's own checks are a second line.
        forged = signed(Message.of_stored(stored, "ticket.staging_requested"))
        await publish_once_bound(bus, forged)
        # and anything else it would report comes meanwhile
        reports = [await asyncio.wait_for(received.get(), 30), *await drained(received)]
    finally:
        stop.set()
        await asyncio.wait_for(agent, 15)
    failed = [parse_event(r.type, 1, r.body["data"]) for r in reports]

    assert len(failed) == 1 and isinstance(failed[0], StagingFailed)
    assert "ref" in failed[0].reason
    assert not marker.exists()


@pytest.mark.rabbitmq
async def test_the_agent_process_stages_from_the_bus_and_stops_on_sigterm(
    amqp_url: str, source: Path, tmp_path: Path
) -> None:
    bus = await open_bus(amqp_url)
    received: asyncio.Queue[Message] = asyncio.Queue()
    await bus.declare_queue("test-reports", ["staging.#"], REPORTS)
    await bus.declare_queue("staging", ["ticket.staging_requested"], EVENTS)
    await bus.consume("test-reports", received.put)
    command = relayed(request(source, "main", "t-bus"), "corr-1")
    env = dict(
        os.environ,
        FERRY_BROKER_URL=amqp_url,
        FERRY_DATA_DIR=str(tmp_path / "agent"),
        FERRY_ALLOW_FILE_URLS="true",
        FERRY_TRUSTED_KEYS=str(trusted_key_file(tmp_path / "keys")),
    )
    agent = subprocess.Popen(
        [Path(sys.executable).parent / "ferry-staging-agent"], env=env, stderr=subprocess.PIPE
    )
    try:
        await bus.publish(EVENTS, [command, command])  # a duplicate has its effect once
        reports = [await asyncio.wait_for(received.get(), 60) for _ in range(2)]
        assert [r.type for r in reports] == ["staging.started", "staging.completed"]
        done = parse_event(reports[1].type, 1, reports[1].body["data"])
        assert isinstance(done, StagingCompleted)
        assert done.commit == run("git", "rev-parse", "main", cwd=source)
        assert reports[1].body["metadata"]["correlation_id"] == "corr-1"
        await asyncio.sleep(1)
        assert received.empty()
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
        await bus.close()
    assert agent.returncode == 0, stderr.decode()
    assert b'"event": "staging.completed"' in stderr


async def test_the_agent_counts_staged_commands_on_its_metrics_endpoint(
    source: Path, settings: Settings
) -> None:
    port = free_port()
    bus = MemoryBus()
    received: asyncio.Queue[Message] = asyncio.Queue()
    await bus.declare_queue("test-reports", ["staging.#"], REPORTS)
    await bus.consume("test-reports", received.put)
    stop = asyncio.Event()
    agent = asyncio.create_task(
        run_agent(settings.model_copy(update={"metrics_port": port}), stop, bus)
    )
    try:
        assert 'result="completed"' not in await scrape(port)
        await bus.publish(EVENTS, [relayed(request(source, "main", "t-metrics"), "corr-1")])
        while (await asyncio.wait_for(received.get(), 60)).type != "staging.completed":
            pass

        text = await scrape(port)
    finally:
        stop.set()
        await asyncio.wait_for(agent, 15)
    assert 'ferry_staging_commands_total{app="shop",result="completed"} 1.0' in text
    assert 'ferry_staging_command_seconds_count{app="shop"} 1.0' in text
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the endpoint stops with the agent
