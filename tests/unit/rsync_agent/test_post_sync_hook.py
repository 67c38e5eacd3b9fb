"""The app's local post-sync hook: where it runs, how its failure and its timeout are reported."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed

from .publishing import (
    FIRST,
    Publisher,
    agent_config,
    shop,
    sync,
)


async def test_post_sync_hook_runs_in_the_new_release_after_the_switch(
    tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_BROKER_URL", "amqp://agent:secret@broker/")
    seen = tmp_path / "hook.out"
    script = (
        'pwd -P; readlink ../../current; echo "$FERRY_APP $FERRY_VERSION ${FERRY_BROKER_URL:-}"'
    )
    hook = {"argv": ["sh", "-c", f'({script}) > "$0"', str(seen)]}
    config = agent_config(tmp_path, publisher, post_sync=hook)

    report = await sync(config, 1, publisher.export("shop", 1, FIRST))

    assert isinstance(report, HostSyncCompleted)
    release = str(shop(config).release(1).resolve())
    assert seen.read_text().splitlines() == [release, "releases/1", "shop 1 "]


async def test_failing_hook_is_reported_and_the_release_stays_live(
    tmp_path: Path, publisher: Publisher
) -> None:
    config = agent_config(tmp_path, publisher, post_sync={"argv": ["sh", "-c", "echo no; exit 3"]})

    report = await sync(config, 1, publisher.export("shop", 1, FIRST))

    assert isinstance(report, HostSyncFailed)
    assert report.reason == "release 1 is live, but post-sync hook exited 3: no"
    assert os.readlink(shop(config).current) == "releases/1"


async def test_hook_past_its_timeout_is_killed_with_its_children_and_reported(
    tmp_path: Path, publisher: Publisher
) -> None:
    child = tmp_path / "child.pid"
    hook = {
        "argv": ["sh", "-c", 'sleep 60 & echo $! > "$0"; wait', str(child)],
        "timeout_seconds": 0.5,
    }
    config = agent_config(tmp_path, publisher, post_sync=hook)
    started = time.monotonic()

    report = await sync(config, 1, publisher.export("shop", 1, FIRST))

    assert time.monotonic() - started < 10
    assert isinstance(report, HostSyncFailed) and "ran past 0.5s" in report.reason
    assert not _alive(int(child.read_text()))
    assert os.readlink(shop(config).current) == "releases/1"


async def test_hook_whose_child_escapes_its_group_does_not_hold_the_agent(
    tmp_path: Path, publisher: Publisher
) -> None:
    child = tmp_path / "child.pid"
    escape = 'setsid sleep 60 & echo $! > "$0"; echo started'  # keeps the hook's stdout open
    config = agent_config(tmp_path, publisher, post_sync={"argv": ["sh", "-c", escape, str(child)]})
    started = time.monotonic()

    report = await sync(config, 1, publisher.export("shop", 1, FIRST))

    os.kill(int(child.read_text()), signal.SIGKILL)
    assert isinstance(report, HostSyncCompleted)
    assert time.monotonic() - started < 10


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.02)
    return True
