"""The audit log: every event in global order (paginated), the hash-chain check, and a live
Server-Sent Events stream of new events for the UI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from ferry_events.envelope import StoredEvent
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ferry_api.domain.errors import Invalid
from ferry_api.http.auth import CurrentUser, StreamUser
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.shown import shown
from ferry_api.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["audit"])

Position = Annotated[int, Query(ge=0, le=2**62, description="only events after this position")]


class EventPage(BaseModel):
    events: list[StoredEvent]
    next: int | None = Field(description="`after` for the next page; null on the last page")


class ChainCheck(BaseModel):
    ok: bool
    events: int
    position: int | None = None
    event_id: str | None = None
    problem: str | None = None
    summary: str


@router.get("/events")
async def list_events(
    _: CurrentUser,
    runtime: RuntimeDep,
    after: Position = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Events with position > `after`, oldest first."""
    events = await runtime.store.read_all(after=after, limit=limit)
    more = len(events) == limit and events[-1].position < await runtime.store.last_position()
    return EventPage(
        events=[shown(event) for event in events], next=events[-1].position if more else None
    )


@router.get("/events/verify")
async def verify_events(_: CurrentUser, runtime: RuntimeDep) -> ChainCheck:
    """Walk the hash chain from the first event: ok, or the first broken link and why."""
    report = await runtime.store.verify()
    return ChainCheck(
        ok=report.ok,
        events=report.events,
        position=report.position,
        event_id=report.event_id,
        problem=report.problem,
        summary=str(report),
    )


async def _new_events(runtime: Runtime, after: int) -> AsyncIterator[ServerSentEvent]:
    subscription = runtime.store.subscribe(after=after)
    async with contextlib.aclosing(subscription):  # type: ignore[type-var]
        async for batch in subscription:
            for event in batch:
                yield ServerSentEvent(data=shown(event).model_dump_json(), id=str(event.position))


def _resume_from(last_event_id: str | None) -> int | None:
    if last_event_id is None:
        return None
    if not last_event_id.isdigit() or len(last_event_id) > 18:
        raise Invalid("Last-Event-ID: must be an event position (a number)")
    return int(last_event_id)


@router.get(
    "/events/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "one `message` per new event, `id` = its position",
        }
    },
)
async def stream_events(
    _: StreamUser,
    runtime: RuntimeDep,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="default: from now")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """New events as they are stored; a reconnecting EventSource resumes after Last-Event-ID."""
    resumed = _resume_from(last_event_id)
    start = resumed if resumed is not None else after
    if start is None:
        start = await runtime.store.last_position()
    return EventSourceResponse(_new_events(runtime, start), ping=15)
