"""The staging agent's command handler: load, decide, act, report."""

from __future__ import annotations

import asyncio

import structlog
from ferry_events.agent_reports import Report, answer
from ferry_events.schemas import StagingCompleted, StagingFailed, StagingRequested, StagingStarted

from ferry_staging_agent.stager import Stager
from ferry_staging_agent.vcs import VcsError, redact
from ferry_staging_agent.workspace import StagedTree


async def stage_ticket(cmd: StagingRequested, stager: Stager, report: Report) -> None:
    """Check the ticket's source out into the app's staging workspace and report the tree."""
    log = structlog.get_logger()
    async with stager.lock(cmd.app):
        staged = stager.workspace(cmd.app).holds(cmd.ticket_id, cmd.attempt)
        if staged:  # redelivered: the workspace holds it already; the report may have been lost
            log.info("staging.redelivered", commit=staged.commit)
            await report(_completed(cmd, staged))
            return
        await report(answer(cmd, StagingStarted))
        try:
            staged = await asyncio.to_thread(stager.stage, cmd)
        except (VcsError, ValueError) as e:
            reason = redact(f"refused: {e}" if isinstance(e, ValueError) else str(e))
            log.warning("staging.failed", reason=reason)
            await report(answer(cmd, StagingFailed, reason=reason))
            return
    log.info("staging.completed", commit=staged.commit, tree=staged.tree, files=staged.files)
    await report(_completed(cmd, staged))


def _completed(cmd: StagingRequested, staged: StagedTree) -> StagingCompleted:
    return answer(cmd, StagingCompleted, **staged.model_dump())
