"""`make up`: Ferry's distributed stack on one machine, every service its own process (API,
staging agent, publisher, rsync agents demo-1 and demo-2), against the PostgreSQL and RabbitMQ
running here, on a database and a vhost of its own; seeded with `make run`'s demo data.

State lives in FERRY_STACK_DIR (default .ferry/stack): the kept secrets, each process's data
and log (`logs/<name>.log`), the demo source (`sources/demo`), the demo hosts
(`hosts/<host>/<app>`) and, while it runs, `stack.json` (URL, pids, logs). Knobs:
FERRY_STACK_DATABASE (ferry_up) on FERRY_STACK_POSTGRES, FERRY_STACK_VHOST (ferry-up) on
FERRY_STACK_RABBITMQ, FERRY_PORT (8000), FERRY_RSYNC_PORT (8730), FERRY_DEMO_PASSWORD,
FERRY_STACK_APPS (more apps the rsync agents accept besides `demo`). Ctrl-C or SIGTERM stops
every process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys

from stack_backends import (
    BackendFailed,
    ensure_database,
    ensure_vhost,
    not_ready,
    ports_in_use,
    provision_broker_users,
)
from stack_children import Child
from stack_demo import USERS, SeedFailed, seed
from stack_settings import BIN, HOSTS, Stack, api_env, processes, shown, signing_key

STARTUP_SECONDS = 180.0
STOP_SECONDS = 15.0


class StackFailed(Exception):
    """The stack could not start; the message says why and where to look."""


async def ferry_api(stack: Stack, *args: str, **env: str) -> tuple[int, str]:
    """A one-shot `ferry-api` command with the API's settings: exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "ferry-api"),
        *args,
        env=api_env(stack) | env,
        cwd=stack.root,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, output.decode(errors="replace").strip()


def demo_passwords(stack: Stack) -> tuple[str, str | None]:
    """The users' password (FERRY_DEMO_PASSWORD, else the kept one, else new) and the kept
    one when it differs (the admin may still have it)."""
    kept = stack.root / "demo-password"
    earlier = kept.read_text().strip() if kept.exists() else None
    password = stack.demo_password or earlier or secrets.token_urlsafe(12)
    if len(password) < 8:
        raise StackFailed("FERRY_DEMO_PASSWORD needs at least 8 characters")
    if earlier is None:  # kept before `create-admin` uses it, so a failed start loses nothing
        keep_password(stack, password)
    return password, earlier if earlier != password else None


def keep_password(stack: Stack, password: str) -> None:
    kept = stack.root / "demo-password"
    kept.touch(mode=0o600)
    kept.write_text(password + "\n")


async def prepare(stack: Stack, password: str) -> None:
    """Free ports, the database, the vhost, the schema and the first admin."""
    ports = {"FERRY_PORT": stack.api_port, "FERRY_RSYNC_PORT": stack.rsync_port}
    if taken := ports_in_use(ports):
        raise StackFailed(f"in use already: {', '.join(taken)}; stop that or choose another")
    if await ensure_database(stack.database_url):
        print(f"stack: created database {stack.database_url.rsplit('/', 1)[1]}", flush=True)
    vhost_made = stack.vhost is not None and await asyncio.to_thread(
        ensure_vhost, stack.vhost, stack.broker_url
    )
    if vhost_made:
        print(f"stack: created RabbitMQ vhost {stack.vhost}", flush=True)
    await asyncio.to_thread(provision_broker_users, stack)
    await ensure_signing_key(stack)
    code, text = await ferry_api(stack, "migrate")
    if code:
        raise StackFailed(f"ferry-api migrate failed:\n{text}")
    code, text = await ferry_api(stack, "create-admin", "admin", FERRY_ADMIN_PASSWORD=password)
    if code and "already exists" not in text:
        raise StackFailed(f"ferry-api create-admin failed:\n{text}")


async def ensure_signing_key(stack: Stack) -> None:
    """The API's command signing key, made once with `ferry-api signing-key generate`."""
    if signing_key(stack).exists():
        return
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "ferry-api"), "signing-key", "generate", str(signing_key(stack)),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    if proc.returncode:
        raise StackFailed(f"ferry-api signing-key generate failed:\n{output.decode().strip()}")
    key_id = output.split()[0].decode()
    print(f"stack: made the API's signing key {signing_key(stack)} (id {key_id})", flush=True)


async def wait_ready(stack: Stack, children: list[Child]) -> None:
    """Until the API answers and every agent consumes its queue; fails if a process exits."""
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    while waiting := await not_ready(stack):
        for child in children:
            if child.process is not None and child.process.returncode is not None:
                raise StackFailed(
                    f"{child.name} exited ({child.process.returncode}) before it was ready; "
                    f"the end of {child.log}:\n{child.tail()}"
                )
        if asyncio.get_running_loop().time() > deadline:
            raise StackFailed(
                f"not ready after {STARTUP_SECONDS:.0f} s: {', '.join(waiting)}; "
                f"logs in {stack.root / 'logs'}"
            )
        await asyncio.sleep(0.3)


async def start_up(stack: Stack, children: list[Child]) -> None:
    """Prepare the servers, then start every process (their settings name the broker users and
    keys that `prepare` made, so the children are made only now)."""
    password, earlier = demo_passwords(stack)
    await prepare(stack, password)
    children.extend(make_children(stack))
    for child in children:
        await child.start()
    print(f"stack: started {len(children)} processes; waiting until they are ready", flush=True)
    await wait_ready(stack, children)
    try:
        await seed(stack, password, earlier)
    except SeedFailed as exc:
        raise StackFailed(f"demo data: {exc}") from exc
    keep_password(stack, password)
    write_state(stack, children)
    print(banner(stack, children, password), flush=True)
    width = max(len(child.name) for child in children)
    for child in children:
        child.follow(width)


def write_state(stack: Stack, children: list[Child]) -> None:
    """stack.json, for scripts and tests: written whole once everything is up."""
    state = {
        "url": stack.api_url,
        "database": stack.database_url.rsplit("/", 1)[1],
        "vhost": stack.vhost,
        "processes": [{"name": c.name, "pid": c.pid, "log": str(c.log)} for c in children],
        "users": [username for username, _ in USERS],
        "source": str(stack.source_repo),
        "hosts": {host: str(stack.host_target(host, "demo")) for host in HOSTS},
    }
    partial = stack.root / "stack.json.partial"
    partial.write_text(json.dumps(state, indent=2) + "\n")
    partial.replace(stack.root / "stack.json")


def banner(stack: Stack, children: list[Child], password: str) -> str:
    width = max(len(child.name) for child in children)
    rows = "\n".join(f"    {c.name:<{width}}  {c.pid:>7}  {c.log}" for c in children)
    logins = "\n".join(f"    {u:<6} {role:<10} password: {password}" for u, role in USERS)
    hosts = "\n".join(f"    {h}: {stack.host_target(h, 'demo')}" for h in HOSTS)
    return (
        f"\nFerry stack is up at {stack.api_url}\n"
        f"  database: {shown(stack.database_url)}\n"
        f"  RabbitMQ vhost: {stack.vhost or '(from FERRY_BROKER_URL)'}\n"
        f"  state: {stack.root}\n"
        f"  processes:\n    {'name':<{width}}  {'pid':>7}  log\n{rows}\n"
        f"  source repository (branch main): {stack.source_repo}\n"
        f"  demo hosts:\n{hosts}\n  logins:\n{logins}\n"
        "  Ctrl-C stops every process; their log lines follow.\n"
    )


async def stop_all(children: list[Child]) -> bool:
    """Stop every started process at once; True if each ended by the SIGTERM (uvicorn re-raises
    it after its graceful shutdown, so the API's code is -15; the agents return 0)."""
    started = [child for child in children if child.process is not None]
    codes = await asyncio.gather(*(child.stop(STOP_SECONDS) for child in started))
    for child, code in zip(started, codes, strict=True):
        print(f"stack: {child.name} (pid {child.pid}) stopped, exit code {code}", flush=True)
    return all(code in (0, -signal.SIGTERM) for code in codes)


async def serve(stack: Stack, children: list[Child], stop: asyncio.Event) -> int:
    """Start everything, then run until a signal (0) or until a process exits (1)."""
    stopping = asyncio.ensure_future(stop.wait())
    startup = asyncio.ensure_future(start_up(stack, children))
    await asyncio.wait([startup, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not startup.done():
        startup.cancel()
        await asyncio.gather(startup, return_exceptions=True)
        return 0
    startup.result()  # StackFailed, if it failed
    exits = [asyncio.ensure_future(child.process.wait()) for child in children if child.process]
    await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        return 0
    for child in children:
        if child.process is not None and child.process.returncode is not None:
            print(
                f"stack: {child.name} exited ({child.process.returncode}); the end of "
                f"{child.log}:\n{child.tail()}",
                file=sys.stderr,
                flush=True,
            )
    return 1


async def run(stack: Stack) -> int:
    stack.root.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    children: list[Child] = []
    try:
        code = await serve(stack, children, stop)
    except (StackFailed, BackendFailed) as exc:
        print(f"stack: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        (stack.root / "stack.json").unlink(missing_ok=True)
        clean = await stop_all(children)
    if code == 0 and not clean:
        print("stack: not every process stopped cleanly", file=sys.stderr)
        return 1
    return code


def make_children(stack: Stack) -> list[Child]:
    logs = stack.root / "logs"
    return [
        Child(name, argv, env, stack.root / "run" / name, logs / f"{name}.log")
        for name, (argv, env) in processes(stack).items()
    ]


if __name__ == "__main__":
    sys.exit(asyncio.run(run(Stack.from_env())))
