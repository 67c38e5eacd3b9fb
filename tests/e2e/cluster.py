"""The e2e harness: Ferry's whole system as real processes (the API, the staging agent, the
publisher with its own rsync daemon, one rsync agent per host) on a fresh database, vhost and
directory tree; each service is a processes.Service with its own environment, data directory and
log file, and is ready once it answers (the API) or consumes its queue (the agents).

The API signs its commands with a key of the cluster's own, which every agent trusts. Every
process logs in to the vhost as the tests' one broker user (guest), so the API runs with
FERRY_SHARED_BROKER_USER; tests/security runs the strict way, a broker user per agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
from aio_pika.exceptions import AMQPError
from ferry_events.signing import generate_key
from processes import BIN, Service, answers_ready, clean_env, free_port
from yarl import URL

HostSpec = tuple[str, str, int | None]  # host name, rsync user, bandwidth limit (KiB/s)
# web-3 pulls with an rsync login of its own.
HOSTS: tuple[HostSpec, ...] = (
    ("web-1", "ferry", None),
    ("web-2", "ferry", None),
    ("web-3", "ferry-web3", None),
)


@dataclass(frozen=True)
class Host:
    """A production host: its rsync agent, its rsync login, and one directory per app."""

    name: str
    root: Path
    rsync_user: str
    bwlimit_kib: int | None = None

    def target(self, app: str) -> Path:
        return self.root / "srv" / app

    def current(self, app: str) -> Path:
        return self.target(app) / "current"

    def current_link(self, app: str) -> str | None:
        try:
            return os.readlink(self.current(app))
        except OSError:
            return None


@dataclass
class Cluster:
    """Ferry's services for one test: a fresh database, vhost and directory tree."""

    root: Path
    database_url: str
    broker_url: str
    apps: tuple[str, ...] = ("shop", "blog")
    services: dict[str, Service] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    rsync_port: int = field(default_factory=free_port)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    rsync_logins: dict[str, str] = field(default_factory=dict)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _amqp: aio_pika.abc.AbstractConnection | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def signing_key(self) -> Path:
        """The API's command signing key (made on first use); agents trust `<it>.pub`."""
        path = self.root / "keys" / "api.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            generate_key(path)
        return path

    @property
    def trusted_key(self) -> Path:
        return Path(f"{self.signing_key}.pub")

    def add(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> Service:
        service = Service(
            name, argv, env, self.root / name, self.root / "logs" / f"{name}.log", ready
        )
        self.services[name] = service
        return service

    # --- the services ------------------------------------------------------------------------

    def api_env(self) -> dict[str, str]:
        return clean_env(
            FERRY_DATABASE_URL=self.database_url,
            FERRY_BROKER_URL=self.broker_url,
            FERRY_DATA_DIR=str(self.root / "api"),
            FERRY_HOST="127.0.0.1",
            FERRY_PORT=str(self.api_port),
            FERRY_SECRET_KEY=self.secret_key,
            FERRY_ALLOW_FILE_URLS="true",
            FERRY_HEARTBEAT_TIMEOUT_SECONDS="3",
            FERRY_SIGNING_KEY_FILE=str(self.signing_key),
            FERRY_SHARED_BROKER_USER=URL(self.broker_url).user or "guest",
        )

    async def ferry_api(self, *args: str, **env: str) -> str:
        """A one-shot `ferry-api` command with the API's settings; its output."""
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "ferry-api"),
            *args,
            env=self.api_env() | env,
            cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(120):
            output, _ = await proc.communicate()
        text = output.decode(errors="replace")
        if proc.returncode != 0:
            raise AssertionError(f"ferry-api {args[0]} exited {proc.returncode}:\n{text}")
        return text

    def add_api(self) -> Service:
        argv = [str(BIN / "ferry-api"), "serve"]
        return self.add("api", argv, self.api_env(), answers_ready(self.api_url))

    @property
    def publisher_dir(self) -> Path:
        return self.root / "publisher"

    def add_staging_agent(self) -> Service:
        env = clean_env(
            FERRY_BROKER_URL=self.broker_url,
            FERRY_DATA_DIR=str(self.root / "staging-agent"),
            FERRY_RELEASE_REPO_BASE=str(self.publisher_dir / "repos"),
            FERRY_ALLOW_FILE_URLS="true",
            FERRY_COMMAND_TIMEOUT="120",
            FERRY_TRUSTED_KEYS=str(self.trusted_key),
        )
        return self.add(
            "staging-agent", [str(BIN / "ferry-staging-agent")], env, self._consuming("staging")
        )

    def add_publisher(self) -> Service:
        main, *more = self.rsync_logins
        env = clean_env(
            FERRY_BROKER_URL=self.broker_url,
            FERRY_DATA_DIR=str(self.publisher_dir),
            FERRY_PUBLISHER_DIR=str(self.publisher_dir),
            FERRY_RSYNC_PORT=str(self.rsync_port),
            FERRY_RSYNC_USER=main,
            FERRY_RSYNC_PASSWORD=self.rsync_logins[main],
            FERRY_RSYNC_MORE_USERS=json.dumps({user: self.rsync_logins[user] for user in more}),
            FERRY_COMMAND_TIMEOUT="120",
            FERRY_TRUSTED_KEYS=str(self.trusted_key),
        )
        return self.add(
            "publisher", [str(BIN / "ferry-publisher")], env, self._consuming("publisher")
        )

    def add_rsync_agent(self, host: Host) -> Service:
        home = self.root / f"agent-{host.name}"
        home.mkdir(parents=True, exist_ok=True)
        password_file = home / "rsync.password"
        password_file.touch(mode=0o600)
        password_file.write_text(self.rsync_logins[host.rsync_user] + "\n")
        for app in self.apps:
            host.target(app).mkdir(parents=True, exist_ok=True)
        config = home / "agent.toml"
        toml = agent_toml(host, self.rsync_port, password_file, home / "state", self.apps)
        config.write_text(f"trusted_keys = [{json.dumps(str(self.trusted_key))}]\n" + toml)
        env = clean_env(FERRY_AGENT_CONFIG=str(config), FERRY_BROKER_URL=self.broker_url)
        self.hosts[host.name] = host
        return self.add(
            f"agent-{host.name}",
            [str(BIN / "ferry-rsync-agent")],
            env,
            self._consuming(f"host.{host.name}"),
        )

    def agent(self, host: str) -> Service:
        return self.services[f"agent-{host}"]

    def staging_site(self, app: str) -> Path:
        """The app's staging workspace as the testers' web server serves it."""
        return self.root / "staging-agent" / "staging" / app / "site"

    # --- life cycle --------------------------------------------------------------------------

    async def start(self, admin: str = "admin") -> None:
        """Start every service and wait until all are ready; the API once the store is migrated,
        and the first admin is created meanwhile (the agents need no database)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._amqp = self._amqp or await aio_pika.connect(self.broker_url)
        api = self.services["api"]
        for service in self.services.values():
            if service is not api:
                service.start()
        print(await self.ferry_api("migrate"), end="")
        api.start()
        print(
            await self.ferry_api("create-admin", admin, FERRY_ADMIN_PASSWORD=self.admin_password),
            end="",
        )
        await asyncio.gather(*(service.wait_ready() for service in self.services.values()))

    async def start_services(self, services: Iterable[Service]) -> None:
        started = list(services)
        for service in started:
            service.start()
        await asyncio.gather(*(service.wait_ready() for service in started))

    async def restart(self, name: str) -> None:
        await self.start_services([self.services[name]])

    async def stop(self) -> None:
        for service in self.services.values():
            service.terminate()
        for service in self.services.values():
            service.wait_stopped()
        if self._amqp is not None:
            await self._amqp.close()
            self._amqp = None

    def logs(self) -> dict[str, str]:
        return {name: service.log_tail() for name, service in self.services.items()}

    def _consuming(self, queue: str) -> Callable[[], Awaitable[bool]]:
        """Ready once the service consumes its queue (asked of the broker, passively)."""

        async def ready() -> bool:
            assert self._amqp is not None
            try:
                channel = await self._amqp.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                    return bool(declared.declaration_result.consumer_count)
                finally:
                    if not channel.is_closed:
                        await channel.close()
            except AMQPError:  # not declared yet: a passive declare closes the channel
                return False

        return ready


def agent_toml(host: Host, port: int, password_file: Path, state: Path, apps: Iterable[str]) -> str:
    """The agent's local config; json.dumps writes TOML-compatible basic strings."""
    lines = [
        f"host = {json.dumps(host.name)}",
        f"rsync_source = {json.dumps(f'rsync://{host.rsync_user}@127.0.0.1:{port}/')}",
        f"password_file = {json.dumps(str(password_file))}",
        f"state_dir = {json.dumps(str(state))}",
        "rsync_timeout_seconds = 30",
        "heartbeat_seconds = 1",
    ]
    if host.bwlimit_kib:
        lines.append(f"bwlimit_kib = {host.bwlimit_kib}")
    for app in apps:
        lines += ["", f"[apps.{app}]", f"target = {json.dumps(str(host.target(app)))}", "keep = 3"]
    return "\n".join(lines) + "\n"


def ferry_cluster(
    root: Path, database_url: str, broker_url: str, hosts: Iterable[HostSpec]
) -> Cluster:
    """The whole system: API, staging agent, publisher, and an rsync agent per
    (host, rsync user, bandwidth limit)."""
    cluster = Cluster(root, database_url, broker_url)
    hosts = list(hosts)
    for _, user, _ in hosts:
        cluster.rsync_logins.setdefault(user, secrets.token_urlsafe(18))
    cluster.add_api()
    cluster.add_staging_agent()
    cluster.add_publisher()
    for name, user, bwlimit in hosts:
        cluster.add_rsync_agent(Host(name, root / "hosts" / name, user, bwlimit))
    return cluster


MakeCluster = Callable[[Sequence[HostSpec]], Awaitable[Cluster]]
