"""What the agent does once it is idle: prune old releases and prepare each app's spare (the
hard-linked copy of the live release that the next sync starts from).

Both are thousands of link() or unlink() calls. Done while a release is in flight they would
compete with it for the disk (and, on a host that serves several apps, with another app's
release), so they wait until no command has come for a while, and a command that comes
meanwhile first lets a running round finish: two hands never touch the spare at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.releases import Layout, make_spare, prune


def tidy(config: AgentConfig) -> None:
    """Every app: prune beyond `keep` (never current or previous), make the spare. A failure
    is logged; the next round tries again."""
    for name, app in config.apps.items():
        layout = Layout(app.target)
        live = layout.current_version()
        if live is None or not layout.target.is_dir():
            continue
        log = structlog.get_logger().bind(app=name, version=live)
        try:
            removed = prune(layout, app.keep)
            if removed:
                log.info("releases.pruned", versions=removed)
            if make_spare(layout, live) is None:
                log.warning("spare.skipped", reason=f"release {live} differs from its manifest")
        except OSError as e:
            log.warning("housekeeping.failed", error=str(e))


class Housekeeping:
    """Runs `tidy` in a thread once the agent has been idle for the configured time."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._waiting: asyncio.Task[None] | None = None
        self._running: asyncio.Future[None] | None = None

    def when_idle(self, after: float | None = None) -> None:
        """(Re)start the idle countdown."""
        if self._waiting is not None:
            self._waiting.cancel()
        delay = self.config.housekeeping_idle_seconds if after is None else after
        self._waiting = asyncio.create_task(self._after(delay))

    async def hold(self) -> None:
        """Before a command (or stopping): stop the countdown, and let a round that already
        runs finish (a thread cannot be cancelled half-way through a copy)."""
        running, waiting = self._running, self._waiting
        self._running = self._waiting = None
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        if running is not None:
            try:
                await asyncio.shield(running)
            except Exception as e:  # tidy logs what it expects; never fail a command for it
                structlog.get_logger().warning("housekeeping.failed", error=repr(e))

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Around a command: no round runs meanwhile; the idle countdown restarts after it."""
        await self.hold()
        try:
            yield
        finally:
            self.when_idle()

    async def keep(self) -> None:
        """The agent's background task: a first round at once (spares for the next syncs),
        then one after each idle spell; when cancelled, a running round finishes first."""
        self.when_idle(after=0)
        try:
            await asyncio.Event().wait()
        finally:
            await self.hold()

    async def _after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._running = asyncio.ensure_future(asyncio.to_thread(tidy, self.config))
        await asyncio.shield(self._running)
