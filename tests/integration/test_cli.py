"""The `ferry` command line against the real API served on a local port (Postgres, RabbitMQ,
its workers): login keeps a private token, tickets are filed, listed, shown and followed live, and
a refused action prints the API's own message and fails; `ferry audit` names `ferry-api audit`."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_client import Api, over_tcp, password_of
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@dataclass
class Cli:
    url: str
    config_home: Path

    async def run(self, *args: str, **env: str) -> tuple[int, str, str]:
        """`ferry …` as its own process: (exit code, stdout, stderr)."""
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FERRY_")},
            "XDG_CONFIG_HOME": str(self.config_home),
            "COLUMNS": "200",
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ferry_cli",
            *args,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        code, out, err = await self.run(*args, "--json")
        assert code == 0, out + err
        return json.loads(out)

    async def login(self, username: str) -> None:
        code, out, err = await self.run(
            "login", "--url", self.url, "-u", username, "-p", password_of(username)
        )
        assert code == 0, out + err


@pytest.fixture
async def ferry(api: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        await stack.add_app("shop")
        yield stack


@pytest.fixture
async def cli(ferry: Ferry, tmp_path: Path) -> AsyncIterator[Cli]:
    async with over_tcp(ferry.api.app) as url:
        yield Cli(url, tmp_path / "config")


async def test_login_keeps_a_private_token_and_a_wrong_password_is_refused(
    cli: Cli, ferry: Ferry
) -> None:
    wrong = {"username": "dev", "password": "wrong-password"}
    code, _, err = await cli.run(
        "login", "--url", cli.url, "-u", wrong["username"], "-p", wrong["password"]
    )
    assert code != 0
    refused = await ferry.http.post("/api/v1/auth/login", json=wrong)
    assert refused.status_code == 401
    assert refused.json()["message"] in " ".join(err.split()), err
    config = cli.config_home / "ferry" / "config.toml"
    assert not config.exists()

    await cli.login("dev")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f'url = "{cli.url}"' in config.read_text()
    me = await cli.json("tickets", "list")  # authenticated from the config file alone
    assert me["tickets"] == []


async def test_submit_list_show_and_a_refused_action(cli: Cli, ferry: Ferry) -> None:
    await cli.login("dev")
    submitted = await cli.json("tickets", "submit", "shop", "--ref", "main", "--reason", "new cart")
    ticket_id = submitted["id"]
    assert (submitted["state"], submitted["author"], submitted["ref"]) == (
        "staging_pending",
        "dev",
        "main",
    )

    listed = await cli.json("tickets", "list", "--app", "shop")
    assert [t["id"] for t in listed["tickets"]] == [ticket_id]
    shown = await cli.json("tickets", "show", ticket_id)
    assert shown == await ferry.ticket(ticket_id, user="dev")

    code, out, err = await cli.run("tickets", "show", ticket_id)
    assert code == 0 and "staging_pending" in out and "new cart" in out

    # The author may not approve, and not while staging: the API says why; nothing changes.
    before = await ferry.runtime.store.last_position()
    code, out, err = await cli.run("tickets", "approve", ticket_id)
    assert code != 0
    refused = await ferry.post("dev", f"/tickets/{ticket_id}/approve")
    assert refused.status_code in (403, 409)
    assert refused.json()["message"] in " ".join(err.split()), err
    assert await ferry.runtime.store.last_position() == before

    code, out, err = await cli.run("tickets", "show", "no-such-ticket")
    assert code != 0 and "not_found" in err


async def test_watch_follows_the_hosts_until_the_ticket_is_published(
    cli: Cli, ferry: Ferry
) -> None:
    await cli.login("dev")
    ticket_id = await ferry.to_state("publishing", "shop")
    watching = asyncio.ensure_future(cli.run("tickets", "watch", ticket_id))
    await asyncio.sleep(2)  # the watcher is connected to the event stream
    assert not watching.done()
    await ferry.tag(ticket_id)
    for host in ("web-1", "web-2"):
        await ferry.sync(ticket_id, host)
    code, out, err = await asyncio.wait_for(watching, timeout=30)
    assert code == 0, out + err
    assert "published" in out
    assert "web-1" in out and "web-2" in out and "completed" in out


async def test_admin_commands_apps_users_tokens_and_hosts(cli: Cli) -> None:
    await cli.login("admin")
    created = await cli.json(
        "apps", "create", "blog", "--source", "https://git.example.com/blog.git", "--host", "web-9"
    )
    assert (created["name"], created["hosts"]) == ("blog", ["web-9"])
    assert {app["name"] for app in await cli.json("apps", "list")} == {"shop", "blog"}
    shown = await cli.json("apps", "show", "blog")
    assert (shown["app"]["source"]["url"], shown["releases"]["releases"]) == (
        "https://git.example.com/blog.git",
        [],
    )
    assert "web-9" in {host["host"] for host in await cli.json("hosts")}

    user = await cli.json(
        "users", "create", "erin", "--role", "lead", "--password", "pw-erin-long-1"
    )
    assert (user["username"], user["role"]) == ("erin", "lead")
    assert "erin" in {u["username"] for u in await cli.json("users", "list")}

    token = await cli.json("tokens", "create", "ci")
    [listed] = await cli.json("tokens", "list")
    assert (listed["id"], listed["name"], listed["revoked"]) == (token["id"], "ci", False)
    code, out, err = await cli.run("tickets", "list", "--json", FERRY_TOKEN=token["token"])
    assert code == 0, out + err
    code, out, err = await cli.run("tokens", "revoke", token["id"])
    assert code == 0, out + err
    code, out, err = await cli.run("tickets", "list", FERRY_TOKEN=token["token"])
    assert code != 0 and "unauthorized" in err.lower(), out + err


async def test_audit_points_to_ferry_api_audit(cli: Cli) -> None:
    # The audit reads the database directly, so it lives where ferry-api is installed.
    code, _, err = await cli.run("audit", "verify", "--database-url", "sqlite:///nowhere.db")
    assert code == 1
    assert "ferry-api audit verify|replay|host|export" in err
