"""Stand-in agents for the ticket tests, beside the real API of the `api` fixture (Postgres,
RabbitMQ, its workers): they take the commands off real queues and publish whatever reports a
test tells them to, over the real bus; plus the users and the steps of a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from api_client import Api
from ferry_api.bootstrap import running
from ferry_api.http.asgi import asgi_app
from ferry_api.workers import reports
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS, Bus
from ferry_events.envelope import Message, Metadata
from ferry_events.registry import Event
from ferry_events.schemas import (
    HostSyncCompleted,
    HostSyncFailed,
    HostSyncRequested,
    ReleaseTagged,
    ReleaseTagRequested,
    Role,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
)

WAIT = 30.0  # seconds any one step of a flow may take before the test fails


class StandInAgent:
    """Consumes commands from its own queue and keeps them by ticket, in arrival order."""

    def __init__(self, bus: Bus, queue: str, name: str) -> None:
        self.bus, self.queue, self.name = bus, queue, name
        self._commands: dict[str, list[Event]] = defaultdict(list)
        self._arrived = asyncio.Condition()

    async def start(self, bindings: Sequence[str]) -> None:
        await self.bus.declare_queue(self.queue, bindings, exchange=EVENTS)
        await self.bus.consume(self.queue, self._take)

    async def _take(self, message: Message) -> None:
        payload = message.stored_event().payload()
        assert isinstance(payload, Event)
        async with self._arrived:
            self._commands[getattr(payload, "ticket_id", "")].append(payload)
            self._arrived.notify_all()

    def commands(self, ticket_id: str) -> list[Event]:
        return list(self._commands[ticket_id])

    async def command(self, ticket_id: str, count: int = 1) -> Event:
        """The `count`-th command for the ticket, once it has arrived."""
        async with asyncio.timeout(WAIT), self._arrived:
            await self._arrived.wait_for(lambda: len(self._commands[ticket_id]) >= count)
        return self._commands[ticket_id][count - 1]

    async def report(self, event: Event) -> Message:
        message = Message.report(event, Metadata(actor=self.name))
        await self.bus.publish(REPORTS, [message])
        return message


@contextlib.asynccontextmanager
async def stand_ins(api: Api) -> AsyncIterator[Ferry]:
    """The agents' side of the bus beside a running API, and its users logged in."""
    agents_bus = await open_bus(api.runtime.settings.broker_url)
    try:
        # The API declares its report queue when its consumer starts; declared here too so
        # that no report a test sends early is unroutable.
        await agents_bus.declare_queue(reports.QUEUE, reports.BINDINGS, exchange=REPORTS)
        ferry = Ferry(api, agents_bus)
        await ferry.start()
        yield ferry
    finally:
        await agents_bus.close()


class Ferry:
    """The API under test, its users, and the stand-in agents."""

    def __init__(self, api: Api, bus: Bus) -> None:
        self.api, self.runtime, self.http, self.bus = api, api.runtime, api.http, bus
        self.staging = StandInAgent(bus, "standin.staging", "staging-agent")
        self.publisher = StandInAgent(bus, "standin.publisher", "publisher")
        self.hosts: dict[str, StandInAgent] = {}
        self._started: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        await self.staging.start(["ticket.staging_requested"])
        await self.publisher.start(["release.tag_requested"])
        users: dict[str, Role] = {
            "dev": "developer",
            "dev2": "developer",
            "lead": "lead",
            "lead2": "lead",
            "admin": "admin",
        }
        await asyncio.gather(*(self.api.user(name, role) for name, role in users.items()))

    def auth(self, username: str) -> dict[str, str]:
        return self.api.sessions[username]

    async def add_app(self, name: str, hosts: Sequence[str] = ("web-1", "web-2")) -> None:
        for host in hosts:
            if host not in self.hosts:  # one agent per host, also when apps are added at once
                agent = StandInAgent(self.bus, f"standin.host.{host}", f"rsync-agent@{host}")
                self.hosts[host] = agent
                self._started[host] = asyncio.ensure_future(
                    agent.start([f"host.sync_requested.{host}"])
                )
            await self._started[host]
        config = {
            "name": name,
            "source": {"type": "git", "url": f"https://git.example.com/{name}.git"},
            "staging_url": f"https://staging.example.com/{name}/",
            "hosts": list(hosts),
            "target_path": f"/srv/{name}",
        }
        response = await self.post("admin", "/apps", config)
        assert response.status_code == 201, response.text

    # --- HTTP --------------------------------------------------------------------------------

    async def post(
        self,
        user: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        via: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        client = via or self.http
        return await client.post(f"/api/v1{path}", json=body, headers=self.auth(user))

    @contextlib.asynccontextmanager
    async def replica(self) -> AsyncIterator[httpx.AsyncClient]:
        """A second API process on the same database and broker (it runs only its read
        models: the first one does the background work)."""
        async with running(self.runtime.settings, start_workers=False) as runtime:
            views = asyncio.create_task(runtime.projector.run())
            try:
                transport = httpx.ASGITransport(app=asgi_app(runtime))
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                    yield http
            finally:
                # Cancelled until it ends: a cancellation can get lost in the store's subscribe
                # (asyncio.wait_for of Python 3.11 drops one that races with its timeout).
                while not views.done():
                    views.cancel()
                    await asyncio.wait({views}, timeout=1)

    async def get(self, user: str, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(f"/api/v1{path}", params=params, headers=self.auth(user))

    async def submit(self, user: str, app: str, ref: str = "main", **fields: Any) -> str:
        body = {"app": app, "kind": "deploy", "reason": f"ship {ref}", "ref": ref, **fields}
        response = await self.post(user, "/tickets", body)
        assert response.status_code == 201, response.text
        ticket_id: str = response.json()["id"]
        return ticket_id

    async def act(self, user: str, ticket_id: str, action: str, **body: Any) -> dict[str, Any]:
        response = await self.post(user, f"/tickets/{ticket_id}/{action}", body or None)
        assert response.status_code == 200, f"{action} by {user}: {response.text}"
        result: dict[str, Any] = response.json()
        return result

    async def ticket(self, ticket_id: str, user: str = "admin") -> dict[str, Any]:
        response = await self.get(user, f"/tickets/{ticket_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_state(self, ticket_id: str, state: str) -> dict[str, Any]:
        """The ticket once it reaches `state` (the workers get there asynchronously)."""
        ticket = await self.ticket(ticket_id)
        try:
            async with asyncio.timeout(WAIT):
                while ticket["state"] != state:
                    await asyncio.sleep(0.05)
                    ticket = await self.ticket(ticket_id)
        except TimeoutError:
            raise AssertionError(
                f"ticket {ticket_id} stuck in {ticket['state']}, not {state}"
            ) from None
        return ticket

    async def stream(self, name: str) -> list[str]:
        return [event.type for event in await self.runtime.store.read_stream(name)]

    # --- the agents' side of a flow ----------------------------------------------------------

    async def stage(self, ticket_id: str, attempt: int = 1, *, fail: bool = False) -> str:
        """Answer the ticket's `attempt`-th StagingRequested; returns the staged tree."""
        command = await self.staging.command(ticket_id, attempt)
        assert isinstance(command, StagingRequested) and command.attempt == attempt
        tree = f"tree-{ticket_id[:8]}-{attempt}"
        if fail:
            await self.staging.report(
                StagingFailed(
                    ticket_id=ticket_id, app=command.app, reason="no such ref", attempt=attempt
                )
            )
            await self.wait_state(ticket_id, "staging_failed")
        else:
            await self.staging.report(
                StagingCompleted(
                    ticket_id=ticket_id,
                    app=command.app,
                    commit=f"commit-{ticket_id[:8]}-{attempt}",
                    tree=tree,
                    source_revision=f"rev-{attempt}",
                    files=3,
                    attempt=attempt,
                )
            )
            await self.wait_state(ticket_id, "testing")
        return tree

    async def tag(self, ticket_id: str, count: int = 1) -> ReleaseTagged:
        """Answer the ticket's `count`-th ReleaseTagRequested with a tagged release."""
        command = await self.publisher.command(ticket_id, count)
        assert isinstance(command, ReleaseTagRequested)
        tagged = ReleaseTagged(
            ticket_id=ticket_id,
            app=command.app,
            version=command.version,
            commit=command.commit,
            tree=command.tree,
            digest=f"sha256:{command.app}-{command.version}",
            files=3,
            bytes=99,
        )
        await self.publisher.report(tagged)
        return tagged

    async def sync(self, ticket_id: str, host: str, *, count: int = 1, ok: bool = True) -> None:
        """Answer the host's `count`-th HostSyncRequested of the ticket."""
        command = await self.hosts[host].command(ticket_id, count)
        assert isinstance(command, HostSyncRequested) and command.host == host
        common = {
            "ticket_id": ticket_id,
            "app": command.app,
            "host": host,
            "version": command.version,
            "attempt": command.attempt,
        }
        if ok:
            await self.hosts[host].report(
                HostSyncCompleted(
                    **common, digest=command.digest, files=3, bytes_transferred=99, seconds=0.5
                )
            )
        else:
            await self.hosts[host].report(HostSyncFailed(**common, reason="disk full"))

    async def to_state(self, state: str, app: str, author: str = "dev") -> str:
        """A new ticket of `author` on `app`, driven through the real flow to `state`."""
        ticket_id = await self.submit(author, app)
        if state == "staging_pending":
            return ticket_id
        if state == "staging_failed":
            await self.stage(ticket_id, fail=True)
            return ticket_id
        await self.stage(ticket_id)
        if state in ("testing", "returned"):
            if state == "returned":
                await self.act(author, ticket_id, "return", comment="not yet")
            return ticket_id
        await self.act(author, ticket_id, "pass-tests")
        if state == "awaiting_approval":
            return ticket_id
        await self.act("lead2" if author == "lead" else "lead", ticket_id, "approve")
        if state == "approved":
            return ticket_id
        await self.act(author, ticket_id, "publish")
        if state == "publishing":
            return ticket_id
        await self.tag(ticket_id)
        hosts = (await self.runtime.store.get("apps", app) or {})["hosts"]
        for index, host in enumerate(hosts):
            await self.sync(ticket_id, host, ok=state == "published" or index > 0)
        await self.wait_state(ticket_id, state)
        return ticket_id
