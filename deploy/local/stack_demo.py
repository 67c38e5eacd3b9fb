"""`make up`'s demo data, as `make run` has it: users admin, lead and dev sharing one password,
an app `demo` whose source is a local git repository (branch main), hosts demo-1 and demo-2.
Made through the REST API as an admin would; every step is idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
from stack_settings import DEMO_APP, HOSTS, Stack

USERS = (("admin", "admin"), ("lead", "lead"), ("dev", "developer"))
# The site `make run` releases (services/api's demo), copied: the stack never imports the API.
SITE = {
    "index.html": "<!doctype html>\n<title>Ferry demo</title>\n<link rel=stylesheet "
    "href=style.css>\n<h1>Hello from release <span id=v>?</span></h1>\n<script src=app.js>"
    "</script>\n",
    "style.css": "body { font-family: sans-serif; margin: 3em; }\n",
    "app.js": "document.getElementById('v').textContent = 'one';\n",
    "README.md": "A tiny site that Ferry's demo releases. Change it, commit, file a ticket.\n",
}


class SeedFailed(Exception):
    """The API refused a step of the demo data; the message says which."""


def _git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=Ferry demo", "-c", "user.email=demo@ferry.invalid"]
    subprocess.run(
        ["git", "-C", str(repo), *identity, *args], check=True, capture_output=True, timeout=60
    )


def make_source_repo(stack: Stack) -> Path:
    """A git repository with a few web files on branch `main` (kept if it exists)."""
    repo = stack.source_repo
    if (repo / ".git").exists():
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    for name, text in SITE.items():
        (repo / name).write_text(text)
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "--message=First version of the demo site")
    return repo


class Admin:
    """An admin's session on the REST API."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=f"{api_url}/api/v1", timeout=30)

    async def token(self, username: str, password: str) -> str | None:
        body = {"username": username, "password": password}
        response = await self.http.post("/auth/login", json=body)
        return str(response.json()["token"]) if response.status_code == 200 else None

    async def login(self, password: str) -> bool:
        token = await self.token("admin", password)
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        return token is not None

    async def call(self, method: str, path: str, body: Any, ok: tuple[int, ...]) -> int:
        response = await self.http.request(method, path, json=body)
        if response.status_code not in ok:
            raise SeedFailed(f"{method} /api/v1{path}: {response.status_code} {response.text}")
        return response.status_code


async def seed(stack: Stack, password: str, earlier: str | None) -> None:
    """Users and the demo app; `earlier` is the password of a previous start, if it differs."""
    admin = Admin(stack.api_url)
    try:
        await log_in_admin(admin, password, earlier)
        for username, role in USERS[1:]:
            await ensure_user(admin, username, role, password)
        await ensure_app(admin, stack, make_source_repo(stack))
    finally:
        await admin.http.aclose()


async def log_in_admin(admin: Admin, password: str, earlier: str | None) -> None:
    """Log in as `admin` (made by `ferry-api create-admin`); a changed FERRY_DEMO_PASSWORD
    replaces the earlier one, which ends that session: log in again."""
    if await admin.login(password):
        return
    if not (earlier and await admin.login(earlier)):
        raise SeedFailed(
            "admin's password is neither FERRY_DEMO_PASSWORD nor the kept one; "
            "choose a fresh FERRY_STACK_DATABASE"
        )
    await admin.call("PATCH", "/users/admin", {"password": password}, ok=(200,))
    if not await admin.login(password):
        raise SeedFailed("admin cannot log in with the password just set")


async def ensure_user(admin: Admin, username: str, role: str, password: str) -> None:
    body = {"username": username, "role": role, "password": password}
    if await admin.call("POST", "/users", body, ok=(201, 409)) == 201:
        return
    if not await admin.token(username, password):  # a change would end their sessions
        change = {"password": password, "disabled": False}
        await admin.call("PATCH", f"/users/{username}", change, ok=(200,))


async def ensure_app(admin: Admin, stack: Stack, source: Path) -> None:
    config = {
        "source": {"type": "git", "url": source.as_uri()},
        "hosts": list(HOSTS),
        "target_path": str(stack.root / "hosts"),
    }
    body = {"name": DEMO_APP, "excludes": [".git"], **config}
    if await admin.call("POST", "/apps", body, ok=(201, 409)) == 409:
        # The state directory may have moved since the app was made.
        await admin.call("PATCH", f"/apps/{DEMO_APP}", config, ok=(200,))
