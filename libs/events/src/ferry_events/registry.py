"""The base of every event payload and the one registry of wire names, versions and upcasters.

A payload class is registered by `@event_type("ticket.approved", version=1)`. The wire name never
changes, even when the class moves. Unknown (type, version) pairs parse to UnknownEvent, which keeps
the raw data so nothing is dropped on the way through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

_E = TypeVar("_E", bound="type[Event]")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Event(BaseModel):
    """A frozen payload. Unknown fields are ignored so additive changes stay compatible."""

    # defer_build: a type's validator is built on its first use, not at import. A process uses
    # a few of the registered types (an rsync agent: its command and reports), not all of them.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    type_name: ClassVar[str]
    schema_version: ClassVar[int]
    # Commands must reach a consumer: the relay publishes them as mandatory messages.
    is_command: ClassVar[bool] = False

    def routing_key(self) -> str:
        return self.type_name


class UnknownEvent(BaseModel):
    """A payload of a type this code does not know: passed through untouched."""

    model_config = ConfigDict(frozen=True)

    type_name: str
    schema_version: int
    data: dict[str, Any]

    def routing_key(self) -> str:
        return self.type_name


_types: dict[tuple[str, int], type[Event]] = {}
_current: dict[str, type[Event]] = {}
_upcasters: dict[tuple[str, int], Upcaster] = {}


def event_type(name: str, version: int = 1, *, command: bool = False) -> Callable[[_E], _E]:
    """Register a payload class under its wire name and schema version."""

    def register(cls: _E) -> _E:
        if (name, version) in _types:
            raise ValueError(f"event type {name} v{version} registered twice")
        cls.type_name = name
        cls.schema_version = version
        cls.is_command = command
        _types[(name, version)] = cls
        if name not in _current or _current[name].schema_version < version:
            _current[name] = cls
        return cls

    return register


def upcaster(name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning data of `from_version` into data of `from_version + 1`."""

    def register(fn: Upcaster) -> Upcaster:
        _upcasters[(name, from_version)] = fn
        return fn

    return register


def parse_event(name: str, version: int, data: dict[str, Any]) -> Event | UnknownEvent:
    """Parse stored or received data into the current payload class, upcasting old versions."""
    current = _current.get(name)
    if current is None or version > current.schema_version:
        return UnknownEvent(type_name=name, schema_version=version, data=data)
    while version < current.schema_version:
        step = _upcasters.get((name, version))
        if step is None:
            return UnknownEvent(type_name=name, schema_version=version, data=data)
        data, version = step(data), version + 1
    return current.model_validate(data)


def registered_types() -> dict[tuple[str, int], type[Event]]:
    """Every (wire name, version) ever registered; the fixture test walks these."""
    return dict(_types)
