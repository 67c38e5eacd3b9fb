"""What the API shows of a stored event: its data with credentials in URLs redacted
(`https://***@host/...`), as logs written before such URLs were refused may hold them. The log
itself is never changed: its hash chain covers what was written.
"""

from __future__ import annotations

from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.validation import redact_credentials_in


def shown_data(data: dict[str, Any]) -> dict[str, Any]:
    redacted: dict[str, Any] = redact_credentials_in(data)
    return redacted


def shown(event: StoredEvent) -> StoredEvent:
    data = shown_data(event.data)
    return event if data == event.data else event.model_copy(update={"data": data})
