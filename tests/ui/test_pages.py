"""The pages ops and phones see, in a real browser against the embedded demo: hosts with their
live versions, the audit log with its hash-chain verdict and filters, a ticket on a phone."""

from __future__ import annotations

from conftest import PHONE, LogIn, needs_agents, screenshot
from playwright.async_api import expect
from ui_ferry import Ferry


async def test_pages_on_a_phone_and_for_ops(log_in: LogIn, ferry: Ferry) -> None:
    needs_agents(ferry)
    released = await ferry.release("dev", "lead", "A release to look at")
    admin = await log_in("admin")
    await admin.goto("/#/hosts")
    for host in ferry.hosts:
        row = admin.locator(f".hosts-table tr[data-host='{host}']")
        await expect(row).to_have_attribute("data-online", "true")
        # The page polls: the agents' next heartbeats bring the new release in.
        live = row.locator(f"[data-app='{ferry.app}']")
        await expect(live).to_have_attribute("data-current", str(released["version"]))
        await expect(live).to_have_attribute("data-drift", "false")
    await screenshot(admin, "hosts")

    await admin.goto("/#/audit")
    chain = admin.get_by_test_id("chain")
    await expect(chain).to_have_attribute("data-ok", "true")
    await expect(chain).to_contain_text("intact")
    await admin.get_by_label("Type").select_option("ticket.approved")
    await expect(admin.locator(".audit-table tbody tr")).to_have_count(1)
    await expect(admin.locator(".audit-table")).to_contain_text("lead")
    await screenshot(admin, "audit")

    phone = await log_in("dev", viewport=PHONE)
    await expect(phone.get_by_role("button", name="Menu")).to_be_visible()
    await expect(phone.locator(".ticket-table")).to_contain_text(ferry.app)
    await screenshot(phone, "phone-dashboard")
    await phone.goto(f"/#/tickets/{released['id']}")
    state = phone.get_by_test_id("ticket-state").locator("[data-state]")
    await expect(state).to_have_attribute("data-state", "published")
    await screenshot(phone, "phone-ticket")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the ticket page scrolls sideways on a phone ({width}px)"
