"""Reports that answer a command: same correlation, caused by the command's event, and ids derived
from the command, so a command redelivered after a crash (report published, ack lost) is reported
again under the same ids and the API, which de-duplicates by message id, records one fact.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ferry_events.bus import REPORTS, Bus
from ferry_events.envelope import Message, Metadata, StoredEvent
from ferry_events.registry import Event

Report = Callable[[Event], Awaitable[None]]
E = TypeVar("E", bound=Event)

# Fixed forever: changing it would give a redelivered command's reports new ids.
REPORT_NAMESPACE = uuid.UUID("6f1d7c2e-5b0a-4c1e-9d2f-3a8e4b7c6d10")


class ReportNotSent(Exception):
    """The bus did not take a report (broker gone, nothing bound to receive it): infrastructure,
    never a failure of the command; the cause is chained."""


def report_id(command_event_id: str, report_type: str, attempt: int | None, nth: int = 1) -> str:
    """uuid5 of the command's event id, the report's type, the command's attempt (if it carries
    one) and, for a second report of one type to one command, its rank."""
    parts = [command_event_id, report_type]
    if attempt is not None:
        parts.append(f"attempt={attempt}")
    if nth > 1:
        parts.append(f"nth={nth}")
    return str(uuid.uuid5(REPORT_NAMESPACE, "/".join(parts)))


def answer(command: Mapping[str, Any] | Event, report: type[E], **fields: Any) -> E:
    """The report `report` on `command`: the fields they share (ticket, app, host, version,
    attempt) taken from the command, the rest from `fields`."""
    data = command if isinstance(command, Mapping) else command.model_dump()
    return report.model_validate({**data, **fields})


class Reporter:
    """The `report` a handler is given for one command."""

    def __init__(self, bus: Bus, command: StoredEvent) -> None:
        self._bus = bus
        self._event_id = str(command.event_id)
        attempt = command.data.get("attempt")
        self._attempt = attempt if isinstance(attempt, int) else None
        self._metadata = Metadata(
            correlation_id=command.metadata.correlation_id or self._event_id,
            causation_id=self._event_id,
        )
        self.sent: Counter[type[Event]] = Counter()

    async def __call__(self, event: Event) -> None:
        nth = self.sent[type(event)] + 1
        message_id = report_id(self._event_id, event.type_name, self._attempt, nth)
        message = Message.report(event, self._metadata).model_copy(
            update={"message_id": message_id}
        )
        try:
            await self._bus.publish(REPORTS, [message])
        except Exception as error:
            raise ReportNotSent(f"{event.type_name}: {type(error).__name__}: {error}") from error
        self.sent[type(event)] += 1


def announcer(bus: Bus) -> Report:
    """Publish what answers no command (a heartbeat): a fresh id each, and not mandatory, as
    nobody listening is no error."""

    async def announce(event: Event) -> None:
        await bus.publish(REPORTS, [Message.report(event)], mandatory=False)

    return announce
