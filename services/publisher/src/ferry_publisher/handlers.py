"""The publisher's command handler: load, decide, act, report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from ferry_events.envelope import Message
from ferry_events.git_blobs import TreeError
from ferry_events.registry import Event
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagged, ReleaseTagRequested
from pydantic import ValidationError

from ferry_publisher.gitrepo import GitError
from ferry_publisher.releases import Publisher, ReleaseRefused

Report = Callable[[Event], Awaitable[None]]


async def tag_release(cmd: ReleaseTagRequested, publisher: Publisher, report: Report) -> None:
    """Tag the staged commit as release N, export it, and report its manifest digest.

    Idempotent: the same N on the same commit re-reports (the export is reused); N on another
    commit is refused and changes nothing."""
    # Bound for the whole command, so the export's log lines (in a worker thread) carry them too.
    with structlog.contextvars.bound_contextvars(
        ticket_id=cmd.ticket_id, app=cmd.app, version=cmd.version
    ):
        await _tag(cmd, publisher, report)


async def _tag(cmd: ReleaseTagRequested, publisher: Publisher, report: Report) -> None:
    log = structlog.get_logger()
    async with publisher.lock(cmd.app):
        try:
            release = await asyncio.to_thread(publisher.publish, cmd)
        except (ReleaseRefused, GitError, TreeError) as e:
            log.error("release.refused", reason=str(e), commit=cmd.commit)
            await report(
                ReleaseTagFailed(
                    ticket_id=cmd.ticket_id, app=cmd.app, version=cmd.version, reason=str(e)
                )
            )
            return
    log.info("release.tagged", commit=release.commit, digest=release.digest, files=release.files)
    await report(
        ReleaseTagged(
            ticket_id=cmd.ticket_id,
            app=cmd.app,
            version=release.version,
            commit=release.commit,
            tree=release.tree,
            digest=release.digest,
            files=release.files,
            bytes=release.bytes,
        )
    )
    publisher.tidy_later(cmd.app, release.version)  # while the hosts pull


async def tag_message(message: Message, publisher: Publisher, report: Report) -> None:
    """The bus's view: a relayed StoredEvent whose payload is ReleaseTagRequested."""
    stored = message.stored_event()
    try:
        cmd = stored.payload()
    except ValidationError as e:
        await refuse_invalid(stored.data, e, report)
        return
    if isinstance(cmd, ReleaseTagRequested):
        await tag_release(cmd, publisher, report)
    else:
        structlog.get_logger().warning("command.unexpected", type=message.type)


async def refuse_invalid(data: dict[str, Any], error: ValidationError, report: Report) -> None:
    """A command the wire contract refuses: report it when it names a ticket, tag nothing."""
    reason = "refused an invalid command: " + "; ".join(
        f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in error.errors()
    )
    structlog.get_logger().error("release.refused", reason=reason, ticket_id=data.get("ticket_id"))
    try:
        failed = ReleaseTagFailed(
            ticket_id=data["ticket_id"], app=data["app"], version=data["version"], reason=reason
        )
    except (KeyError, ValidationError):
        return  # nothing names a release to report on; the log line is all there is
    await report(failed)
