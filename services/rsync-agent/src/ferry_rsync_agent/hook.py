"""The app's post-sync hook: an argv from the agent's own config (never from the bus), run in
the new release's directory with a deadline; on timeout its whole process group is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import IO

import structlog

from ferry_rsync_agent.config import PostSyncHook

SECRETS = frozenset({"FERRY_BROKER_URL", "RSYNC_PASSWORD"})  # the agent's, not the hook's


class HookFailed(Exception):
    """The hook could not start, exited non-zero, or ran past its timeout."""


async def run_hook(hook: PostSyncHook, release_dir: Path, app: str, version: int) -> None:
    env = {
        **{name: value for name, value in os.environ.items() if name not in SECRETS},
        "FERRY_APP": app,
        "FERRY_VERSION": str(version),
        "FERRY_RELEASE_DIR": str(release_dir),
    }
    # Output goes to a file, not a pipe: asyncio waits for a pipe to close as well as for the
    # exit, and a hook's daemonized child could hold one open for ever.
    with tempfile.TemporaryFile() as output:
        returncode = await _run(hook, release_dir, env, output)
        tail = _last_line(output)
    structlog.get_logger().info("hook.ran", returncode=returncode, tail=tail)
    if returncode != 0:
        raise HookFailed(f"post-sync hook exited {returncode}: {tail[:200]}")


async def _run(hook: PostSyncHook, cwd: Path, env: dict[str, str], output: IO[bytes]) -> int:
    try:
        process = await asyncio.create_subprocess_exec(
            *hook.argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own group, so a timeout kills its children too
        )
    except OSError as e:
        raise HookFailed(f"post-sync hook could not start: {e.strerror}") from e
    try:
        return await asyncio.wait_for(process.wait(), hook.timeout_seconds)
    except BaseException as e:  # timeout or cancellation: no hook process may outlive it
        _kill_group(process.pid)
        await process.wait()
        if isinstance(e, TimeoutError):
            raise HookFailed(f"post-sync hook ran past {hook.timeout_seconds:g}s; killed") from None
        raise


def _last_line(output: IO[bytes]) -> str:
    output.seek(max(output.seek(0, os.SEEK_END) - 4096, 0))
    lines = output.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def _kill_group(leader: int) -> None:
    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:
        pass
