"""Apps: where the code comes from, where it is staged, which hosts it goes to. Everyone may
read them; admins create and change them. Input is checked here, before anything is written:
URLs never carry credentials (every user reads them; the log keeps them for ever), and any that
an older log holds are shown as `https://***@host/...`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path
from ferry_events.schemas import AppCreated
from ferry_events.validation import (
    APP_NAME,
    AppName,
    HostName,
    check_no_credentials,
    check_source_url,
    redact_credentials_in,
)
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ferry_api.commands import apps as app_commands
from ferry_api.domain.errors import Invalid, NotFound
from ferry_api.http.auth import Admin, CurrentUser
from ferry_api.http.deps import RuntimeDep
from ferry_api.readmodels.apps import APPS
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["apps"])

AppPath = Annotated[str, Path(pattern=APP_NAME)]
# rsync exclude patterns: a plain glob that no rsync filter syntax ('- ', '+ ', '!') can start.
EXCLUDE = r"^[A-Za-z0-9_.*?\[\]/][A-Za-z0-9_.*?\[\]/ -]{0,254}$"


def _web_url(url: str) -> str:
    parts = urlsplit(url)
    if url and (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or ord(c) < 32 for c in url)
    ):
        raise ValueError("must be an http:// or https:// URL (or empty)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry user:password@ (every user sees it)")
    return url


def _absolute_path(path: str) -> str:
    if path and (
        not path.startswith("/") or "/../" in f"{path}/" or any(ord(c) < 32 for c in path)
    ):
        raise ValueError("must be an absolute path without '..' (or empty)")
    return path


def _unique(hosts: list[str]) -> list[str]:
    if len(set(hosts)) != len(hosts):
        raise ValueError("lists a host twice")
    return hosts


StagingUrl = Annotated[
    str, Field(max_length=2048, pattern=r"^(https?://[A-Za-z0-9]\S*)?$"), AfterValidator(_web_url)
]
TargetPath = Annotated[
    str, Field(max_length=4096, pattern=r"^(/[^\x00-\x1f]*)?$"), AfterValidator(_absolute_path)
]
Hosts = Annotated[
    list[HostName],
    Field(max_length=500, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]
Excludes = Annotated[list[Annotated[str, Field(pattern=EXCLUDE)]], Field(max_length=200)]
KeepReleases = Annotated[int, Field(ge=1, le=100)]


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["git", "svn"]
    url: Annotated[
        str,
        Field(
            max_length=2048,
            pattern=r"^(https|ssh|svn|svn\+ssh|file)://\S+$",
            description="git: https, ssh; svn: https, svn, svn+ssh; file:// "
            "only where the server allows it",
        ),
    ]


class AppIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AppName
    source: SourceIn
    staging_url: StagingUrl = ""
    hosts: Hosts = Field(default_factory=list)
    target_path: TargetPath = ""
    excludes: Excludes = Field(default_factory=list)
    keep_releases: KeepReleases = 5


class AppPatch(BaseModel):
    """Only the fields sent (and not null) change."""

    model_config = ConfigDict(extra="forbid")

    source: SourceIn | None = None
    staging_url: StagingUrl | None = None
    hosts: Hosts | None = None
    target_path: TargetPath | None = None
    excludes: Excludes | None = None
    keep_releases: KeepReleases | None = None


class AppOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _redacted(cls, app: Any) -> Any:
        return redact_credentials_in(app)

    name: str
    source: SourceIn
    staging_url: str
    hosts: list[str]
    target_path: str
    excludes: list[str]
    keep_releases: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


def _check_source(source: SourceIn | None, settings: Settings) -> None:
    if source is None:
        return
    try:
        check_source_url(source.url, source.type, allow_file=settings.allow_file_urls)
        check_no_credentials(source.url)
    except ValueError as exc:
        raise Invalid(f"source.url: {exc}") from exc


async def _app(runtime: Runtime, name: str) -> dict[str, Any]:
    app = await runtime.store.get(APPS, name)
    if app is None:
        raise NotFound(f"no app '{name}'")
    return app


@router.get("/apps")
async def list_apps(_: CurrentUser, runtime: RuntimeDep) -> list[AppOut]:
    found = await runtime.store.find(APPS, order_by="name", limit=10_000)
    return [AppOut.model_validate(app) for app in found]


@router.post("/apps", status_code=201)
async def post_app(body: AppIn, actor: Admin, runtime: RuntimeDep) -> AppOut:
    _check_source(body.source, runtime.settings)
    config = AppCreated.model_validate({**body.model_dump(), "by": actor.username})
    await app_commands.create_app(runtime, config)
    return AppOut.model_validate(await _app(runtime, body.name))


@router.get("/apps/{app}")
async def get_app(app: AppPath, _: CurrentUser, runtime: RuntimeDep) -> AppOut:
    return AppOut.model_validate(await _app(runtime, app))


@router.patch("/apps/{app}")
async def change_app(app: AppPath, body: AppPatch, actor: Admin, runtime: RuntimeDep) -> AppOut:
    _check_source(body.source, runtime.settings)
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    await app_commands.update_app(runtime, app, changes, actor.username)
    return AppOut.model_validate(await _app(runtime, app))
