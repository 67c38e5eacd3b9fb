"""Auth, users and roles over HTTP against the real API (PostgreSQL, RabbitMQ): logins, session
expiry, API tokens and their revocation, disabled accounts, roles, the audit trail of account
changes, the create-admin command and the refusal to serve with a weak secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from api_client import SECRET_KEY, Api, password_of
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

PUBLIC = {"/api/v1/auth/login", "/healthz", "/readyz"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_with_the_right_password_gives_an_expiring_session(api: Api) -> None:
    await api.user("dev", "developer")
    response = await api.http.post(
        "/api/v1/auth/login", json={"username": "dev", "password": password_of("dev")}
    )
    assert response.status_code == 200, response.text
    session = response.json()
    expires = datetime.fromisoformat(session["expires_at"])
    minutes = api.runtime.settings.token_minutes
    assert abs(expires - datetime.now(UTC) - timedelta(minutes=minutes)) < timedelta(minutes=1)
    assert session["user"]["username"] == "dev" and session["user"]["role"] == "developer"
    me = await api.http.get("/api/v1/me", headers=bearer(session["token"]))
    assert me.status_code == 200 and me.json()["username"] == "dev"


async def test_wrong_password_or_unknown_user_is_refused_alike(api: Api) -> None:
    await api.user("dev", "developer")
    for username, password in (("dev", "not-the-password"), ("nobody", "whatever-it-is")):
        response = await api.http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 401, response.text
        assert response.json() == {
            "error": "unauthorized",
            "message": "wrong username or password, or the account is disabled",
        }


async def test_a_disabled_user_is_locked_out_at_once_and_can_be_let_back(api: Api) -> None:
    admin = await api.user("admin", "admin")
    dev = await api.user("dev", "developer")
    script = (await api.http.post("/api/v1/tokens", json={"name": "ci"}, headers=dev)).json()

    disabled = await api.http.patch("/api/v1/users/dev", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (await api.http.get("/api/v1/me", headers=dev)).status_code == 401
    assert (await api.http.get("/api/v1/me", headers=bearer(script["token"]))).status_code == 401
    login = await api.http.post(
        "/api/v1/auth/login", json={"username": "dev", "password": password_of("dev")}
    )
    assert login.status_code == 401

    enabled = await api.http.patch("/api/v1/users/dev", json={"disabled": False}, headers=admin)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    fresh = await api.login("dev")
    assert (await api.http.get("/api/v1/me", headers=fresh)).status_code == 200
    # Sessions from before the lock-out stay void; the API token is valid again.
    assert (await api.http.get("/api/v1/me", headers=dev)).status_code == 401
    assert (await api.http.get("/api/v1/me", headers=bearer(script["token"]))).status_code == 200


def api_routes(routes: Sequence[BaseRoute]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as one entry)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


async def test_every_route_but_login_and_probes_needs_a_valid_token(api: Api) -> None:
    routes = api_routes(api.app.routes)
    operations = [m for item in api.app.openapi()["paths"].values() for m in item]
    assert len(routes) > 15 and sum(len(r.methods or ()) for r in routes) == len(operations)
    forged = jwt.encode(
        {
            "sub": "admin",
            "sv": 0,
            "aud": "ferry-api",
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        "another-key-" + "x" * 40,
        algorithm="HS256",
    )
    checked = 0
    for route in routes:
        if route.path in PUBLIC:
            continue
        path = route.path.replace("{", "").replace("}", "")  # {app} -> app: a valid name
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            for headers in ({}, bearer("garbage"), bearer(forged), bearer("ferry_unknown")):
                response = await api.http.request(method, path, headers=headers)
                assert response.status_code == 401, (method, route.path, headers, response.text)
                assert set(response.json()) == {"error", "message"}
                assert response.headers["www-authenticate"] == "Bearer"
                checked += 1
    assert checked >= 4 * 15
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await api.http.get(path)).status_code == 200, path


async def test_an_expired_session_is_refused(api: Api) -> None:
    await api.user("dev", "developer")
    user = await api.runtime.store.get("users", "dev")
    assert user is not None
    claims = {
        "sub": "dev",
        "sv": user["session_version"],
        "sid": "a-session-id",  # what a logout would end; a token without one is refused
        "aud": "ferry-api",
        "iat": datetime.now(UTC) - timedelta(hours=2),
        "exp": datetime.now(UTC) - timedelta(seconds=1),
    }
    expired = jwt.encode(claims, SECRET_KEY, algorithm="HS256")
    response = await api.http.get("/api/v1/me", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["message"] == "session expired: log in again"
    valid = jwt.encode(
        {**claims, "exp": datetime.now(UTC) + timedelta(minutes=5)}, SECRET_KEY, algorithm="HS256"
    )
    assert (await api.http.get("/api/v1/me", headers=bearer(valid))).status_code == 200
    fresh = {**claims, "exp": datetime.now(UTC) + timedelta(minutes=5)}
    del fresh["sid"]
    without_sid = jwt.encode(fresh, SECRET_KEY, algorithm="HS256")
    assert (await api.http.get("/api/v1/me", headers=bearer(without_sid))).status_code == 401
    unsigned = jwt.encode(
        {**claims, "exp": datetime.now(UTC) + timedelta(minutes=5)}, key=None, algorithm="none"
    )
    assert (await api.http.get("/api/v1/me", headers=bearer(unsigned))).status_code == 401


async def test_a_session_lasts_token_minutes(api: Api) -> None:
    api.runtime.settings.token_minutes = 0  # expires the moment it is issued
    await api.user("admin", "admin")  # logs in
    response = await api.http.get("/api/v1/me", headers=api.sessions["admin"])
    assert response.status_code == 401 and "expired" in response.json()["message"]


async def test_an_api_token_works_until_revoked_and_stops_at_once(api: Api) -> None:
    dev = await api.user("dev", "developer")
    other = await api.user("dev2", "developer")
    created = await api.http.post("/api/v1/tokens", json={"name": "deploy script"}, headers=dev)
    assert created.status_code == 201, created.text
    token = created.json()
    assert token["token"].startswith("ferry_") and token["name"] == "deploy script"
    me = await api.http.get("/api/v1/me", headers=bearer(token["token"]))
    assert me.status_code == 200 and me.json()["username"] == "dev"

    listed = (await api.http.get("/api/v1/tokens", headers=dev)).json()
    assert [t["id"] for t in listed] == [token["id"]] and "token" not in listed[0]
    assert (await api.http.get("/api/v1/tokens", headers=other)).json() == []
    digests = await api.runtime.store.find("api_tokens")
    assert token["token"] not in str(digests) and token["token"] not in str(await api.events())

    foreign = await api.http.delete(f"/api/v1/tokens/{token['id']}", headers=other)
    assert foreign.status_code == 404
    revoked = await api.http.delete(f"/api/v1/tokens/{token['id']}", headers=dev)
    assert revoked.status_code == 204
    refused = await api.http.get("/api/v1/me", headers=bearer(token["token"]))
    assert refused.status_code == 401
    listed = (await api.http.get("/api/v1/tokens", headers=dev)).json()
    assert listed[0]["revoked"] is True and listed[0]["revoked_by"] == "dev"
    types = [e["type"] for e in await api.events() if e["stream"] == "user-dev"]
    assert types == ["user.created", "token.created", "token.revoked"]


async def test_developers_and_leads_cannot_manage_users_or_apps(api: Api) -> None:
    app = {"name": "shop", "source": {"type": "git", "url": "https://git.example.com/s.git"}}
    user = {"username": "eve", "role": "admin", "password": "long-enough-password"}
    for name, role in (("dev", "developer"), ("lead", "lead")):
        headers = await api.user(name, role)
        before = await api.runtime.store.last_position()
        attempts = [
            await api.http.post("/api/v1/users", json=user, headers=headers),
            await api.http.get("/api/v1/users", headers=headers),
            await api.http.patch(f"/api/v1/users/{name}", json={"role": "admin"}, headers=headers),
            await api.http.patch(
                "/api/v1/users/admin", json={"password": "x" * 10}, headers=headers
            ),
            await api.http.post("/api/v1/apps", json=app, headers=headers),
            await api.http.patch("/api/v1/apps/shop", json={"keep_releases": 3}, headers=headers),
        ]
        assert [r.status_code for r in attempts] == [403] * 6, [r.text for r in attempts]
        assert await api.runtime.store.last_position() == before
    me = await api.http.get("/api/v1/me", headers=await api.user("dev"))
    assert me.json()["role"] == "developer"


async def test_anyone_may_change_their_own_password(api: Api) -> None:
    dev = await api.user("dev", "developer")
    response = await api.http.patch(
        "/api/v1/users/dev",
        json={"password": "brand-new-secret", "current_password": password_of("dev")},
        headers=dev,
    )
    assert response.status_code == 200, response.text
    assert (await api.http.get("/api/v1/me", headers=dev)).status_code == 401  # session ended
    assert (
        await api.http.get("/api/v1/me", headers=await api.login("dev", "brand-new-secret"))
    ).status_code == 200
    old = await api.http.post(
        "/api/v1/auth/login", json={"username": "dev", "password": password_of("dev")}
    )
    assert old.status_code == 401


async def test_account_changes_are_in_the_audit_log_with_who_did_them(api: Api) -> None:
    admin = await api.user("admin", "admin")
    start = await api.runtime.store.last_position()
    created = await api.http.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "carol", "role": "developer", "password": "carols-secret-pw"},
    )
    assert created.status_code == 201, created.text
    promoted = await api.http.patch(
        "/api/v1/users/carol", headers=admin, json={"role": "lead", "password": "another-secret-pw"}
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "lead"
    listed = (await api.http.get("/api/v1/users", headers=admin)).json()
    assert [(u["username"], u["role"]) for u in listed] == [("admin", "admin"), ("carol", "lead")]

    events = await api.events(after=start)
    assert [
        (e["type"], e["data"]["username"], e["data"]["by"], e["metadata"]["actor"]) for e in events
    ] == [
        ("user.created", "carol", "admin", "admin"),
        ("user.role_changed", "carol", "admin", "admin"),
        ("user.password_changed", "carol", "admin", "admin"),
    ]
    assert "secret-pw" not in str(events)
    stored = await api.runtime.store.get("credentials", "carol")
    assert stored is not None and stored["hash"].startswith("$argon2id$")
    assert await api.login("carol", "another-secret-pw")


async def test_the_last_admin_cannot_be_disabled_or_demoted(api: Api) -> None:
    admin = await api.user("admin", "admin")
    before = await api.runtime.store.last_position()
    for change in ({"disabled": True}, {"role": "lead"}):
        response = await api.http.patch("/api/v1/users/admin", json=change, headers=admin)
        assert response.status_code == 409, response.text
    assert await api.runtime.store.last_position() == before
    await api.user("admin2", "admin")
    response = await api.http.patch("/api/v1/users/admin", json={"role": "lead"}, headers=admin)
    assert response.status_code == 200


async def test_bad_account_input_is_422_naming_the_field(api: Api) -> None:
    admin = await api.user("admin", "admin")
    before = await api.runtime.store.last_position()
    cases = [
        ("username", {"username": "-rf", "password": "long-enough-pw"}),
        ("username", {"username": "Bob Smith", "password": "long-enough-pw"}),
        ("password", {"username": "bob", "password": "short"}),
        ("role", {"username": "bob", "role": "root", "password": "long-enough-pw"}),
        ("superuser", {"username": "bob", "password": "long-enough-pw", "superuser": True}),
    ]
    for field, body in cases:
        response = await api.http.post("/api/v1/users", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["message"].startswith(field), response.text
    assert (await api.http.patch("/api/v1/users/-x", json={}, headers=admin)).status_code == 422
    assert (
        await api.http.patch("/api/v1/users/nobody", json={"role": "lead"}, headers=admin)
    ).status_code == 404
    taken = await api.http.post(
        "/api/v1/users", headers=admin, json={"username": "admin", "password": "long-enough-pw"}
    )
    assert taken.status_code == 409
    assert await api.runtime.store.last_position() == before


def ferry_api(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry_api.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_create_admin_makes_the_first_admin(api: Api, pg_url: str, tmp_path: Path) -> None:
    env = {
        "FERRY_DATABASE_URL": pg_url,
        "FERRY_DATA_DIR": str(tmp_path),
        "FERRY_ADMIN_PASSWORD": "first-admin-password",
    }
    done = ferry_api("create-admin", "root", env=env)
    assert done.returncode == 0, done.stderr
    assert "admin 'root' created" in done.stdout
    await api.runtime.projector.catch_up()  # the CLI wrote to the log; this API projects it
    session = await api.login("root", "first-admin-password")
    me = await api.http.get("/api/v1/me", headers=session)
    assert me.json()["role"] == "admin"
    again = ferry_api("create-admin", "root", env=env)
    assert again.returncode != 0 and "already exists" in again.stderr
    weak = ferry_api("create-admin", "bob", env={**env, "FERRY_ADMIN_PASSWORD": "short"})
    assert weak.returncode != 0 and "at least 8" in weak.stderr


@pytest.mark.parametrize("secret", [None, "changeme", "too-short-but-random"])
def test_serve_refuses_a_missing_or_weak_secret(secret: str | None, tmp_path: Path) -> None:
    env = {"FERRY_DATA_DIR": str(tmp_path / "data")}
    if secret is not None:
        env["FERRY_SECRET_KEY"] = secret
    done = ferry_api("serve", env=env)
    assert done.returncode != 0
    assert "FERRY_SECRET_KEY must be set" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


async def test_login_body_is_validated(api: Api) -> None:
    response = await api.http.post("/api/v1/auth/login", json={"username": "dev"})
    assert response.status_code == 422 and "password" in response.json()["message"]
    response = await api.http.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert isinstance(api.http, httpx.AsyncClient)
