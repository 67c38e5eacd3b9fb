"""ferry-events: the wire contract and the plumbing every Ferry service shares."""

from ferry_events import schemas as schemas
from ferry_events.envelope import Message, Metadata, NewEvent, StoredEvent
from ferry_events.registry import Event, UnknownEvent, event_type, parse_event

__all__ = [
    "Event",
    "Message",
    "Metadata",
    "NewEvent",
    "StoredEvent",
    "UnknownEvent",
    "event_type",
    "parse_event",
    "schemas",
]
