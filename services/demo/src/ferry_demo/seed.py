"""The demo's data under FERRY_DATA_DIR: its settings (embedded SQLite store, in-process bus),
demo users, and a demo app whose source is a local git repository it creates. Every step is
idempotent: a second start reuses what the first made.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ferry_api.commands import accounts, credentials
from ferry_api.commands import apps as app_commands
from ferry_api.domain.streams import app_stream, user_stream
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings
from ferry_events.schemas import AppCreated, Role, Source
from ferry_events.signing import generate_key
from ferry_events.topology import BrokerUsers
from pydantic import SecretStr

DEMO_USERS: tuple[tuple[str, Role], ...] = (
    ("admin", "admin"),
    ("lead", "lead"),
    ("dev", "developer"),
)
DEMO_APP = "demo"
DEMO_HOSTS = ("demo-1", "demo-2")
BY = "demo"
SITE = {
    "index.html": "<!doctype html>\n<title>Ferry demo</title>\n<link rel=stylesheet "
    "href=style.css>\n<h1>Hello from release <span id=v>?</span></h1>\n<script src=app.js>"
    "</script>\n",
    "style.css": "body { font-family: sans-serif; margin: 3em; }\n",
    "app.js": "document.getElementById('v').textContent = 'one';\n",
    "README.md": "A tiny site that Ferry's demo releases. Change it, commit, file a ticket.\n",
}


@dataclass(frozen=True)
class DemoHost:
    name: str
    root: Path  # the host's own directory; its agent keeps `<root>/<app>/releases`, `current`


@dataclass(frozen=True)
class DemoSetup:
    settings: Settings
    source: Path
    hosts: tuple[DemoHost, ...]
    password: str


def _kept_secret(path: Path, given: str | None, size: int) -> str:
    """`given` if set, else the value kept in `path` from an earlier start, else a new one."""
    if given:
        return given
    if path.exists():
        path.chmod(0o600)
        return path.read_text().strip()
    value = secrets.token_urlsafe(size)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def signing_key(data_dir: Path) -> Path:
    """The API's command signing key, made once in the data dir (0600); agents trust its .pub."""
    path = data_dir / "signing.key"
    if not path.exists():
        generate_key(path)
    return path


def demo_settings() -> Settings:
    base = Settings()
    data_dir = base.data_dir.resolve()
    # Its owner's alone (also one an earlier version left open): the store in it holds password
    # hashes, and the kept secret key and password are files in it.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    given = base.secret_key.get_secret_value() if base.secret_key else None
    secret = _kept_secret(data_dir / "demo-secret-key", given, 48)
    return Settings(
        demo=True,
        data_dir=data_dir,
        database_url="",
        broker_url="memory://",
        allow_file_urls=True,
        secret_key=SecretStr(secret),
        signing_key_file=signing_key(data_dir),
        broker_user_prefix=BrokerUsers().prefix,  # the agents' identities on the in-process bus
    )


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=Ferry demo",
            "-c",
            "user.email=demo@ferry.invalid",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def make_source_repo(root: Path) -> Path:
    """A git repository with a few web files on branch `main` (kept if it exists)."""
    repo = root / "sources" / DEMO_APP
    if (repo / ".git").exists():
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    for name, text in SITE.items():
        (repo / name).write_text(text)
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "--message=First version of the demo site")
    return repo


async def ensure_user(runtime: Runtime, username: str, role: Role, password: str) -> None:
    if await runtime.store.stream_version(user_stream(username)) == 0:
        await accounts.create_user(runtime, username, role, password, by=BY)
    elif not await credentials.password_matches(runtime.store, username, password):
        change = accounts.UserChange(password=password, disabled=False)
        await accounts.change_user(runtime, username, change, by=BY)


async def ensure_app(runtime: Runtime, setup: DemoSetup) -> None:
    config = AppCreated(
        name=DEMO_APP,
        source=Source(type="git", url=setup.source.as_uri()),
        hosts=[host.name for host in setup.hosts],
        target_path=str(setup.settings.data_dir / "hosts"),
        excludes=[".git"],
        by=BY,
    )
    if await runtime.store.stream_version(app_stream(DEMO_APP)) == 0:
        await app_commands.create_app(runtime, config)
    else:  # the data dir may have moved since
        changes = config.model_dump(mode="json", include={"source", "hosts", "target_path"})
        await app_commands.update_app(runtime, DEMO_APP, changes, BY)


def prepare(settings: Settings) -> DemoSetup:
    root = settings.data_dir
    hosts = tuple(DemoHost(name, root / "hosts" / name) for name in DEMO_HOSTS)
    for host in hosts:
        host.root.mkdir(parents=True, exist_ok=True)
    given = settings.demo_password.get_secret_value() if settings.demo_password else None
    password = _kept_secret(root / "demo-password", given, 12)
    return DemoSetup(settings, make_source_repo(root), hosts, password)
