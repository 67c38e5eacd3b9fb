"""`ferry-demo` (what `make run` calls): the whole system in one process. The API on the embedded
SQLite store and in-process bus under FERRY_DATA_DIR, the staging agent, the publisher and two
rsync agents on that bus, demo users and a demo app; prints the URL and the logins.
"""

from __future__ import annotations

import asyncio

import uvicorn
from ferry_api.bootstrap import running
from ferry_api.http.asgi import asgi_app
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings
from ferry_events.logs import configure_logging

from ferry_demo.agents import agent_tasks
from ferry_demo.seed import DEMO_USERS, DemoSetup, demo_settings, ensure_app, ensure_user, prepare


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


async def seed(runtime: Runtime, setup: DemoSetup) -> None:
    for name, role in DEMO_USERS:
        await ensure_user(runtime, name, role, setup.password)
    await ensure_app(runtime, setup)


async def serve(runtime: Runtime, setup: DemoSetup) -> None:
    """The API and UI until Ctrl-C; the banner once it listens."""
    settings = setup.settings
    server = uvicorn.Server(
        uvicorn.Config(
            asgi_app(runtime),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=False,  # the app believes FERRY_TRUSTED_PROXIES alone (http/asgi.py)
        )
    )
    serving = asyncio.create_task(server.serve())
    # uvicorn tells that it listens by a flag only.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        print(banner(setup), flush=True)
    await serving


async def run_demo() -> None:
    settings = demo_settings()
    setup = prepare(settings)
    async with running(settings) as runtime:
        await seed(runtime, setup)
        tasks = [asyncio.create_task(task(runtime, setup)) for task in agent_tasks()]
        try:
            await serve(runtime, setup)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def cli() -> None:
    configure_logging("demo", Settings().log_level, json=False)
    try:
        asyncio.run(run_demo())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    cli()
