"""`ferry-api demo` (what `make run` calls): the whole system in one process, with an embedded
SQLite store and the in-process bus under FERRY_DATA_DIR, demo users and a demo app whose source
is a local git repository. Every step is idempotent: a second start reuses what the first made.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
from ferry_events.schemas import AppCreated, Role, Source
from pydantic import SecretStr

from ferry_api import accounts, app_config, credentials
from ferry_api.app import create_app
from ferry_api.runtime import Runtime, running
from ferry_api.settings import Settings

log = structlog.get_logger()

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


DemoTask = Callable[[Runtime, DemoSetup], Coroutine[None, None, None]]


def demo_tasks() -> list[DemoTask]:
    """Extra in-process services of the demo, run beside the API until it stops: the staging
    agent, the publisher and the two rsync agents, imported only now (an optional extra)."""
    from ferry_api.demo_agents import agent_tasks

    return agent_tasks()


def _kept_secret(path: Path, given: str | None, size: int) -> str:
    """`given` if set, else the value kept in `path` from an earlier start, else a new one."""
    if given:
        return given
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(size)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def demo_settings() -> Settings:
    base = Settings()
    data_dir = base.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    given = base.secret_key.get_secret_value() if base.secret_key else None
    secret = _kept_secret(data_dir / "demo-secret-key", given, 48)
    return Settings(
        demo=True,
        data_dir=data_dir,
        database_url="",
        broker_url="memory://",
        allow_file_urls=True,
        secret_key=SecretStr(secret),
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
    if await runtime.store.stream_version(accounts.user_stream(username)) == 0:
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
    if await runtime.store.stream_version(app_config.app_stream(DEMO_APP)) == 0:
        await app_config.create_app(runtime, config)
    else:  # the data dir may have moved since
        changes = config.model_dump(mode="json", include={"source", "hosts", "target_path"})
        await app_config.update_app(runtime, DEMO_APP, changes, BY)


def prepare(settings: Settings) -> DemoSetup:
    root = settings.data_dir
    hosts = tuple(DemoHost(name, root / "hosts" / name) for name in DEMO_HOSTS)
    for host in hosts:
        host.root.mkdir(parents=True, exist_ok=True)
    given = settings.demo_password.get_secret_value() if settings.demo_password else None
    password = _kept_secret(root / "demo-password", given, 12)
    return DemoSetup(settings, make_source_repo(root), hosts, password)


def banner(setup: DemoSetup) -> str:
    settings = setup.settings
    logins = "\n".join(
        f"    {name:<6} {role:<10} password: {setup.password}" for name, role in DEMO_USERS
    )
    return (
        f"\nFerry demo is running at http://{settings.host}:{settings.port}\n"
        f"  data: {settings.data_dir}\n  source repository (branch main): {setup.source}\n"
        f"  logins:\n{logins}\n  Ctrl-C stops it.\n"
    )


async def run_demo() -> None:
    settings = demo_settings()
    setup = prepare(settings)
    async with running(settings) as runtime:
        for name, role in DEMO_USERS:
            await ensure_user(runtime, name, role, setup.password)
        await ensure_app(runtime, setup)
        tasks = [asyncio.create_task(task(runtime, setup)) for task in demo_tasks()]
        config = uvicorn.Config(
            create_app(runtime),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        try:
            serving = asyncio.create_task(server.serve())
            # uvicorn tells that it listens by a flag only.
            while not server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if server.started:
                print(banner(setup), flush=True)
            await serving
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
