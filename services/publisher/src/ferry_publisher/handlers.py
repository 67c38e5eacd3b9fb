"""The publisher's command handler: load, decide, act, report."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import structlog
from ferry_events.agent_reports import Report, answer
from ferry_events.git_blobs import TreeError
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagged, ReleaseTagRequested

from ferry_publisher.gitrepo import GitError
from ferry_publisher.releases import Publisher, ReleaseRefused


async def tag_release(cmd: ReleaseTagRequested, publisher: Publisher, report: Report) -> None:
    """Tag the staged commit as release N, export it, and report its manifest digest.

    Idempotent: the same N on the same commit re-reports (the export is reused); N on another
    commit is refused and changes nothing."""
    log = structlog.get_logger()
    async with publisher.lock(cmd.app):
        try:
            release = await asyncio.to_thread(publisher.publish, cmd)
        except (ReleaseRefused, GitError, TreeError) as e:
            log.error("release.refused", reason=str(e), commit=cmd.commit)
            await report(answer(cmd, ReleaseTagFailed, reason=str(e)))
            return
    log.info("release.tagged", commit=release.commit, digest=release.digest, files=release.files)
    await report(answer(cmd, ReleaseTagged, **asdict(release)))
    publisher.tidy_later(cmd.app, release.version)  # while the hosts pull
