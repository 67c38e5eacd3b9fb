"""A strict Ferry for the trust-boundary tests: deploy/broker/setup.py's users in a fresh vhost;
the API (the real runtime and workers, in-process) logged in as its own broker user and signing
its commands with a key of its own; the real staging agent, publisher and rsync agents web-1 and
web-2 (in-process, real directories), each logged in as itself and trusting only the API's
public key; a git source; users admin, lead and dev. What ops would check is read over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_client import Api, make_api_settings, serving_api
from broker_provisioning import Provisioned, rabbitmqctl
from ferry_events.envelope import Message, StoredEvent
from ferry_events.schemas import Role
from ferry_events.signing import CommandSigner, generate_key, load_private_key
from ferry_publisher.main import run as run_publisher
from ferry_publisher.settings import Settings as PublisherSettings
from ferry_rsync_agent.config import AgentConfig, AppConfig
from ferry_rsync_agent.main import run as run_rsync_agent
from ferry_staging_agent.main import run as run_staging_agent
from ferry_staging_agent.settings import Settings as StagingSettings

WAIT = 60.0
APP = "shop"
QUEUES = {
    "staging": "staging",
    "publisher": "publisher",
    "web-1": "host.web-1",
    "web-2": "host.web-2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(*argv: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *map(str, argv)], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def make_source(path: Path) -> Path:
    """A git repository with a tiny site on branch main."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "index.html").write_text("<h1>shop, release one</h1>\n")
    git("add", "-A", cwd=path)
    git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "one", cwd=path)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with its content's digest, a link's target, or `dir`."""
    found: dict[str, str] = {}
    if not root.exists():
        return found
    for here, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(here) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def wait_until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return value


@dataclass
class Strict:
    root: Path
    broker: Provisioned
    api: Api
    key: Path  # the API's private key; agents trust `<key>.pub`
    rsync_port: int = field(default_factory=free_port)
    running: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=dict)

    # --- the agents ---------------------------------------------------------------------------

    def agent_run(self, name: str, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        users, trusted = self.broker.users, [Path(f"{self.key}.pub")]
        if name == "staging":
            staging = StagingSettings(
                broker_url=self.broker.url(users.staging), data_dir=self.root / "staging-agent",
                release_repo_base=str(self.root / "publisher" / "repos"), allow_file_urls=True,
                trusted_keys=trusted,
            )  # fmt: skip
            return run_staging_agent(staging, stop)
        if name == "publisher":
            publisher = PublisherSettings(
                broker_url=self.broker.url(users.publisher), data_dir=self.root / "publisher",
                publisher_dir=self.root / "publisher", rsync_port=self.rsync_port,
                rsync_password=self.rsync_password, trusted_keys=trusted,
            )  # fmt: skip
            return run_publisher(publisher, stop)
        target = self.host_target(name)
        target.mkdir(parents=True, exist_ok=True)
        config = AgentConfig(
            host=name, broker_url=self.broker.url(users.host(name)),
            rsync_source=f"rsync://ferry@127.0.0.1:{self.rsync_port}/",
            password_file=self.root / "rsync.password", state_dir=self.root / "agents" / name,
            heartbeat_seconds=0.5, apps={APP: AppConfig(target=target)}, trusted_keys=trusted,
        )  # fmt: skip
        return run_rsync_agent(config, stop)

    @property
    def rsync_password(self) -> str:
        path = self.root / "rsync.password"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(16) + "\n")
        return path.read_text().strip()

    async def start(self, *names: str) -> None:
        for name in names:
            stop = asyncio.Event()
            self.running[name] = (stop, asyncio.create_task(self.agent_run(name, stop)))
        await wait_until(lambda: self._consumed(names), f"{names} to consume their queues")

    async def stop(self, name: str) -> None:
        stop, task = self.running.pop(name)
        stop.set()
        await asyncio.wait_for(task, 30)

    async def stop_all(self) -> None:
        for name in list(self.running):
            await self.stop(name)

    async def _consumed(self, names: tuple[str, ...]) -> bool:
        for name in names:
            task = self.running[name][1]
            if task.done():
                task.result()  # the agent's error, if it crashed
        listed = await asyncio.to_thread(
            rabbitmqctl, "-p", self.broker.vhost, "list_queues", "name", "consumers",
            "--formatter", "json",
        )  # fmt: skip
        consumers = {row["name"]: row["consumers"] for row in json.loads(listed)}
        return all(consumers.get(QUEUES[name]) for name in names)

    def host_target(self, host: str) -> Path:
        return self.root / "hosts" / host / APP

    # --- what ops read over REST ------------------------------------------------------------

    async def call(self, user: str, method: str, path: str, body: Any = None) -> Any:
        headers = await self.api.user(user, ROLES[user])
        response = await self.api.http.request(method, f"/api/v1{path}", json=body, headers=headers)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json()

    async def ticket(self, ticket_id: str) -> dict[str, Any]:
        ticket: dict[str, Any] = await self.call("dev", "GET", f"/tickets/{ticket_id}")
        return ticket

    async def wait_state(self, ticket_id: str, state: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            ticket = await self.ticket(ticket_id)
            return ticket if ticket["state"] == state else None

        ticket: dict[str, Any] = await wait_until(reached, f"{ticket_id} to be {state}")
        return ticket

    async def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in await self.api.events() if e["type"] == kind]

    async def refusal_of(self, message: Message, actor: str, reason: str) -> dict[str, Any]:
        """The agent.command_refused that `actor` (a broker user) recorded for this command, with
        a reason that starts so (a tampered copy and a replay share the command's id)."""

        async def recorded() -> dict[str, Any] | None:
            for event in await self.events("agent.command_refused"):
                data = event["data"]
                ours = data["command_event_id"] == message.message_id
                if ours and event["metadata"]["actor"] == actor:
                    if data["reason"].startswith(reason):
                        return event
            return None

        event: dict[str, Any] = await wait_until(recorded, f"a refusal of {message.message_id}")
        return event

    # --- the flow and its commands -----------------------------------------------------------

    async def add_app(self, source: Path) -> None:
        body = {
            "name": APP, "source": {"type": "git", "url": source.as_uri()},
            "hosts": ["web-1", "web-2"], "target_path": "/srv/shop", "keep_releases": 3,
        }  # fmt: skip
        await self.call("admin", "POST", "/apps", body)

    async def publish(self, ref: str = "main", until: str = "published") -> str:
        """submit -> testing -> pass-tests -> approve -> publish; the ticket's id."""
        body = {"app": APP, "kind": "deploy", "reason": "security", "ref": ref}
        ticket_id: str = (await self.call("dev", "POST", "/tickets", body))["id"]
        await self.wait_state(ticket_id, "testing")
        for user, action in (("dev", "pass-tests"), ("lead", "approve"), ("dev", "publish")):
            await self.call(user, "POST", f"/tickets/{ticket_id}/{action}")
        await self.wait_state(ticket_id, until)
        return ticket_id

    async def command(self, ticket_id: str, kind: str, **data: Any) -> StoredEvent:
        """The ticket's last stored command of this type (whose `data` has these values)."""
        events = await self.api.runtime.store.read_stream(f"ticket-{ticket_id}")
        found = [e for e in events if e.type == kind and data.items() <= e.data.items()]
        return found[-1]

    @property
    def signer(self) -> CommandSigner:
        return CommandSigner(load_private_key(self.key))

    def relayed(self, stored: StoredEvent, signer: CommandSigner | None = None) -> Message:
        """The command as the relay publishes it, signed (by the API's key unless told)."""
        message = Message.of_stored(stored, stored.payload().routing_key())
        return (signer or self.signer).sign(message)


ROLES: dict[str, Role] = {"admin": "admin", "lead": "lead", "dev": "developer"}


@contextlib.asynccontextmanager
async def strict_ferry(
    root: Path, broker: Provisioned, pg_url: str, agents: tuple[str, ...] = tuple(QUEUES)
) -> AsyncIterator[Strict]:
    """The API (strict: no shared broker user) with these agents running, the app `shop` on
    web-1 and web-2 from a git source; everything stopped at the end."""
    key = root / "keys" / "api.key"
    key.parent.mkdir(parents=True)
    generate_key(key)
    settings = make_api_settings(
        pg_url, broker.url(broker.users.api), root / "api",
        shared_broker_user=None, broker_user_prefix=broker.users.prefix,
        signing_key_file=key, allow_file_urls=True, heartbeat_timeout_seconds=3.0,
    )  # fmt: skip
    async with serving_api(settings) as api:
        strict = Strict(root, broker, api, key)
        try:
            await strict.start(*agents)
            await strict.add_app(make_source(root / "source"))
            yield strict
        finally:
            await strict.stop_all()
