"""Who may do what to a ticket in which state, and where it leads: THE table, read by the
decisions, by `allowed_actions` (what the UI offers) and by the tests.

The state is checked before the caller: an action the state forbids is a TicketConflict for
everyone, so the answer does not depend on who asks; then TicketForbidden if the state allows it
but not for this caller. Admins may do everything a lead may, and nothing more: they never stand
in for the author. Everyone who submitted or resubmitted a ticket is one of its authors; none of
them may approve or reject it (four-eyes).

The system's own moves are not people's actions, so they are not in the table; the fold
(history.py) makes them when the agents report:
    submit (deploy) -> staging_pending -> staging -> testing | staging_failed
    submit (rollback) -> awaiting_approval
    publishing -> published (every host synced) | publish_failed (the rest settled, or no tag)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ferry_events.schemas import Role

from ferry_api.domain.errors import Conflict, Forbidden, Invalid
from ferry_api.domain.state import Ticket, TicketState

Action = Literal[
    "return", "resubmit", "pass-tests", "approve", "reject", "publish", "retry", "cancel"
]
ACTIONS: tuple[Action, ...] = (
    "return",
    "resubmit",
    "pass-tests",
    "approve",
    "reject",
    "publish",
    "retry",
    "cancel",
)

Who = Literal["author", "lead", "reviewer"]  # reviewer: a lead or admin who is not an author
AUTHOR: frozenset[Who] = frozenset({"author"})
AUTHOR_OR_LEAD: frozenset[Who] = frozenset({"author", "lead"})
REVIEWER: frozenset[Who] = frozenset({"reviewer"})

# A lead or admin may resubmit someone else's ticket (taking it over); that makes them one of
# its authors, so they can no longer approve it.
# fmt: off
TRANSITIONS: dict[tuple[TicketState, Action], tuple[frozenset[Who], TicketState]] = {
    # in state             action           who may          leads to
    ("staging_failed",    "resubmit"):   (AUTHOR_OR_LEAD, "staging_pending"),
    ("staging_failed",    "cancel"):     (AUTHOR,         "cancelled"),
    ("testing",           "pass-tests"): (AUTHOR_OR_LEAD, "awaiting_approval"),
    ("testing",           "return"):     (AUTHOR_OR_LEAD, "returned"),
    ("testing",           "cancel"):     (AUTHOR_OR_LEAD, "cancelled"),
    ("returned",          "resubmit"):   (AUTHOR_OR_LEAD, "staging_pending"),
    ("returned",          "cancel"):     (AUTHOR,         "cancelled"),
    ("awaiting_approval", "approve"):    (REVIEWER,       "approved"),
    ("awaiting_approval", "reject"):     (REVIEWER,       "returned"),
    ("awaiting_approval", "return"):     (AUTHOR,         "returned"),
    ("awaiting_approval", "cancel"):     (AUTHOR,         "cancelled"),
    ("approved",          "publish"):    (AUTHOR_OR_LEAD, "publishing"),
    ("approved",          "cancel"):     (AUTHOR_OR_LEAD, "cancelled"),
    ("publish_failed",    "retry"):      (AUTHOR_OR_LEAD, "publishing"),
}
# fmt: on


@dataclass(frozen=True)
class Actor:
    username: str
    role: Role


class TicketInvalid(Invalid):
    """The request itself is wrong (a deploy without a ref, a rejection without a reason)."""


class TicketConflict(Conflict):
    """The ticket's state (or the staging workspace) does not allow it."""


class TicketForbidden(Forbidden):
    """The state allows it, but not for this caller."""


def authorize(ticket: Ticket, actor: Actor, action: Action) -> None:
    """TicketConflict if the state rules `action` out, else TicketForbidden if the actor may not."""
    rule = TRANSITIONS.get((ticket.state, action))
    if rule is None:
        needed = " or ".join(f"'{state}'" for state, act in TRANSITIONS if act == action)
        raise TicketConflict(f"ticket is in state '{ticket.state}'; {action} needs {needed}")
    if action == "resubmit" and ticket.kind == "rollback":
        raise TicketConflict("a rollback cannot be resubmitted; cancel it and submit a new one")
    who, _ = rule
    if not _qualifies(ticket, actor, who):
        raise TicketForbidden(_refusal(ticket, actor, action, who))


def allowed_actions(ticket: Ticket, actor: Actor) -> list[Action]:
    """The actions `authorize` lets this actor take now (pass-tests still checks staging)."""
    return [action for action in ACTIONS if _permitted(ticket, actor, action)]


def _permitted(ticket: Ticket, actor: Actor, action: Action) -> bool:
    try:
        authorize(ticket, actor, action)
    except (TicketConflict, TicketForbidden):
        return False
    return True


def _qualifies(ticket: Ticket, actor: Actor, who: frozenset[Who]) -> bool:
    is_author = actor.username in ticket.submitters
    is_lead = actor.role in ("lead", "admin")
    return (
        ("author" in who and is_author)
        or ("lead" in who and is_lead)
        or ("reviewer" in who and is_lead and not is_author)
    )


def _refusal(ticket: Ticket, actor: Actor, action: Action, who: frozenset[Who]) -> str:
    authors = ", ".join(ticket.submitters)
    if who == REVIEWER and actor.username in ticket.submitters:
        did = "submitted" if actor.username == ticket.submitters[0] else "resubmitted"
        return f"you {did} this ticket; another lead or admin must {action} it (four-eyes)"
    if who == REVIEWER:
        return f"{action} needs a lead or admin who is not an author; you are a {actor.role}"
    if who == AUTHOR:
        return f"only the ticket's author ({authors}) may {action} it in state '{ticket.state}'"
    return (
        f"{action} needs the ticket's author ({authors}) or a lead or admin; you are a {actor.role}"
    )
