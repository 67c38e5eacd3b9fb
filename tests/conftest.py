"""Fixtures that give each test its own real PostgreSQL database, RabbitMQ vhost and directories.

PostgreSQL and RabbitMQ must be running (`.ci/run` starts them). Admin endpoints can be moved with
FERRY_TEST_PG_ADMIN_URL and FERRY_TEST_AMQP_HOST.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

PG_ADMIN_URL = os.environ.get(
    "FERRY_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_HOST = os.environ.get("FERRY_TEST_AMQP_HOST", "127.0.0.1:5672")


def fresh_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_database() -> str:
    name = fresh_name("ferry_test")
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A brand-new, empty PostgreSQL database, dropped afterwards."""
    url = await create_database()
    yield url
    await drop_database(url)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A brand-new RabbitMQ vhost for this test, deleted afterwards."""
    vhost = fresh_name("ferry-test")
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'ferry.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each contract test runs once per store backend."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ferry.db'}"
    else:
        url = await create_database()
        yield url
        await drop_database(url)


@pytest.fixture(params=["memory", "rabbitmq"])
def bus_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each contract test runs once per bus backend."""
    if request.param == "memory":
        yield "memory://"
    else:
        yield request.getfixturevalue("amqp_url")


# Folders whose session ends with one line `<folder>: tried N, held M`: how many of their tests
# ran (not skipped) and how many of those passed; tests added there later count too.
SUMMARISED = ("security", "faults")
_summary_reports: dict[str, dict[str, list[pytest.TestReport]]] = {f: {} for f in SUMMARISED}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path, tests = Path(str(report.fspath)).resolve(), Path(__file__).resolve().parent
    folder = path.relative_to(tests).parts if path.is_relative_to(tests) else ()
    if len(folder) > 1 and folder[0] in _summary_reports:
        _summary_reports[folder[0]].setdefault(report.nodeid, []).append(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for folder, by_test in _summary_reports.items():
        if not by_test:
            continue
        tried = [reports for reports in by_test.values() if not any(r.skipped for r in reports)]
        held = [
            reports
            for reports in tried
            if all(r.passed for r in reports) and any(r.when == "call" for r in reports)
        ]
        terminalreporter.write_line(f"{folder}: tried {len(tried)}, held {len(held)}")
