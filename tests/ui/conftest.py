"""Fixtures of the browser tests: a running Ferry and Debian's Chromium driven by Playwright.

Two kinds of Ferry, each a subprocess on a free port with a fresh data directory:
  embedded_ferry     `ferry-demo`: SQLite, the in-process bus and the real agents in-process
  distributed_ferry  `ferry-api serve` on a fresh PostgreSQL database and RabbitMQ vhost, with the
                     stand-in agents of ui_stand_ins.py answering its commands over the real bus
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from ferry_demo.agents import agent_tasks
from ferry_demo.seed import DEMO_APP, DEMO_HOSTS, DEMO_USERS
from ferry_events.signing import generate_key
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)
from ui_ferry import Ferry, create_admin, ferry_process, new_password
from ui_stand_ins import stand_in_agents

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def _demo_runs_agents() -> bool:
    try:
        return bool(agent_tasks())
    except ImportError:  # an agent package not installed
        return False


REAL_AGENTS = _demo_runs_agents()
LAPTOP = ViewportSize(width=1366, height=900)
PHONE = ViewportSize(width=390, height=844)

expect.set_options(timeout=20_000)


@asynccontextmanager
async def demo_ferry(tmp_path: Path) -> AsyncIterator[Ferry]:
    password = new_password()
    env = {"FERRY_DEMO_PASSWORD": password}
    async with ferry_process("demo", env, tmp_path / "ferry") as (url, log):
        yield Ferry(
            url,
            {name: password for name, _ in DEMO_USERS},
            DEMO_APP,
            list(DEMO_HOSTS),
            log,
            agents="real" if REAL_AGENTS else "none",
        )


@asynccontextmanager
async def served_ferry(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Ferry]:
    env = {
        "FERRY_DATABASE_URL": pg_url,
        "FERRY_BROKER_URL": amqp_url,
        "FERRY_SECRET_KEY": secrets.token_urlsafe(48),
        "FERRY_LOG_LEVEL": "WARNING",
        # The stand-in agents all log in as guest, and take commands without checking them.
        "FERRY_SHARED_BROKER_USER": "guest",
        "FERRY_SIGNING_KEY_FILE": str(tmp_path / "api.key"),
    }
    generate_key(tmp_path / "api.key")
    data_dir = tmp_path / "ferry"
    data_dir.mkdir(parents=True)
    passwords = {"admin": new_password(), "lead": new_password(), "dev": new_password()}
    await create_admin(env, data_dir, passwords["admin"])
    hosts = ["web-1", "web-2"]
    async with (
        stand_in_agents(amqp_url, hosts, sync_seconds=[1.5, 3.0]),
        ferry_process("serve", env, data_dir) as (url, log),
    ):
        ferry = Ferry(url, passwords, "shop", hosts, log, agents="stand-in")
        for user, role in (("lead", "lead"), ("dev", "developer")):
            await ferry.call(
                "admin",
                "POST",
                "/users",
                {"username": user, "role": role, "password": passwords[user]},
            )
        await ferry.call(
            "admin",
            "POST",
            "/apps",
            {
                "name": "shop",
                "source": {"type": "git", "url": "https://git.example.com/shop.git"},
                "staging_url": "https://staging.example.com/shop/",
                "hosts": hosts,
                "target_path": "/srv/shop",
            },
        )
        yield ferry


@pytest.fixture
async def embedded_ferry(tmp_path: Path) -> AsyncIterator[Ferry]:
    async with demo_ferry(tmp_path) as running:
        yield running


@pytest.fixture
async def distributed_ferry(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Ferry]:
    async with served_ferry(pg_url, amqp_url, tmp_path) as running:
        yield running


@pytest.fixture
def ferry(embedded_ferry: Ferry) -> Ferry:
    """The Ferry a test logs in to; test_release_flow.py runs against both kinds."""
    return embedded_ferry


def needs_agents(ferry: Ferry) -> None:
    if ferry.agents == "none":
        pytest.skip("the embedded demo runs no agents (ferry_demo.agents.agent_tasks() is empty)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            "the UI tests need Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


class PageProblems:
    """Script errors and CSP violations a page logged: a test fails if it has any."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("pageerror", self._page_error)
        page.on("console", self._console)

    def _page_error(self, error: Error) -> None:
        self.seen.append(f"page error: {error}")

    def _console(self, message: ConsoleMessage) -> None:
        # A 401 or 422 answer is logged as a failed load: the page handles those itself.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.seen.append(f"console: {message.text}")


@pytest.fixture
async def problems() -> AsyncIterator[PageProblems]:
    found = PageProblems()
    yield found
    assert not found.seen, "\n".join(found.seen)


LogIn = Callable[..., Awaitable[Page]]


@pytest.fixture
async def log_in(browser: Browser, ferry: Ferry, problems: PageProblems) -> AsyncIterator[LogIn]:
    """log_in(user) -> a page of a new browser context (its own cookies), logged in by the form."""
    contexts: list[BrowserContext] = []

    async def open_as(user: str, viewport: ViewportSize = LAPTOP) -> Page:
        context = await browser.new_context(viewport=viewport, base_url=ferry.url)
        contexts.append(context)
        page = await context.new_page()
        problems.watch(page)
        await page.goto("/")
        await page.get_by_label("Username").fill(user)
        await page.get_by_label("Password").fill(ferry.passwords[user])
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_test_id("whoami")).to_contain_text(user)
        return page

    yield open_as
    for context in contexts:
        await context.close()


async def screenshot(page: Page, name: str) -> None:
    """A full-page PNG under test-artifacts/ui/ for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(
        path=ARTIFACTS / f"{re.sub(r'[^a-z0-9-]', '-', name)}.png",
        full_page=True,
        animations="disabled",
    )
