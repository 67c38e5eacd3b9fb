"""Processes for the e2e tests: start, stop (SIGTERM, then SIGKILL) or kill (SIGKILL) a service
with its own environment, working directory and log file; wait for it to be ready by polling.

A process runs in its own session, so stop() and kill() reach its children too (the publisher's
rsync daemon, an agent's rsync), as systemd does with a unit's control group.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

BIN = Path(sys.executable).parent  # the console scripts of the venv running the tests
T = TypeVar("T")
LOG_TAIL = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any FERRY_* setting of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def answers_ready(base_url: str) -> Callable[[], Awaitable[bool]]:
    """Ready once the API answers /readyz with 200 (its store and bus answer)."""

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"{base_url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    return ready


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    home: Path  # working and data directory
    log: Path
    ready: Callable[[], Awaitable[bool]] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert not self.running, f"{self.name} is running already"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- e2e: starting {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.home,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `grace` seconds."""
        self.terminate()
        self.wait_stopped(grace)

    def terminate(self) -> None:
        if self.running:
            self._signal(signal.SIGTERM)

    def wait_stopped(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self._note(f"did not stop in {grace:.0f} s; SIGKILL")
        self._signal(signal.SIGKILL)  # leftovers of the group, if any
        self.process.wait()
        self._note(f"stopped, exit code {self.process.returncode}")

    def kill(self) -> None:
        """SIGKILL the whole group at once: the host or the agent crashing mid-work."""
        assert self.process is not None and self.running, f"{self.name} is not running"
        self._signal(signal.SIGKILL)
        self.process.wait()
        self._note("killed with SIGKILL")

    def _signal(self, signum: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def _note(self, text: str) -> None:
        with self.log.open("a") as out:
            out.write(f"--- e2e: {self.name} {text}\n")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async def ready() -> bool:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise AssertionError(f"{self.name} exited ({code}) before it was ready")
            return self.ready is None or await self.ready()

        await wait_until(ready, timeout, f"{self.name} to be ready")

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        if not self.log.exists():
            return "(no log)"
        text = self.log.read_text(errors="replace").splitlines()
        cut = (
            f"... ({len(text) - lines} earlier lines in {self.log})\n" if len(text) > lines else ""
        )
        return cut + "\n".join(text[-lines:])
