"""Failed logins, throttled per user name and per client address: past the limit within the
window, a login (or a change of one's own password) is refused before its password is checked.

The failures are documents beside the credentials (outside the log and every projection), so
every API process counts the same ones: the log records no failed logins, and a guessing attack
must not grow the append-only audit log for ever, whereas these documents are pruned. One
document per failure and counter (never a read-modify-write), so racing processes lose no count.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from typing import Any, Literal

import structlog

from ferry_api.domain.errors import Refused
from ferry_api.runtime import Runtime

log = structlog.get_logger()

FAILURES = "login_failures"  # collection: {"counter", "key", "at"}, key = a random id
CHECKPOINT = "login_failures"  # never moves (expected 0, position 0): any process may commit
PRUNE_BATCH = 50  # expired failures dropped per new one: the collection stays near its window

Counter = Literal["user", "address"]


class Throttled(Refused):
    """Too many failed logins lately; `retry_after` seconds until the next is worth trying."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def address_key(host: str | None) -> str:
    """The client's address as counted: an IPv6 client by its /64, which one host usually has."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def check(runtime: Runtime, username: str, address: str) -> None:
    """Raise Throttled if the user name or the address failed too often within the window."""
    settings = runtime.settings
    limits: tuple[tuple[Counter, str, int], ...] = (
        ("user", username, settings.login_failures_per_user),
        ("address", address, settings.login_failures_per_address),
    )
    for counter, key, limit in limits:
        wait = await _wait(runtime, counter, key, limit)
        if wait > 0:
            log.warning("login.throttled", counter=counter, username=username, address=address)
            raise Throttled(
                f"too many failed logins for this {'account' if counter == 'user' else 'address'}"
                f"; try again in {math.ceil(wait)} s",
                retry_after=math.ceil(wait),
            )


async def _wait(runtime: Runtime, counter: Counter, key: str, limit: int) -> float:
    """Seconds until the oldest of the last `limit` failures leaves the window (<= 0: free)."""
    recent = await runtime.store.find(
        FAILURES, {"counter": counter, "key": key}, order_by="at", descending=True, limit=limit
    )
    if len(recent) < limit:
        return 0.0
    return float(recent[-1]["at"]) + runtime.settings.login_window_seconds - time.time()


async def failed(runtime: Runtime, username: str, address: str) -> None:
    """Count a failure against the user name and the address; drop failures past the window."""
    now = time.time()
    cutoff = now - runtime.settings.login_window_seconds
    oldest = await runtime.store.find(FAILURES, order_by="at", limit=PRUNE_BATCH)
    changes: dict[tuple[str, str], dict[str, Any] | None] = {
        (FAILURES, doc["id"]): None for doc in oldest if doc["at"] < cutoff
    }
    for counter, key in (("user", username), ("address", address)):
        failure_id = secrets.token_hex(16)
        changes[(FAILURES, failure_id)] = {
            "id": failure_id,
            "counter": counter,
            "key": key,
            "at": now,
        }
    await runtime.store.commit(CHECKPOINT, expected=0, position=0, changes=changes)
    log.info("login.failed", username=username, address=address)


async def succeeded(runtime: Runtime, username: str) -> None:
    """A right password resets the user's count (not the address's: one's own account must not
    wipe the failures against others')."""
    mine = await runtime.store.find(FAILURES, {"counter": "user", "key": username}, limit=10_000)
    if mine:
        changes: dict[tuple[str, str], dict[str, Any] | None] = {
            (FAILURES, doc["id"]): None for doc in mine
        }
        await runtime.store.commit(CHECKPOINT, expected=0, position=0, changes=changes)
