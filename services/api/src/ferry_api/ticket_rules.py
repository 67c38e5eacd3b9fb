"""Who may do what to a ticket in which state: the one table both the decisions and the UI read.

    TicketError                 message says why; `status` and `code` are what the API answers
      TicketInvalid   422       the request itself is wrong (a deploy without a ref, ...)
      TicketConflict  409       the ticket's state (or the staging workspace) does not allow it
      TicketForbidden 403       the state allows it, but not for this caller

The state is checked before the caller: an action the state forbids is 409 for everyone, so the
answer does not depend on who asks. Admins may do everything a lead may, and nothing more: they
never stand in for the author. Everyone who submitted or resubmitted a ticket is one of its
authors; none of them may approve or reject it (four-eyes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ferry_events.schemas import Role

from ferry_api.ticket_state import Ticket, TicketState

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
RULES: dict[Action, dict[TicketState, frozenset[Who]]] = {
    "return": {"testing": AUTHOR_OR_LEAD, "awaiting_approval": AUTHOR},
    "resubmit": {"staging_failed": AUTHOR_OR_LEAD, "returned": AUTHOR_OR_LEAD},
    "pass-tests": {"testing": AUTHOR_OR_LEAD},
    "approve": {"awaiting_approval": REVIEWER},
    "reject": {"awaiting_approval": REVIEWER},
    "publish": {"approved": AUTHOR_OR_LEAD},
    "retry": {"publish_failed": AUTHOR_OR_LEAD},
    "cancel": {
        "staging_failed": AUTHOR,
        "testing": AUTHOR_OR_LEAD,
        "returned": AUTHOR,
        "awaiting_approval": AUTHOR,
        "approved": AUTHOR_OR_LEAD,
    },
}


@dataclass(frozen=True)
class Actor:
    username: str
    role: Role


class TicketError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TicketInvalid(TicketError):
    status, code = 422, "invalid"


class TicketConflict(TicketError):
    status, code = 409, "conflict"


class TicketForbidden(TicketError):
    status, code = 403, "forbidden"


def authorize(ticket: Ticket, actor: Actor, action: Action) -> None:
    """TicketConflict if the state rules `action` out, else TicketForbidden if the actor may not."""
    states = RULES[action]
    who = states.get(ticket.state)
    if who is None:
        needed = " or ".join(f"'{state}'" for state in states)
        raise TicketConflict(f"ticket is in state '{ticket.state}'; {action} needs {needed}")
    if action == "resubmit" and ticket.kind == "rollback":
        raise TicketConflict("a rollback cannot be resubmitted; cancel it and submit a new one")
    if not _qualifies(ticket, actor, who):
        raise TicketForbidden(_refusal(ticket, actor, action, who))


def allowed_actions(ticket: Ticket, actor: Actor) -> list[Action]:
    """The actions `authorize` lets this actor take now (pass-tests still checks staging)."""
    return [action for action in ACTIONS if _permitted(ticket, actor, action)]


def _permitted(ticket: Ticket, actor: Actor, action: Action) -> bool:
    try:
        authorize(ticket, actor, action)
    except TicketError:
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
