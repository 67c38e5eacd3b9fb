"""An app's outgoing webhooks: admins list, add or replace, and remove them. URLs go in but
never come back out whole: they carry the receivers' tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ferry_api.commands import webhooks as webhook_commands
from ferry_api.domain.errors import NotFound
from ferry_api.domain.notices import WebhookEvent, WebhookFormat
from ferry_api.http.auth import Admin
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.routes.apps import AppPath
from ferry_api.readmodels.apps import APPS
from ferry_api.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

WebhookId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
WebhookUrl = Annotated[
    str,
    Field(
        max_length=2048,
        description="https://…, or http:// to 127.0.0.1 or localhost; a host at an inside "
        "address (loopback, private, link-local...) only if FERRY_WEBHOOK_ALLOW_HOSTS names it",
    ),
    AfterValidator(webhook_commands.check_webhook_url),
]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    format: WebhookFormat = "json"
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=6)]


class WebhookOut(BaseModel):
    id: str
    app: str
    url: str = Field(description="redacted: scheme://host/…")
    format: WebhookFormat
    events: list[WebhookEvent]
    updated_by: str
    updated_at: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> WebhookOut:
        return cls.model_validate({**doc, "url": webhook_commands.redacted(doc["url"])})


async def _known_app(runtime: Runtime, app: str) -> None:
    if await runtime.store.get(APPS, app) is None:
        raise NotFound(f"no app '{app}'")


@router.get("/apps/{app}/webhooks")
async def list_webhooks(app: AppPath, _: Admin, runtime: RuntimeDep) -> list[WebhookOut]:
    await _known_app(runtime, app)
    return [WebhookOut.of(doc) for doc in await webhook_commands.webhooks_of(runtime, app)]


@router.get("/apps/{app}/webhooks/{webhook_id}")
async def get_webhook(
    app: AppPath, webhook_id: WebhookId, _: Admin, runtime: RuntimeDep
) -> WebhookOut:
    doc = await webhook_commands.webhook(runtime, app, webhook_id)
    if doc is None:
        raise NotFound(f"app '{app}' has no webhook '{webhook_id}'")
    return WebhookOut.of(doc)


@router.put("/apps/{app}/webhooks/{webhook_id}")
async def put_webhook(
    app: AppPath, webhook_id: WebhookId, body: WebhookIn, actor: Admin, runtime: RuntimeDep
) -> WebhookOut:
    await _known_app(runtime, app)
    doc = await webhook_commands.save_webhook(
        runtime,
        app,
        webhook_id,
        url=body.url,
        fmt=body.format,
        events=body.events,
        by=actor.username,
    )
    return WebhookOut.of(doc)


@router.delete("/apps/{app}/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(
    app: AppPath, webhook_id: WebhookId, actor: Admin, runtime: RuntimeDep
) -> Response:
    if not await webhook_commands.delete_webhook(runtime, app, webhook_id, actor.username):
        raise NotFound(f"app '{app}' has no webhook '{webhook_id}'")
    return Response(status_code=204)
