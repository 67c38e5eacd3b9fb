"""Users and roles: admins list, create and change accounts; anyone may change their own
password, giving the current one. Every change is an event, so the audit log shows who changed
whose permissions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from ferry_events.schemas import Role
from ferry_events.validation import USER_NAME, UserName
from pydantic import BaseModel, ConfigDict, Field

from ferry_api.commands import accounts
from ferry_api.domain.errors import Forbidden
from ferry_api.http.auth import Admin, CurrentUser, client_address
from ferry_api.http.deps import RuntimeDep
from ferry_api.readmodels.users import USERS

router = APIRouter(prefix="/api/v1", tags=["users"])

Password = Annotated[str, Field(min_length=8, max_length=1024)]
UserPath = Annotated[str, Path(pattern=USER_NAME)]


class UserOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: str
    role: Role
    disabled: bool
    created_at: datetime
    created_by: str
    updated_at: datetime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: UserName
    role: Role = "developer"
    password: Password


class UserPatch(BaseModel):
    """Only the fields sent change; a non-admin may send only `password`, for themselves."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None
    current_password: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        None, description="needed to change your own password (not to reset someone else's)"
    )


@router.get("/users")
async def list_users(_: Admin, runtime: RuntimeDep) -> list[UserOut]:
    found = await runtime.store.find(USERS, order_by="username", limit=10_000)
    return [UserOut.model_validate(user) for user in found]


@router.post("/users", status_code=201)
async def create_user(body: UserIn, actor: Admin, runtime: RuntimeDep) -> UserOut:
    await accounts.create_user(runtime, body.username, body.role, body.password, by=actor.username)
    return UserOut.model_validate(await runtime.store.get(USERS, body.username))


@router.patch("/users/{username}")
async def change_user(
    username: UserPath, body: UserPatch, actor: CurrentUser, runtime: RuntimeDep, request: Request
) -> UserOut:
    own_password = username == actor.username and body.role is None and body.disabled is None
    if actor.role != "admin" and not own_password:
        raise Forbidden("only an admin may change roles, accounts or others' passwords")
    if body.password is not None and username == actor.username:
        # A session left open must not be enough to take the account over.
        await accounts.check_current_password(
            runtime, username, body.current_password, address=client_address(request)
        )
    change = accounts.UserChange(role=body.role, disabled=body.disabled, password=body.password)
    await accounts.change_user(runtime, username, change, by=actor.username)
    return UserOut.model_validate(await runtime.store.get(USERS, username))
