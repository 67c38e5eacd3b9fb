"""Crashes and redeliveries: leftovers of an interrupted attempt, a command delivered again,
housekeeping against a command, an agent killed mid-rsync."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ferry_events.registry import Event
from ferry_events.schemas import HostSyncCompleted, HostSyncRequested
from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.handlers import sync_release
from ferry_rsync_agent.housekeeping import Housekeeping

from .publishing import (
    FIRST,
    HOST,
    Publisher,
    agent_config,
    random_files,
    shop,
    sync,
    tree_of,
)


async def test_leftovers_of_an_interrupted_attempt_are_cleaned_and_the_sync_converges(
    config: AgentConfig, publisher: Publisher
) -> None:
    await sync(config, 1, publisher.export("shop", 1, FIRST))
    digest = publisher.export_changed("shop", 2, {"index.html": b"<h1>2"})
    layout = shop(config)
    (layout.incoming(2) / "dir1").mkdir(parents=True)
    (layout.incoming(2) / "dir1/file1.dat").write_bytes(b"half written")
    os.symlink("releases/2.tmp", layout.target / ".current.tmp")
    (layout.incoming(3) / "sub").mkdir(parents=True)  # an abandoned attempt at another version

    report = await sync(config, 2, digest)

    assert isinstance(report, HostSyncCompleted)
    assert os.readlink(layout.current) == "releases/2"
    assert tree_of(layout.current) == tree_of(publisher.exports / "shop/2")
    assert sorted(os.listdir(layout.releases)) == ["1", "2"]
    assert not os.path.lexists(layout.target / ".current.tmp")


async def test_a_redelivered_command_reports_completion_again(
    config: AgentConfig, publisher: Publisher
) -> None:
    digest = publisher.export("shop", 1, FIRST)
    first = await sync(config, 1, digest)

    again = await sync(config, 1, digest)

    assert isinstance(first, HostSyncCompleted) and isinstance(again, HostSyncCompleted)
    assert (again.files, again.bytes_transferred) == (first.files, 0)
    assert os.readlink(shop(config).current) == "releases/1"


async def test_housekeeping_waits_for_idle_and_a_command_waits_for_a_running_round(
    tmp_path: Path, publisher: Publisher
) -> None:
    config = agent_config(tmp_path, publisher, keep=1)
    config = config.model_copy(update={"housekeeping_idle_seconds": 0.3})
    layout = shop(config)
    digest = publisher.export("shop", 1, FIRST)
    reports: list[Event] = []

    async def report(event: Event) -> None:
        reports.append(event)

    command = HostSyncRequested(ticket_id="t-1", app="shop", host=HOST, version=1, digest=digest)
    await sync_release(command, config, report)
    assert isinstance(reports[0], HostSyncCompleted) and not layout.spare.exists()
    housekeeping = Housekeeping(config)

    housekeeping.when_idle()
    await housekeeping.hold()  # a command came before the agent was idle for long
    await asyncio.sleep(0.5)
    assert not layout.spare.exists()

    housekeeping.when_idle()
    while housekeeping._running is None:  # the round has started: copying 200 links
        await asyncio.sleep(0.01)
    await housekeeping.hold()  # waits for it instead of racing it for the spare
    assert tree_of(layout.spare) == tree_of(layout.release(1))


AGENT_SCRIPT = """
import asyncio, sys
from ferry_events.schemas import HostSyncRequested
from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.handlers import sync_release
from ferry_rsync_agent.housekeeping import Housekeeping, tidy
from ferry_rsync_agent.main import run

async def report(event):
    print(event.type_name, flush=True)

config = AgentConfig.model_validate_json(sys.argv[1])
asyncio.run(sync_release(HostSyncRequested.model_validate_json(sys.argv[2]), config, report))
"""


async def test_agent_killed_mid_rsync_leaves_current_whole_and_the_retry_converges(
    tmp_path: Path, publisher: Publisher
) -> None:
    fast = agent_config(tmp_path, publisher)
    await sync(fast, 1, publisher.export("shop", 1, FIRST))
    digest = publisher.export_changed("shop", 2, random_files(40, 64 * 1024, seed=2))
    slow = fast.model_copy(update={"bwlimit_kib": 256})  # 2.5 MiB at 256 KiB/s: ~10 s
    command = HostSyncRequested(ticket_id="t-2", app="shop", host=HOST, version=2, digest=digest)
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_SCRIPT, slow.model_dump_json(), command.model_dump_json()],
        start_new_session=True,  # killed as a group, as systemd kills the unit's cgroup
    )
    layout = shop(fast)
    deadline = time.monotonic() + 30
    while not list((layout.incoming(2)).rglob("file*.dat")):
        assert time.monotonic() < deadline and agent.poll() is None, "rsync never started"
        await asyncio.sleep(0.05)
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait()

    assert os.readlink(layout.current) == "releases/1"
    assert tree_of(layout.current) == tree_of(publisher.exports / "shop/1")
    assert layout.versions() == [1] and layout.incoming(2).exists()

    report = await sync(fast, 2, digest)  # the redelivered command

    assert isinstance(report, HostSyncCompleted)
    assert tree_of(layout.current) == tree_of(publisher.exports / "shop/2")
    assert sorted(os.listdir(layout.releases)) == ["1", "2"]
