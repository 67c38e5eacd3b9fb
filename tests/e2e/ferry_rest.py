"""Ferry's REST API as its users drive it (httpx over TCP): log in, create users and apps, file
tickets, take actions, and wait for a ticket's state by polling."""

from __future__ import annotations

from typing import Any

import httpx
from processes import wait_until

# States a ticket does not leave without someone acting: waiting past one of them is pointless.
PASSWORDS = {"lead": "lead-password-e2e", "dev": "dev-password-e2e"}
SETTLED = {
    "staging_failed",
    "testing",
    "returned",
    "awaiting_approval",
    "approved",
    "published",
    "publish_failed",
    "cancelled",
}


class Ferry:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=f"{base_url}/api/v1", timeout=30)
        self.tokens: dict[str, str] = {}

    async def close(self) -> None:
        await self.http.aclose()

    async def login(self, username: str, password: str) -> None:
        response = await self.http.post(
            "/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        self.tokens[username] = response.json()["token"]

    async def call(self, user: str, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return await self.http.request(method, path, json=body, headers=headers)

    async def ok(
        self, user: str, method: str, path: str, body: Any = None, status: int = 200
    ) -> Any:
        response = await self.call(user, method, path, body)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json()

    async def add_user(self, admin: str, username: str, role: str, password: str) -> None:
        body = {"username": username, "role": role, "password": password}
        await self.ok(admin, "POST", "/users", body, status=201)
        await self.login(username, password)

    async def submit(
        self,
        user: str,
        app: str,
        ref: str | None = None,
        *,
        version: int | None = None,
        reason: str = "e2e",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"app": app, "reason": reason}
        if version is None:
            body |= {"kind": "deploy", "ref": ref}
        else:
            body |= {"kind": "rollback", "version": version}
        ticket: dict[str, Any] = await self.ok(user, "POST", "/tickets", body, status=201)
        return ticket

    async def act(self, user: str, ticket_id: str, action: str, **body: str) -> dict[str, Any]:
        ticket: dict[str, Any] = await self.ok(
            user, "POST", f"/tickets/{ticket_id}/{action}", body or None
        )
        return ticket

    async def ticket(self, user: str, ticket_id: str) -> dict[str, Any]:
        ticket: dict[str, Any] = await self.ok(user, "GET", f"/tickets/{ticket_id}")
        return ticket

    async def wait_state(
        self, user: str, ticket_id: str, state: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The ticket once it is in `state`; fails at once if it settles in another state."""

        async def reached() -> dict[str, Any] | None:
            ticket = await self.ticket(user, ticket_id)
            if ticket["state"] == state:
                return ticket
            if ticket["state"] in SETTLED:
                raise AssertionError(
                    f"ticket {ticket_id} is {ticket['state']}, not {state}: "
                    f"error={ticket.get('error')!r} hosts={ticket.get('hosts')}"
                )
            return None

        return await wait_until(reached, timeout, f"ticket {ticket_id} to be {state}")

    async def deploy(
        self, author: str, lead: str, app: str, ref: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """submit -> testing -> pass-tests -> approve -> publish -> published."""
        ticket = await self.submit(author, app, ref)
        await self.wait_state(author, ticket["id"], "testing")
        await self.act(author, ticket["id"], "pass-tests")
        await self.act(lead, ticket["id"], "approve")
        await self.act(author, ticket["id"], "publish")
        return await self.wait_state(author, ticket["id"], "published", timeout)


def app_body(name: str, kind: str, url: str, hosts: list[str]) -> dict[str, Any]:
    """A new app's configuration as an admin posts it."""
    return {
        "name": name,
        "source": {"type": kind, "url": url},
        "staging_url": f"https://staging.example.com/{name}/",
        "hosts": hosts,
        "target_path": f"/srv/{name}",
        "keep_releases": 3,
    }


async def as_users(api_url: str, admin_password: str) -> Ferry:
    """A client logged in as `admin`, with a lead `lead` and a developer `dev` it created."""
    ferry = Ferry(api_url)
    await ferry.login("admin", admin_password)
    await ferry.add_user("admin", "lead", "lead", PASSWORDS["lead"])
    await ferry.add_user("admin", "dev", "developer", PASSWORDS["dev"])
    return ferry
