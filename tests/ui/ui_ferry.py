"""A real Ferry for the browser tests: `ferry-api` started as a subprocess on a free port with
a fresh data directory, and an HTTP client to drive what a test does not do through the UI."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WAIT = 45.0  # seconds one step of a flow may take (staging, a publish) before a test fails


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ferry:
    """A running Ferry: where it listens, its users' passwords, the app and hosts to release."""

    url: str
    passwords: dict[str, str]
    app: str
    hosts: list[str]
    log: Path
    agents: str  # "real" (in the demo), "stand-in" (ui_stand_ins.py) or "none"
    _tokens: dict[str, str] = field(default_factory=dict)

    async def token(self, user: str) -> str:
        if user not in self._tokens:
            async with httpx.AsyncClient(base_url=self.url) as http:
                answer = await http.post(
                    "/api/v1/auth/login", json={"username": user, "password": self.passwords[user]}
                )
                answer.raise_for_status()
                self._tokens[user] = answer.json()["token"]
        return self._tokens[user]

    async def call(self, user: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {await self.token(user)}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            answer = await http.request(method, f"/api/v1{path}", json=body, headers=headers)
        assert answer.is_success, f"{method} {path} as {user}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    async def wait_state(self, ticket_id: str, state: str) -> dict[str, Any]:
        ticket: dict[str, Any] = {}
        try:
            async with asyncio.timeout(WAIT):
                while ticket.get("state") != state:
                    ticket = await self.call("admin", "GET", f"/tickets/{ticket_id}")
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(
                f"ticket {ticket_id} stuck in {ticket.get('state')}, not {state}\n{self.log_tail()}"
            ) from None
        return ticket

    async def release(self, author: str, lead: str, reason: str) -> dict[str, Any]:
        """A deploy driven through the API from submit to published."""
        ticket = await self.call(
            author, "POST", "/tickets", {"app": self.app, "ref": "main", "reason": reason}
        )
        await self.wait_state(ticket["id"], "testing")
        await self.call(author, "POST", f"/tickets/{ticket['id']}/pass-tests")
        await self.call(lead, "POST", f"/tickets/{ticket['id']}/approve")
        await self.call(author, "POST", f"/tickets/{ticket['id']}/publish")
        return await self.wait_state(ticket["id"], "published")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@asynccontextmanager
async def ferry_process(
    command: str, env: Mapping[str, str], data_dir: Path
) -> AsyncIterator[tuple[str, Path]]:
    """`ferry-api <command>` (`ferry-demo` for "demo") until the block ends; yields its base URL
    once it answers."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"ferry-api-{command}.log"
    full_env = {
        **os.environ,
        **env,
        "FERRY_DATA_DIR": str(data_dir),
        "FERRY_PORT": str(port),
        "FERRY_HOST": "127.0.0.1",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            _argv(command),
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _until_ready(url, process, log)
        yield url, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _argv(command: str) -> list[str]:
    if command == "demo":
        return [sys.executable, "-m", "ferry_demo"]
    return [sys.executable, "-m", "ferry_api.main", command]


async def _until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(
                    f"ferry-api exited ({process.returncode}):\n"
                    f"{log.read_text(errors='replace')[-3000:]}"
                )
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(
        f"ferry-api did not become ready:\n{log.read_text(errors='replace')[-3000:]}"
    )


async def create_admin(env: Mapping[str, str], data_dir: Path, password: str) -> None:
    full_env = {
        **os.environ,
        **env,
        "FERRY_DATA_DIR": str(data_dir),
        "FERRY_ADMIN_PASSWORD": password,
    }
    made = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry_api.main",
        "create-admin",
        "admin",
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await made.communicate()
    assert made.returncode == 0, output.decode(errors="replace")


def new_password() -> str:
    return "pw-" + secrets.token_urlsafe(12)
