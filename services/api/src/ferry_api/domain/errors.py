"""Why the domain refuses a request. No status codes here: http/errors.py maps them.

Refused             the message says why; nothing was changed
  Invalid           the request itself is wrong (a deploy without a ref, a weak password)
  NotFound          it names a ticket, app, user or token that does not exist
  Conflict          the current state does not allow it, or another change came first
  Forbidden         the state allows it, but not for this caller
"""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(Refused):
    pass


class NotFound(Refused):
    pass


class Conflict(Refused):
    pass


class Forbidden(Refused):
    pass
