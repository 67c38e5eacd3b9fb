"""Ticket submit latency through the real API (PostgreSQL, RabbitMQ, its workers) at 20
concurrent clients, vs a bare FastAPI endpoint doing one asyncpg INSERT, in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI, Request
from ferry_api.bootstrap import running
from ferry_api.commands.accounts import create_user
from ferry_api.http.asgi import asgi_app
from ferry_api.settings import Settings
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS
from pydantic import BaseModel

from bench.backends import database, vhost
from bench.report import Figure

CLIENTS = 20
PASSWORD = "bench-only-correct-horse-battery"
SITE = {
    "name": "site",
    "source": {"type": "git", "url": "https://git.example.com/site.git"},
    "staging_url": "https://staging.example.com/site/",
    "hosts": ["web-1", "web-2"],
    "target_path": "/srv/site",
}
TICKET = {"app": "site", "kind": "deploy", "reason": "bench: ship main", "ref": "main"}


class TicketIn(BaseModel):
    app: str
    kind: str
    reason: str
    ref: str


def bare_app(pool: asyncpg.Pool) -> FastAPI:
    """What any ticket endpoint must at least do: parse the body, one INSERT, answer 201."""
    app = FastAPI()

    @app.post("/api/v1/tickets", status_code=201)
    async def submit(ticket: TicketIn, request: Request) -> dict[str, str]:
        ticket_id: str = await pool.fetchval(
            "INSERT INTO tickets (app, kind, reason, ref, author)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id::text",
            ticket.app,
            ticket.kind,
            ticket.reason,
            ticket.ref,
            request.headers.get("authorization", "")[:16],
        )
        return {"id": ticket_id}

    return app


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free port, in this event loop; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def submit_round(base_url: str, headers: dict[str, str], per_client: int) -> list[float]:
    """CLIENTS clients, each on its own connection, each submitting one ticket after another;
    every request's latency in milliseconds."""

    async def client() -> list[float]:
        latencies = []
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
            for _ in range(per_client):
                start = time.perf_counter()
                response = await http.post("/api/v1/tickets", json=TICKET)
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status_code != 201:
                    raise RuntimeError(f"{base_url}: {response.status_code} {response.text}")
        return latencies

    results = await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return [latency for one in results for latency in one]


@contextlib.asynccontextmanager
async def ferry_api(
    pg_url: str, amqp_url: str, data_dir: Path
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The real API on its own database and vhost, an app configured, a developer logged in."""
    settings = Settings(
        database_url=pg_url,
        broker_url=amqp_url,
        data_dir=data_dir,
        secret_key="bench-only-" + "k" * 40,
        log_level="WARNING",
    )
    sink = await open_bus(amqp_url)  # the staging agent's place: StagingRequested is routable
    await sink.declare_queue("bench-sink", ["#"], EVENTS)
    async with running(settings) as runtime, serving(asgi_app(runtime)) as url:
        await create_user(runtime, "bench-admin", "admin", PASSWORD, by="bench")
        await create_user(runtime, "bench-dev", "developer", PASSWORD, by="bench")
        async with httpx.AsyncClient(base_url=url) as http:
            admin = await login(http, "bench-admin")
            created = await http.post("/api/v1/apps", json=SITE, headers=admin)
            assert created.status_code == 201, created.text
            yield url, await login(http, "bench-dev")
    await sink.close()


async def login(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@contextlib.asynccontextmanager
async def bare_api(pg_url: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    pool = await asyncpg.create_pool(pg_url)
    await pool.execute(
        "CREATE TABLE tickets (id bigserial PRIMARY KEY, app text, kind text, reason text,"
        " ref text, author text, created timestamptz DEFAULT now())"
    )
    async with serving(bare_app(pool)) as url:
        yield url, {"Authorization": "Bearer bare"}
    await pool.close()


def percentile(latencies: list[float], p: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[p - 1]


async def run(scale: float = 1.0, rounds: int = 5) -> list[Figure]:
    """Both servers up at once in this event loop (beside the clients); rounds alternate bare
    and Ferry so load changes on a shared machine hit both alike; one warm-up round each."""
    per_client = max(2, int(25 * scale))
    bare: list[float] = []
    ferry: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ferry-bench-api-") as tmp, vhost() as amqp_url:
        async with database() as ferry_db, database() as bare_db:
            async with ferry_api(ferry_db, amqp_url, Path(tmp)) as (f_url, f_auth):
                async with bare_api(bare_db) as (b_url, b_auth):
                    await submit_round(b_url, b_auth, 2)
                    await submit_round(f_url, f_auth, 2)
                    sides = [(b_url, b_auth, bare), (f_url, f_auth, ferry)]
                    for r in range(rounds):
                        for url, auth, latencies in sides[:: 1 if r % 2 == 0 else -1]:
                            latencies.extend(await submit_round(url, auth, per_client))
    note = f"POST /tickets (deploy), {CLIENTS} clients, {len(ferry)} requests each side"
    return [
        Figure(
            "api: submit ticket p50 (20 clients)",
            percentile(ferry, 50),
            percentile(bare, 50),
            "ms",
            3.0,
            higher_is_better=False,
            note=note,
        ),
        Figure(
            "api: submit ticket p99 (20 clients)",
            percentile(ferry, 99),
            percentile(bare, 99),
            "ms",
            3.0,
            higher_is_better=False,
        ),
    ]
