"""`make up`'s one place for settings: the stack's own knobs (FERRY_STACK_*, FERRY_PORT,
FERRY_RSYNC_PORT, FERRY_DEMO_PASSWORD) and every process's argv and full environment.

Each process logs in to the stack's vhost as its own broker user (`<vhost>-api`, `-staging`,
`-publisher`, `-host-<host>`, provisioned by deploy/broker/setup.py with its password in
`broker-secrets/`), and the API signs its commands with `signing.key`, whose `.pub` the agents
trust: strict, as in production. With FERRY_BROKER_URL (a broker the stack does not provision)
every process logs in as that URL's user and the API is told so (FERRY_SHARED_BROKER_USER)."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ferry_events.topology import BrokerUsers

BIN = Path(sys.executable).parent  # the console scripts of the venv running the stack
DEMO_APP = "demo"
HOSTS = ("demo-1", "demo-2")
RSYNC_USER = "ferry"


@dataclass(frozen=True)
class Stack:
    """Where the stack keeps its state and which servers, ports and apps it uses."""

    root: Path
    database_url: str
    broker_url: str
    vhost: str | None  # created with rabbitmqctl; None when FERRY_BROKER_URL names the broker
    api_port: int
    rsync_port: int
    apps: tuple[str, ...]
    demo_password: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Stack:
        postgres = env.get("FERRY_STACK_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
        rabbitmq = env.get("FERRY_STACK_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")
        vhost = env.get("FERRY_STACK_VHOST", "ferry-up")
        database = env.get("FERRY_STACK_DATABASE", "ferry_up")
        more_apps = [app for app in env.get("FERRY_STACK_APPS", "").split(",") if app]
        return cls(
            root=Path(env.get("FERRY_STACK_DIR", ".ferry/stack")).resolve(),
            database_url=env.get("FERRY_DATABASE_URL") or f"{postgres}/{database}",
            broker_url=env.get("FERRY_BROKER_URL") or f"{rabbitmq}/{quote(vhost, safe='')}",
            vhost=None if env.get("FERRY_BROKER_URL") else vhost,
            api_port=int(env.get("FERRY_PORT", "8000")),
            rsync_port=int(env.get("FERRY_RSYNC_PORT", "8730")),
            apps=tuple(dict.fromkeys([DEMO_APP, *more_apps])),
            demo_password=env.get("FERRY_DEMO_PASSWORD") or None,
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def source_repo(self) -> Path:
        return self.root / "sources" / DEMO_APP

    @property
    def publisher_dir(self) -> Path:
        return self.root / "publisher"

    def host_target(self, host: str, app: str) -> Path:
        """A demo host's directory of an app: `releases/<N>/` and `current` live there."""
        return self.root / "hosts" / host / app

    def kept_secret(self, name: str, size: int = 32) -> str:
        """The value kept in root/name from an earlier start, else a new one (mode 0600)."""
        path = self.root / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(size) + "\n")
        return path.read_text().strip()


def shown(url: str) -> str:
    """The URL without its password, for the terminal."""
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@", 1) if password else url


def broker_users(stack: Stack) -> BrokerUsers | None:
    """The processes' broker users in the stack's own vhost (None: FERRY_BROKER_URL's user)."""
    return None if stack.vhost is None else BrokerUsers(prefix=f"{stack.vhost}-")


def broker_secrets(stack: Stack) -> Path:
    """Where deploy/broker/setup.py keeps each user's password (`<user>.password`, 0600)."""
    return stack.root / "broker-secrets"


def signing_key(stack: Stack) -> Path:
    """The API's command signing key (`ferry-api signing-key generate`); `<it>.pub` for agents."""
    return stack.root / "signing.key"


def broker_url(stack: Stack, user: str | None) -> str:
    """The stack's broker URL logged in as `user` (None: the URL as given)."""
    if user is None:
        return stack.broker_url
    password = (broker_secrets(stack) / f"{user}.password").read_text().strip()
    parts = urlsplit(stack.broker_url)
    port = f":{parts.port}" if parts.port else ""
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}{port}"
    return urlunsplit(parts._replace(netloc=login))


def base_env(stack: Stack, user: str | None = None) -> dict[str, str]:
    """The caller's environment minus its FERRY_* settings: each process gets only ours, and
    logs in to the broker as `user`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    return env | {"PYTHONUNBUFFERED": "1", "FERRY_BROKER_URL": broker_url(stack, user)}


def trust_env(stack: Stack, user: str | None) -> dict[str, str]:
    """An agent's broker login and the API's public key it trusts."""
    return base_env(stack, user) | {"FERRY_TRUSTED_KEYS": f"{signing_key(stack)}.pub"}


def api_env(stack: Stack) -> dict[str, str]:
    """The API's settings; `ferry-api migrate` and `create-admin` run with them too."""
    users = broker_users(stack)
    if users is None:  # every process logs in as the URL's user: allowed, but said out loud
        broker = {"FERRY_SHARED_BROKER_USER": urlsplit(stack.broker_url).username or "guest"}
    else:
        broker = {"FERRY_BROKER_USER_PREFIX": users.prefix}
    env = base_env(stack, users.api if users else None) | broker
    return env | {
        "FERRY_SIGNING_KEY_FILE": str(signing_key(stack)),  # agents trust its .pub
        "FERRY_DATABASE_URL": stack.database_url,  # the stack's own database, never another
        "FERRY_DATA_DIR": str(stack.root / "api"),
        "FERRY_HOST": "127.0.0.1",  # this machine only
        "FERRY_PORT": str(stack.api_port),
        "FERRY_SECRET_KEY": stack.kept_secret("secret", 48),  # kept: tokens survive a restart
        "FERRY_ALLOW_FILE_URLS": "true",  # the demo app's source is a file:// repository
        "FERRY_MIGRATE_ON_START": "false",  # the stack runs `ferry-api migrate` first, as k8s does
    }


def staging_env(stack: Stack) -> dict[str, str]:
    users = broker_users(stack)
    return trust_env(stack, users.staging if users else None) | {
        "FERRY_DATA_DIR": str(stack.root / "staging-agent"),  # workspaces: staging/<app>/
        # It pushes each staged tree to <base>/<app>.git: the publisher's repos directory.
        "FERRY_RELEASE_REPO_BASE": str(stack.publisher_dir / "repos"),
        "FERRY_ALLOW_FILE_URLS": "true",  # it checks the source URL again before cloning
    }


def publisher_env(stack: Stack) -> dict[str, str]:
    users = broker_users(stack)
    return trust_env(stack, users.publisher if users else None) | {
        "FERRY_DATA_DIR": str(stack.publisher_dir),
        # Release repos at <dir>/repos, exports at <dir>/exports. Unset it would default to
        # <data dir>/publisher, one level below where the staging agent pushes.
        "FERRY_PUBLISHER_DIR": str(stack.publisher_dir),
        "FERRY_RSYNC_ADDRESS": "127.0.0.1",  # its rsync daemon: the demo hosts are local
        "FERRY_RSYNC_PORT": str(stack.rsync_port),
        "FERRY_RSYNC_HOSTS_ALLOW": "127.0.0.1",
        "FERRY_RSYNC_USER": RSYNC_USER,
        # Required outside the embedded demo; the rsync agents' password_file holds the same.
        "FERRY_RSYNC_PASSWORD": stack.kept_secret("rsync.password"),
    }


def rsync_agent_env(stack: Stack, host: str) -> dict[str, str]:
    # FERRY_BROKER_URL (in base_env) overrides the file's broker_url; the rest is in the file.
    users = broker_users(stack)
    user = users.host(host) if users else None
    return base_env(stack, user) | {"FERRY_AGENT_CONFIG": str(agent_config(stack, host))}


def agent_config(stack: Stack, host: str) -> Path:
    """A demo host's agent.toml (json.dumps writes TOML-compatible strings)."""
    home = stack.root / "agents" / host
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        f"host = {json.dumps(host)}",  # the name the demo app lists
        f"rsync_source = {json.dumps(f'rsync://{RSYNC_USER}@127.0.0.1:{stack.rsync_port}/')}",
        # The file holding FERRY_RSYNC_PASSWORD (kept by the stack, mode 0600).
        f"password_file = {json.dumps(str(stack.root / 'rsync.password'))}",
        f"state_dir = {json.dumps(str(home / 'state'))}",
        f"trusted_keys = [{json.dumps(f'{signing_key(stack)}.pub')}]",  # the API's public key
    ]
    for app in stack.apps:
        target = stack.host_target(host, app)
        target.mkdir(parents=True, exist_ok=True)  # the agent refuses a missing target
        lines += [f"[apps.{app}]", f"target = {json.dumps(str(target))}"]
    config = home / "agent.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def processes(stack: Stack) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, environment) of every long-running process, in start order."""
    found = {
        "api": ([str(BIN / "ferry-api"), "serve"], api_env(stack)),
        "staging-agent": ([str(BIN / "ferry-staging-agent")], staging_env(stack)),
        "publisher": ([str(BIN / "ferry-publisher")], publisher_env(stack)),
    }
    for host in HOSTS:
        argv = [str(BIN / "ferry-rsync-agent")]
        found[f"rsync-agent-{host}"] = (argv, rsync_agent_env(stack, host))
    return found


def queues() -> dict[str, str]:
    """name -> the queue each agent consumes: it is ready once it has a consumer."""
    agents = {"staging-agent": "staging", "publisher": "publisher"}
    return agents | {f"rsync-agent-{host}": f"host.{host}" for host in HOSTS}
