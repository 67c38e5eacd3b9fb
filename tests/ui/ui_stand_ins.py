"""Stand-in agents for the UI tests while the embedded demo does not run the real ones: they
take the API's commands off real RabbitMQ queues and answer each with the report a healthy agent
would send (staged, tagged, synced after a short, visible delay), and send heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS, Bus
from ferry_events.envelope import Message, Metadata
from ferry_events.registry import Event
from ferry_events.schemas import (
    AgentHeartbeat,
    HostSyncCompleted,
    HostSyncRequested,
    ReleaseTagged,
    ReleaseTagRequested,
    StagingCompleted,
    StagingRequested,
    StagingStarted,
)

HEARTBEAT_SECONDS = 2.0


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


class StandIns:
    """A staging agent, a publisher and one rsync agent per host, all answering at once."""

    def __init__(self, bus: Bus, hosts: Sequence[str], sync_seconds: Sequence[float]) -> None:
        self.bus = bus
        self.delays = dict(zip(hosts, sync_seconds, strict=True))
        self.live: dict[str, dict[str, int | None]] = {host: {} for host in hosts}
        self._beats: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.declare_queue("standin.staging", [StagingRequested.type_name], EVENTS)
        await self.bus.consume("standin.staging", self._stage)
        await self.bus.declare_queue("standin.publisher", [ReleaseTagRequested.type_name], EVENTS)
        await self.bus.consume("standin.publisher", self._tag)
        for host in self.delays:
            queue = f"standin.host.{host}"
            await self.bus.declare_queue(queue, [f"{HostSyncRequested.type_name}.{host}"], EVENTS)
            await self.bus.consume(queue, self._sync, prefetch=1)
        self._beats = asyncio.create_task(self._heartbeats())

    async def stop(self) -> None:
        if self._beats:
            self._beats.cancel()
            await asyncio.gather(self._beats, return_exceptions=True)

    async def _report(self, event: Event, actor: str) -> None:
        await self.bus.publish(REPORTS, [Message.report(event, Metadata(actor=actor))])

    async def _stage(self, message: Message) -> None:
        cmd = message.stored_event().payload()
        assert isinstance(cmd, StagingRequested)
        await self._report(StagingStarted(ticket_id=cmd.ticket_id, app=cmd.app), "staging-agent")
        await asyncio.sleep(0.5)
        commit = _digest("commit", cmd.ticket_id, cmd.ref, cmd.attempt)[:40]
        await self._report(
            StagingCompleted(
                ticket_id=cmd.ticket_id,
                app=cmd.app,
                commit=commit,
                tree=_digest("tree", commit)[:40],
                source_revision=commit,
                files=3,
                attempt=cmd.attempt,
            ),
            "staging-agent",
        )

    async def _tag(self, message: Message) -> None:
        cmd = message.stored_event().payload()
        assert isinstance(cmd, ReleaseTagRequested)
        await self._report(
            ReleaseTagged(
                ticket_id=cmd.ticket_id,
                app=cmd.app,
                version=cmd.version,
                commit=cmd.commit,
                tree=cmd.tree,
                digest="sha256:" + _digest(cmd.app, cmd.version, cmd.tree),
                files=3,
                bytes=2048,
            ),
            "publisher",
        )

    async def _sync(self, message: Message) -> None:
        cmd = message.stored_event().payload()
        assert isinstance(cmd, HostSyncRequested)
        await asyncio.sleep(self.delays[cmd.host])  # long enough to see the row syncing
        self.live[cmd.host][cmd.app] = cmd.version
        await self._report(
            HostSyncCompleted(
                ticket_id=cmd.ticket_id,
                app=cmd.app,
                host=cmd.host,
                version=cmd.version,
                digest=cmd.digest,
                files=3,
                bytes_transferred=2048,
                seconds=self.delays[cmd.host],
                attempt=cmd.attempt,
            ),
            f"rsync-agent@{cmd.host}",
        )

    async def _heartbeats(self) -> None:
        while True:
            for host, apps in self.live.items():
                beat = AgentHeartbeat(
                    host=host,
                    agent="stand-in",
                    agent_version="0",
                    apps=dict(apps),
                    sent_at=datetime.now(UTC).isoformat(),
                )
                message = Message.report(beat, Metadata(actor=host))
                await self.bus.publish(REPORTS, [message], mandatory=False)
            await asyncio.sleep(HEARTBEAT_SECONDS)


@asynccontextmanager
async def stand_in_agents(
    broker_url: str, hosts: Sequence[str], sync_seconds: Sequence[float]
) -> AsyncIterator[StandIns]:
    bus = await open_bus(broker_url)
    agents = StandIns(bus, hosts, sync_seconds)
    try:
        await agents.start()
        yield agents
    finally:
        await agents.stop()
        await bus.close()
