"""Forms in a real browser: a wrong password, the API's validation errors shown by the field,
API tokens shown once and revoked, a new user, and logging out. Against the embedded demo:
nothing here needs an agent."""

from __future__ import annotations

import re

import httpx
from conftest import LogIn, PageProblems, screenshot
from playwright.async_api import Browser, expect
from ui_ferry import Ferry


async def test_a_wrong_password_is_told_and_nothing_else_shows(
    browser: Browser, ferry: Ferry, problems: PageProblems
) -> None:
    context = await browser.new_context(base_url=ferry.url)
    page = await context.new_page()
    problems.watch(page)
    await page.goto("/#/audit")
    await page.get_by_label("Username").fill("dev")
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    await expect(page.get_by_test_id("whoami")).to_have_count(0)
    await screenshot(page, "login-failed")
    await context.close()


async def test_validation_errors_show_by_their_field(log_in: LogIn, ferry: Ferry) -> None:
    dev = await log_in("dev")
    await dev.goto("/#/tickets/new")
    await dev.get_by_label("App").select_option(ferry.app)
    await dev.get_by_label(re.compile("ref|revision", re.I)).fill("-bad ref")
    await dev.get_by_role("button", name="Submit ticket").click()
    await expect(dev.locator("#ticket-ref-error")).to_contain_text("ref may hold only")
    await expect(dev.locator("#ticket-reason-error")).to_contain_text("at least 1 character")
    await expect(dev.locator("#ticket-ref")).to_have_class(re.compile("is-invalid"))
    await expect(dev).to_have_url(re.compile("#/tickets/new$"))
    await screenshot(dev, "new-ticket-invalid")


async def test_an_api_token_is_shown_once_works_and_can_be_revoked(
    log_in: LogIn, ferry: Ferry
) -> None:
    dev = await log_in("dev")
    await dev.get_by_test_id("whoami").click()
    await dev.get_by_label("What the token is for").fill("CI <deploys>")
    await dev.get_by_role("button", name="Create token").click()
    shown = dev.get_by_test_id("new-token")
    await expect(shown).to_contain_text("shown only this once")
    token = await shown.get_by_label("The new token").input_value()
    await screenshot(dev, "tokens")
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=ferry.url) as http:
        assert (await http.get("/api/v1/me", headers=bearer)).json()["username"] == "dev"
        await shown.get_by_role("button", name="Done, hide it").click()
        await expect(shown).to_have_count(0)
        row = dev.locator(".tokens-table tbody tr").filter(has_text="CI <deploys>")
        await row.get_by_role("button", name="Revoke").click()
        await dev.get_by_role("dialog").get_by_role("button", name="Yes, revoke").click()
        await expect(row).to_contain_text("Revoked")
        assert (await http.get("/api/v1/me", headers=bearer)).status_code == 401


async def test_an_admin_adds_a_user_and_a_developer_sees_no_admin_page(
    log_in: LogIn, ferry: Ferry
) -> None:
    admin = await log_in("admin")
    await admin.get_by_role("link", name="Users").click()
    await admin.get_by_role("button", name="New user").click()
    dialog = admin.get_by_role("dialog")
    await dialog.get_by_label("Username").fill("qa")
    await dialog.get_by_label("Role").select_option("lead")
    await dialog.get_by_label("Password").fill("short")
    await dialog.get_by_role("button", name="Create user").click()
    await expect(dialog.locator("#user-password-error")).to_contain_text("at least 8")
    await dialog.get_by_label("Password").fill("long-enough-password")
    await dialog.get_by_role("button", name="Create user").click()
    await expect(admin.locator(".users-table tr[data-user='qa']")).to_be_visible()
    await expect(admin.get_by_label("Role of qa")).to_have_value("lead")
    await screenshot(admin, "users")

    dev = await log_in("dev")
    await expect(dev.get_by_role("link", name="Users")).to_have_count(0)
    await dev.goto("/#/admin/users")
    await expect(dev.locator("main")).to_contain_text("Only admins manage users")


async def test_logging_out_ends_the_session(log_in: LogIn) -> None:
    dev = await log_in("dev")
    await dev.get_by_role("button", name="Log out").click()
    await expect(dev.get_by_role("button", name="Log in")).to_be_visible()
    await expect(dev.get_by_role("status")).to_contain_text("logged out")
    status = await dev.evaluate("fetch('/api/v1/me').then((r) => r.status)")
    assert status == 401
    assert await dev.evaluate("document.cookie") == ""


async def test_an_admin_changes_an_app_and_is_told_what_is_wrong(
    log_in: LogIn, ferry: Ferry
) -> None:
    admin = await log_in("admin")
    await admin.get_by_role("link", name="Apps").click()
    await admin.get_by_role("button", name="New app").click()
    dialog = admin.get_by_role("dialog")
    await dialog.get_by_label("Name").fill("Not A Name")
    await dialog.get_by_label("Source repository URL").fill("https://git.example.com/x.git")
    await dialog.get_by_role("button", name="Create app").click()
    await expect(dialog.locator("#app-name-error")).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)

    await admin.get_by_role("link", name=ferry.app, exact=True).click()
    await admin.get_by_role("button", name="Edit").click()
    await admin.get_by_label("Staging site URL").fill("javascript:alert(1)")
    await admin.get_by_role("button", name="Save changes").click()
    await expect(admin.locator("#app-staging_url-error")).to_contain_text("http")
    await admin.get_by_label("Staging site URL").fill("https://staging.example.com/demo/")
    await admin.get_by_role("button", name="Save changes").click()
    link = admin.get_by_role("link", name="https://staging.example.com/demo/")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    await screenshot(admin, "app-config")

    dev = await log_in("dev")
    await dev.goto(f"/#/apps/{ferry.app}")
    await expect(dev.get_by_role("heading", name="Configuration")).to_be_visible()
    await expect(dev.get_by_role("button", name="Edit")).to_have_count(0)
