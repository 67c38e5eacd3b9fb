"""`make up`: Ferry's distributed stack on one machine, every service its own process (API,
staging agent, publisher, rsync agents demo-1 and demo-2), against the PostgreSQL and RabbitMQ
running here. Each log line is prefixed by its service's name; Ctrl-C stops them all.

State is kept in .ferry/stack/: the generated secret key (`secret`), the rsync and admin
passwords, each service's data directory, and the demo hosts' directories (`hosts/<host>/<app>`).
Override with FERRY_DATABASE_URL, FERRY_BROKER_URL, FERRY_PORT, FERRY_RSYNC_PORT and
FERRY_STACK_APPS (the apps the rsync agents accept, comma-separated; default `demo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import asyncpg

ROOT = Path(".ferry/stack").resolve()
BIN = Path(sys.executable).parent
DATABASE_URL = os.environ.get("FERRY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ferry")
BROKER_URL = os.environ.get("FERRY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
API_PORT = os.environ.get("FERRY_PORT", "8000")
RSYNC_PORT = os.environ.get("FERRY_RSYNC_PORT", "8730")
APPS = [app for app in os.environ.get("FERRY_STACK_APPS", "demo").split(",") if app]
HOSTS = ("demo-1", "demo-2")
STOP_SECONDS = 10.0
WIDTH = len(f"rsync-agent {HOSTS[0]}")  # the longest service name: aligned log lines


def kept_secret(name: str, size: int = 32) -> str:
    """The value kept in ROOT/name from an earlier start, else a new one (file mode 0600)."""
    path = ROOT / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(size) + "\n")
    return path.read_text().strip()


async def ensure_database(url: str) -> None:
    """CREATE DATABASE for the URL's database if the server does not have it yet."""
    server, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{server}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"stack: created database {name}")
    finally:
        await conn.close()


def service_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    return env | {"PYTHONUNBUFFERED": "1", "FERRY_BROKER_URL": BROKER_URL} | settings


def agent_config(host: str, password_file: Path) -> Path:
    home = ROOT / "agents" / host
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        f"host = {json.dumps(host)}",
        f"rsync_source = {json.dumps(f'rsync://ferry@127.0.0.1:{RSYNC_PORT}/')}",
        f"password_file = {json.dumps(str(password_file))}",
        f"state_dir = {json.dumps(str(home / 'state'))}",
    ]
    for app in APPS:
        target = ROOT / "hosts" / host / app
        target.mkdir(parents=True, exist_ok=True)
        lines += [f"[apps.{app}]", f"target = {json.dumps(str(target))}"]
    config = home / "agent.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def services() -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, environment) of every long-running process."""
    rsync_password = kept_secret("rsync.password")
    password_file = ROOT / "rsync.password"
    publisher_dir = ROOT / "publisher"
    found = {
        "api": ([str(BIN / "ferry-api"), "serve"], api_env()),
        "staging-agent": (
            [str(BIN / "ferry-staging-agent")],
            service_env(
                FERRY_DATA_DIR=str(ROOT / "staging-agent"),
                FERRY_RELEASE_REPO_BASE=str(publisher_dir / "repos"),
                FERRY_ALLOW_FILE_URLS="true",
            ),
        ),
        "publisher": (
            [str(BIN / "ferry-publisher")],
            service_env(
                FERRY_DATA_DIR=str(publisher_dir),
                FERRY_RSYNC_PORT=RSYNC_PORT,
                FERRY_RSYNC_PASSWORD=rsync_password,
            ),
        ),
    }
    for host in HOSTS:
        env = service_env(FERRY_AGENT_CONFIG=str(agent_config(host, password_file)))
        found[f"rsync-agent {host}"] = ([str(BIN / "ferry-rsync-agent")], env)
    return found


def api_env() -> dict[str, str]:
    return service_env(
        FERRY_DATABASE_URL=DATABASE_URL,
        FERRY_DATA_DIR=str(ROOT / "api"),
        FERRY_PORT=API_PORT,
        FERRY_SECRET_KEY=kept_secret("secret", 48),
        FERRY_ALLOW_FILE_URLS="true",
    )


async def prefix_lines(name: str, stream: asyncio.StreamReader) -> None:
    async for line in stream:
        print(f"{name:<{WIDTH}} | {line.decode(errors='replace').rstrip()}", flush=True)


async def start(name: str, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    home = ROOT / "run" / name.replace(" ", "-")
    home.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=home,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the launcher only; it stops them in order
    )
    assert process.stdout is not None
    asyncio.get_running_loop().create_task(prefix_lines(name, process.stdout))
    return process


async def one_shot(name: str, *args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "ferry-api"),
        *args,
        env=api_env() | env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    text = output.decode(errors="replace").strip()
    for line in text.splitlines():
        print(f"{name} | {line}")
    return proc.returncode or 0, text


async def prepare() -> str:
    """Database, schema and the first admin; the admin's password."""
    await ensure_database(DATABASE_URL)
    code, _ = await one_shot("migrate", "migrate")
    if code:
        raise SystemExit("stack: ferry-api migrate failed")
    password = kept_secret("admin-password", 12)
    code, text = await one_shot(
        "create-admin", "create-admin", "admin", FERRY_ADMIN_PASSWORD=password
    )
    if code and "already exists" not in text:
        raise SystemExit("stack: ferry-api create-admin failed")
    return password


def api_ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def wait_ready(exited: Sequence[asyncio.Future[int]]) -> bool:
    """Poll the API's /readyz until it answers; False if a service exits first."""
    while not any(e.done() for e in exited):
        if await asyncio.to_thread(api_ready):
            return True
        await asyncio.sleep(0.2)
    return False


async def run() -> int:
    ROOT.mkdir(parents=True, exist_ok=True)
    admin_password = await prepare()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    processes = {name: await start(name, *spec) for name, spec in services().items()}
    exited = [asyncio.ensure_future(p.wait()) for p in processes.values()]
    if await wait_ready(exited):
        print(
            f"\nFerry stack is up: http://127.0.0.1:{API_PORT}  (admin / {admin_password})\n"
            f"  state: {ROOT}\n  Ctrl-C stops every service.\n",
            flush=True,
        )
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiting, *exited], return_when=asyncio.FIRST_COMPLETED)
    failed = [name for name, p in processes.items() if p.returncode is not None]
    await stop_all(processes)
    if failed and not stop.is_set():
        print(f"stack: {', '.join(failed)} exited; stopped the rest", file=sys.stderr)
        return 1
    return 0


async def stop_all(processes: dict[str, asyncio.subprocess.Process]) -> None:
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for name, process in processes.items():
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            print(f"stack: {name} did not stop in {STOP_SECONDS:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
