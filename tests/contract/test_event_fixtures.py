"""Every (type, version) ever written keeps a fixture, and every fixture still parses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ferry_events.envelope import NewEvent
from ferry_events.registry import Event, UnknownEvent, parse_event, registered_types

FIXTURES = Path(__file__).parent / "fixtures"
FILES = sorted(FIXTURES.glob("*.json"))


def test_every_registered_type_has_a_fixture() -> None:
    kept = {(d["type"], d["schema_version"]) for d in (json.loads(f.read_text()) for f in FILES)}
    missing = set(registered_types()) - kept
    assert not missing, f"add a fixture to {FIXTURES} for {sorted(missing)}"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_fixture_parses_to_its_current_class(path: Path) -> None:
    doc = json.loads(path.read_text())
    payload = parse_event(doc["type"], doc["schema_version"], doc["data"])
    assert isinstance(payload, Event), f"{path.name} no longer parses"
    assert payload.type_name == doc["type"]
    # Round trip through the wire form keeps every field.
    again = NewEvent.of(payload)
    assert parse_event(again.type, again.schema_version, again.data) == payload


def test_unknown_types_pass_through_untouched() -> None:
    data = {"anything": [1, 2, {"x": "y"}]}
    payload = parse_event("vendor.thing_happened", 1, data)
    assert isinstance(payload, UnknownEvent)
    assert payload.data == data and payload.routing_key() == "vendor.thing_happened"


def test_a_newer_version_than_this_code_knows_is_kept_not_dropped() -> None:
    payload = parse_event("ticket.approved", 99, {"ticket_id": "t", "by": "x", "new": 1})
    assert isinstance(payload, UnknownEvent) and payload.data["new"] == 1


def test_additive_fields_from_newer_producers_are_ignored() -> None:
    doc = json.loads((FIXTURES / "ticket.approved.v1.json").read_text())
    payload = parse_event("ticket.approved", 1, {**doc["data"], "added_later": True})
    assert isinstance(payload, Event) and payload.type_name == "ticket.approved"
