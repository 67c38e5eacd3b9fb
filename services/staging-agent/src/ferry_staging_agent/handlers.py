"""The staging agent's command handler: load, decide, act, report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from ferry_events.envelope import Message
from ferry_events.registry import Event
from ferry_events.schemas import StagingCompleted, StagingFailed, StagingRequested, StagingStarted
from pydantic import ValidationError

from ferry_staging_agent.stager import Stager
from ferry_staging_agent.vcs import VcsError, redact
from ferry_staging_agent.workspace import StagedTree

Report = Callable[[Event], Awaitable[None]]


async def stage_ticket(cmd: StagingRequested, stager: Stager, report: Report) -> None:
    """Check the ticket's source out into the app's staging workspace and report the tree."""
    # Bound for the whole command, so the stager's and the workspace's log lines carry them too.
    with structlog.contextvars.bound_contextvars(
        ticket_id=cmd.ticket_id, app=cmd.app, attempt=cmd.attempt
    ):
        await _stage(cmd, stager, report)


async def _stage(cmd: StagingRequested, stager: Stager, report: Report) -> None:
    log = structlog.get_logger()
    async with stager.lock(cmd.app):
        staged = stager.workspace(cmd.app).holds(cmd.ticket_id, cmd.attempt)
        if staged:  # redelivered: the workspace holds it already; the report may have been lost
            log.info("staging.redelivered", commit=staged.commit)
            await report(_completed(cmd, staged))
            return
        await report(StagingStarted(ticket_id=cmd.ticket_id, app=cmd.app))
        try:
            staged = await asyncio.to_thread(stager.stage, cmd)
        except (VcsError, ValueError) as e:
            reason = redact(f"refused: {e}" if isinstance(e, ValueError) else str(e))
            log.warning("staging.failed", reason=reason)
            await report(
                StagingFailed(
                    ticket_id=cmd.ticket_id, app=cmd.app, reason=reason, attempt=cmd.attempt
                )
            )
            return
    log.info("staging.completed", commit=staged.commit, tree=staged.tree, files=staged.files)
    await report(_completed(cmd, staged))


def _completed(cmd: StagingRequested, staged: StagedTree) -> StagingCompleted:
    return StagingCompleted(
        ticket_id=cmd.ticket_id,
        app=cmd.app,
        commit=staged.commit,
        tree=staged.tree,
        source_revision=staged.source_revision,
        files=staged.files,
        diff_summary=staged.diff_summary,
        attempt=cmd.attempt,
    )


async def stage_message(message: Message, stager: Stager, report: Report) -> None:
    """The bus's view: a relayed StoredEvent whose payload is StagingRequested."""
    stored = message.stored_event()
    try:
        cmd = stored.payload()
    except ValidationError as e:
        await refuse_invalid(stored.data, e, report)
        return
    if isinstance(cmd, StagingRequested):
        await stage_ticket(cmd, stager, report)
    else:
        structlog.get_logger().warning("command.unexpected", type=message.type)


async def refuse_invalid(data: dict[str, Any], error: ValidationError, report: Report) -> None:
    """A command the wire contract refuses (a forged ref, say): report it, run nothing."""
    reason = "refused an invalid command: " + "; ".join(
        f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in error.errors()
    )
    log = structlog.get_logger().bind(ticket_id=data.get("ticket_id"), app=data.get("app"))
    log.error("staging.refused", reason=reason)
    try:
        failed = StagingFailed(
            ticket_id=data["ticket_id"],
            app=data["app"],
            reason=reason,
            attempt=data.get("attempt", 1),
        )
    except (KeyError, ValidationError):
        return  # nothing names a ticket to report to; the log line is all there is
    await report(failed)
