"""What is appended, what is stored, and what travels on the bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ferry_events.registry import Event, UnknownEvent, parse_event


class Metadata(BaseModel):
    """Who caused an event and in answer to what; extra keys are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None


class NewEvent(BaseModel):
    """An event about to be appended; the store assigns version, position, time and hash."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int = 1
    data: dict[str, Any]
    metadata: Metadata = Metadata()

    @classmethod
    def of(
        cls, event: Event, metadata: Metadata | None = None, event_id: uuid.UUID | None = None
    ) -> NewEvent:
        return cls(
            event_id=event_id or uuid.uuid4(),
            type=event.type_name,
            schema_version=event.schema_version,
            data=event.model_dump(mode="json"),
            metadata=metadata or Metadata(),
        )


class StoredEvent(BaseModel):
    """An event as the log holds it: immutable, globally ordered, chained."""

    model_config = ConfigDict(frozen=True)

    position: int
    stream: str
    version: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: Metadata
    recorded_at: datetime
    hash: str

    def payload(self) -> Event | UnknownEvent:
        """The typed payload (upcast to the current schema), or UnknownEvent for foreign types."""
        return parse_event(self.type, self.schema_version, self.data)


class Message(BaseModel):
    """One message on the bus. message_id is what consumers de-duplicate by."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    routing_key: str
    type: str
    body: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)
    redelivered: bool = False
    # Who published it, as the broker vouches (RabbitMQ: the validated user_id). Set by the bus
    # on consume only: a publisher's own value is ignored, and headers or body never fill it.
    sender: str | None = None

    @classmethod
    def of_stored(cls, stored: StoredEvent, routing_key: str) -> Message:
        """The relay's message for a stored event: id = event id, body = the stored event."""
        return cls(
            message_id=str(stored.event_id),
            routing_key=routing_key,
            type=stored.type,
            body=stored.model_dump(mode="json"),
            headers={"position": str(stored.position), "stream": stored.stream},
        )

    def stored_event(self) -> StoredEvent:
        """Inverse of of_stored."""
        return StoredEvent.model_validate(self.body)

    @classmethod
    def report(cls, event: Event, metadata: Metadata | None = None) -> Message:
        """An agent's report: a payload for the API to append; a fresh id de-duplicates it."""
        meta = (metadata or Metadata()).model_dump(mode="json", exclude_none=True)
        return cls(
            message_id=str(uuid.uuid4()),
            routing_key=event.type_name,
            type=event.type_name,
            body={
                "schema_version": event.schema_version,
                "data": event.model_dump(mode="json"),
                "metadata": meta,
            },
            # The API's report-ingest lag (/metrics) is measured from here.
            headers={"sent_at": datetime.now(UTC).isoformat()},
        )
