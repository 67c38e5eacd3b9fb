"""The stack's child processes: each in its own session, writing to its own log file, which the
launcher follows onto the terminal; stopped with SIGTERM to its whole group, SIGKILL if late."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

FOLLOW_SECONDS = 0.2


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    home: Path  # working directory: no stray .env of the caller's is read
    log: Path
    process: asyncio.subprocess.Process | None = None
    _follower: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- stack: starting {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.home,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                # Ctrl-C reaches the launcher only, which stops each group (the publisher's
                # rsync daemon, an agent's rsync) itself.
                start_new_session=True,
            )

    def follow(self, width: int) -> None:
        """From now on, print each new line of the log with the process's name before it."""
        self._follower = asyncio.get_running_loop().create_task(self._follow(width))

    async def _follow(self, width: int) -> None:
        with self.log.open("rb") as log:
            log.seek(0, os.SEEK_END)
            pending = b""
            while True:
                pending += log.read()
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    print(f"{self.name:<{width}} | {line.decode(errors='replace')}", flush=True)
                await asyncio.sleep(FOLLOW_SECONDS)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(f"  {line}" for line in text[-lines:])

    async def stop(self, grace: float) -> int | None:
        """SIGTERM to the group, SIGKILL after `grace` seconds; the exit code."""
        if self.process is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            print(f"stack: {self.name} did not stop in {grace:.0f} s; killing it", flush=True)
        self._signal(signal.SIGKILL)  # the group's leftovers, if any
        code = await self.process.wait()
        await asyncio.sleep(FOLLOW_SECONDS * 2)  # the follower prints the last lines
        if self._follower is not None:
            self._follower.cancel()
        return code

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
