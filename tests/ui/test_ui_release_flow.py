"""The release flow in a real browser: a developer files a ticket and watches it staged, a lead
approves it from another browser, the developer publishes it and watches every host go live
without reloading, then requests a rollback; a reason with markup stays text. Once against the
embedded demo (its real agents), once against PostgreSQL and RabbitMQ (stand-in agents)."""

from __future__ import annotations

import re

import pytest
from conftest import LogIn, needs_agents, screenshot
from playwright.async_api import Locator, Page, expect
from ui_ferry import WAIT, Ferry


@pytest.fixture(params=["embedded", "distributed"])
def ferry(request: pytest.FixtureRequest) -> Ferry:
    running: Ferry = request.getfixturevalue(f"{request.param}_ferry")
    needs_agents(running)
    return running


HOSTILE = "Ship the new banner <script>window.__hacked = 1</script><img src=x onerror=alert(1)>"


def state_of(page: Page) -> Locator:
    return page.get_by_test_id("ticket-state").locator("[data-state]")


async def mark_page(page: Page) -> None:
    """A flag that a reload would wipe: its survival proves updates came without one."""
    await page.evaluate("window.__notReloaded = true")


async def still_same_page(page: Page) -> bool:
    return bool(await page.evaluate("window.__notReloaded === true"))


async def file_ticket(page: Page, ferry: Ferry, reason: str) -> str:
    await page.get_by_role("link", name="New ticket").click()
    await page.get_by_label("App").select_option(ferry.app)
    await page.get_by_label(re.compile("ref|revision", re.I)).fill("main")
    await page.get_by_label("Reason").fill(reason)
    await page.get_by_role("button", name="Submit ticket").click()
    await expect(page).to_have_url(re.compile(r"#/tickets/[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


async def act(page: Page, action: str, comment: str = "") -> None:
    await page.locator(f"[data-action='{action}']").click()
    dialog = page.get_by_role("dialog")
    if comment:
        await dialog.get_by_role("textbox").first.fill(comment)
    await dialog.locator(f"[data-confirm='{action}']").click()
    await expect(dialog).to_have_count(0)


async def test_ticket_from_submit_to_published_and_rollback(log_in: LogIn, ferry: Ferry) -> None:
    dev = await log_in("dev")
    await expect(dev.get_by_test_id("whoami")).to_contain_text("developer")
    shot = f"{ferry.agents}-" if ferry.agents != "real" else ""
    await screenshot(dev, f"{shot}dashboard-empty-dev")

    ticket_id = await file_ticket(dev, ferry, HOSTILE)
    await mark_page(dev)
    reason = dev.get_by_test_id("reason")
    await expect(reason).to_have_text(HOSTILE)  # shown as the text it is, not as markup
    assert await reason.locator("script, img").count() == 0
    assert await dev.evaluate("window.__hacked") is None

    await expect(state_of(dev)).to_have_attribute("data-state", "testing", timeout=WAIT * 1000)
    await expect(dev.locator("[data-action='pass-tests']")).to_be_visible()
    await expect(dev.locator("[data-action='approve']")).to_have_count(0)
    await expect(dev.locator(".timeline")).to_contain_text("staged commit")
    await screenshot(dev, f"{shot}ticket-testing")

    await act(dev, "pass-tests", "Checked on staging: the banner shows.")
    await expect(state_of(dev)).to_have_attribute("data-state", "awaiting_approval")
    await expect(dev.locator("[data-action='approve']")).to_have_count(0)

    lead = await log_in("lead")
    waiting = lead.locator(".needs-me").locator(f"tr[data-ticket='{ticket_id}']")
    await expect(waiting).to_contain_text("Awaits your approval")
    await screenshot(lead, f"{shot}dashboard-lead")
    await waiting.get_by_role("link", name=re.compile("#")).click()
    await act(lead, "approve", "Looks good <b>to me</b>")
    await expect(state_of(lead)).to_have_attribute("data-state", "approved")
    await expect(lead.locator(".timeline .said").first).to_have_text("Looks good <b>to me</b>")

    # The developer's page follows along by itself.
    await expect(state_of(dev)).to_have_attribute("data-state", "approved")
    await dev.locator("[data-action='publish']").click()
    dialog = dev.get_by_role("dialog")
    await expect(dialog).to_contain_text("sync it to every host")
    await dialog.locator("[data-confirm='publish']").click()
    rows = dev.locator(".host-table tbody tr")
    await expect(rows).to_have_count(len(ferry.hosts), timeout=WAIT * 1000)
    await screenshot(dev, f"{shot}ticket-publishing")
    for host in ferry.hosts:
        row = dev.locator(f".host-table tr[data-host='{host}']")
        await expect(row).to_have_attribute("data-state", "completed", timeout=WAIT * 1000)
        await expect(row).to_have_class(re.compile("table-success"))
    await expect(state_of(dev)).to_have_attribute("data-state", "published")
    assert await still_same_page(dev), "the ticket page reloaded instead of updating live"
    await screenshot(dev, f"{shot}ticket-published")

    # A second release, through the API, so that there is an older one to roll back to.
    second = await ferry.release("dev", "lead", "Second release")
    await dev.goto(f"/#/apps/{ferry.app}")
    current = dev.locator(f".release-table tr[data-version='{second['version']}']")
    await expect(current).to_contain_text("current")
    await expect(current.locator("[data-rollback]")).to_have_count(0)
    await screenshot(dev, f"{shot}app-page")
    first_version = second["version"] - 1
    await dev.locator(f"[data-rollback='{first_version}']").click()
    dialog = dev.get_by_role("dialog")
    await dialog.get_by_label("Reason").fill("The second release broke checkout")
    await dialog.locator("[data-confirm='rollback']").click()
    await expect(state_of(dev)).to_have_attribute("data-state", "awaiting_approval")
    await expect(dev.get_by_role("heading", level=1)).to_contain_text("Rollback")
    await expect(dev.locator(".timeline")).to_contain_text(f"release {first_version}")
    await expect(dev.locator("[data-action='approve']")).to_have_count(0)
    await expect(dev.locator("[data-action='cancel']")).to_be_visible()
    await screenshot(dev, f"{shot}ticket-rollback")
