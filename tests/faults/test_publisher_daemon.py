"""The publisher without its rsync daemon: when the port is already taken it refuses to start
(a clear message, a non-zero exit, no command taken); when the daemon dies while it serves it
stops (non-zero) instead of tagging releases that no host could pull.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ferry_events.signing import generate_key
from private_rabbitmq import free_port

pytestmark = [pytest.mark.rabbitmq]

PUBLISHER = Path(sys.executable).parent / "ferry-publisher"


def publisher_env(amqp_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    generate_key(tmp_path / "api.key")
    return {
        **os.environ,
        "FERRY_BROKER_URL": amqp_url,
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_RSYNC_PORT": str(port),
        "FERRY_RSYNC_PASSWORD": "pw-of-test",
        "FERRY_TRUSTED_KEYS": str(tmp_path / "api.key.pub"),
    }


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_publisher_whose_port_is_taken_refuses_to_start(amqp_url: str, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [PUBLISHER],
            env=publisher_env(amqp_url, tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert time.monotonic() - started < 30
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ferry-publisher: the rsync daemon cannot listen on 127.0.0.1:{port}")
    assert "Address already in use" in last
    assert "Traceback" not in done.stderr
    assert "agent.started" not in [e["event"] for e in events(done.stderr)]  # took no command


def test_a_publisher_whose_daemon_dies_stops_with_an_error(amqp_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "publisher.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [PUBLISHER], env=publisher_env(amqp_url, tmp_path, port), stderr=stderr, text=True
        )
    try:
        daemon = wait_for_event(log, "rsyncd.started")
        wait_for_event(log, "agent.started")
        os.kill(daemon["pid"], signal.SIGKILL)  # the publisher's own child, by its id
        assert process.wait(timeout=30) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = log.read_text().strip().splitlines()
    assert said[-1].startswith("ferry-publisher: the rsync daemon stopped serving (exit -9)")
    assert "agent.stopped" in [e["event"] for e in events(log.read_text())]  # stopped in order
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def wait_for_event(log: Path, event: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (found := [e for e in events(log.read_text()) if e["event"] == event]):
        assert time.monotonic() < deadline, f"no {event!r} in:\n{log.read_text()}"
        time.sleep(0.1)
    return found[0]
