"""What a webhook says: which ticket events are worth a notice, and the notice's body in each
receiver's format (plain JSON, Slack incoming webhook, DingTalk robot). What people wrote (a
ticket's reason, a rejection's note) reaches chat as text, never as markup or a mention."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ferry_events.registry import Event
from ferry_events.schemas import (
    PublishFailed,
    TestsPassed,
    TicketApproved,
    TicketPublished,
    TicketRejected,
    TicketSubmitted,
)

from ferry_api.domain.state import Ticket

WebhookFormat = Literal["json", "slack", "dingtalk"]
WebhookEvent = Literal[
    "approval_requested", "approved", "rejected", "published", "publish_failed", "rollback"
]
# The payload types that can become a notice; others are skipped without reading the ticket.
NOTICE_SOURCES = (
    TicketSubmitted,
    TestsPassed,
    TicketApproved,
    TicketRejected,
    TicketPublished,
    PublishFailed,
)


@dataclass(frozen=True)
class Notice:
    event: WebhookEvent
    ticket_id: str
    app: str
    kind: str
    author: str
    reason: str
    by: str | None = None
    detail: str = ""
    version: int | None = None


def notice_of(payload: Event, ticket: Ticket) -> Notice | None:
    """The notice a ticket event makes, or None (a deploy's submission asks nobody yet)."""
    common: dict[str, Any] = {
        "ticket_id": ticket.id,
        "app": ticket.app,
        "kind": ticket.kind,
        "author": ticket.author,
        "reason": ticket.reason,
    }
    rollback = ticket.kind == "rollback"
    if isinstance(payload, TicketSubmitted) and rollback:
        # A rollback needs no staging or tests: it waits for approval from its submission on.
        return Notice("approval_requested", by=payload.author, version=payload.version, **common)
    if isinstance(payload, TestsPassed) and not rollback:
        return Notice("approval_requested", by=payload.by, **common)
    if isinstance(payload, TicketApproved):
        return Notice("approved", by=payload.by, detail=payload.comment, **common)
    if isinstance(payload, TicketRejected):
        return Notice("rejected", by=payload.by, detail=payload.reason, **common)
    if isinstance(payload, TicketPublished):
        event: WebhookEvent = "rollback" if rollback else "published"
        return Notice(event, version=payload.version, **common)
    if isinstance(payload, PublishFailed):
        failed = ", ".join(payload.failed_hosts)
        return Notice("publish_failed", version=payload.version, detail=failed, **common)
    return None


_HEADLINES: dict[WebhookEvent, str] = {
    "approval_requested": "{app}: ticket {short} awaits approval",
    "approved": "{app}: ticket {short} approved by {by}",
    "rejected": "{app}: ticket {short} rejected by {by}",
    "published": "{app}: release {version} published (ticket {short})",
    "publish_failed": "{app}: publishing release {version} failed (ticket {short})",
    "rollback": "{app}: rolled back to release {version} (ticket {short})",
}


def text_of(notice: Notice) -> str:
    """One human line plus the ticket's reason, for chat receivers."""
    headline = _HEADLINES[notice.event].format(short=notice.ticket_id[:8], **asdict(notice))
    lines = [f"[Ferry] {headline}", f"{notice.kind} by {notice.author}: {notice.reason}"]
    if notice.detail:
        label = "failed hosts" if notice.event == "publish_failed" else "note"
        lines.append(f"{label}: {notice.detail}")
    return "\n".join(lines)


def slack_escaped(text: str) -> str:
    """Slack's mrkdwn escaping: `&`, `<`, `>` as entities (`&` first), so no `<!channel>`,
    `<@user>` or disguised `<http://evil|link>` is read as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def dingtalk_escaped(text: str) -> str:
    """A DingTalk "text" message renders no markdown (so no escaping to show as backslashes);
    what it reads is `@`: the fullwidth at sign U+FF20 looks alike and mentions nobody (the body
    also never has an `at` field, which is what notifies people)."""
    return text.replace("@", "\uff20")


def body_of(notice: Notice, fmt: WebhookFormat) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": slack_escaped(text_of(notice))}
    if fmt == "dingtalk":
        return {"msgtype": "text", "text": {"content": dingtalk_escaped(text_of(notice))}}
    return {"source": "ferry", **asdict(notice)}  # data: its receiver escapes what it shows
