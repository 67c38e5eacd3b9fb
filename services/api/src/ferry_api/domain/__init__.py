"""The ticket: its state, who may do what (rules), the fold of its history, and the decisions
that turn a request into events. Pure: no I/O, no HTTP. Callers import from here.

    state.py      Ticket, HostProgress, TicketState (frozen dataclasses)
    rules.py      THE transition table: in which state who may take which action, and where to
    history.py    evolve/replay: the fold that builds a Ticket from its events
    decisions.py  submit, approve, publish, ... -> the events to append (or a Refused)
    streams.py    stream names, and what an app's stream says (staging holder, versions)
    notices.py    which ticket events a webhook announces, and in which format
    errors.py     Refused: Invalid, NotFound, Conflict, Forbidden
"""

from ferry_api.domain.decisions import (
    accept_report,
    approve,
    cancel,
    pass_tests,
    publish,
    reject,
    request_host_syncs,
    resubmit,
    retry,
    return_ticket,
    settle,
    submit,
)
from ferry_api.domain.history import evolve, replay
from ferry_api.domain.rules import (
    ACTIONS,
    TRANSITIONS,
    Action,
    Actor,
    TicketConflict,
    TicketForbidden,
    TicketInvalid,
    allowed_actions,
    authorize,
)
from ferry_api.domain.state import Comment, HostProgress, Ticket, TicketState
from ferry_api.domain.streams import StagingHolder

__all__ = [
    "ACTIONS",
    "TRANSITIONS",
    "Action",
    "Actor",
    "Comment",
    "HostProgress",
    "StagingHolder",
    "Ticket",
    "TicketConflict",
    "TicketForbidden",
    "TicketInvalid",
    "TicketState",
    "accept_report",
    "allowed_actions",
    "approve",
    "authorize",
    "cancel",
    "evolve",
    "pass_tests",
    "publish",
    "reject",
    "replay",
    "request_host_syncs",
    "resubmit",
    "retry",
    "return_ticket",
    "settle",
    "submit",
]
