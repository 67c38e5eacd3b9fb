"""Where a webhook may post: only to public addresses, so nobody who may configure one can make
the API reach inside its own network (SSRF: the cloud metadata service, a database, a broker's
admin port). The receiver's host name is resolved when the webhook is configured and again
before each delivery (DNS can change); an inside address is refused unless
FERRY_WEBHOOK_ALLOW_HOSTS names the host, or a network holding the address.

A name could still change between this check and httpx's own lookup a moment later; the
check at each delivery narrows that window to milliseconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "FERRY_WEBHOOK_ALLOW_HOSTS"


class Unresolved(Exception):
    """The receiver's host name does not resolve (now)."""


def inside_kind(address: IPAddress) -> str | None:
    """Why the address is not public ('loopback', 'private', ...), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return inside_kind(embedded)
        if address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),  # e.g. carrier-grade NAT, 100.64.0.0/10
    )
    return next((kind for kind, applies in checks if applies), None)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _allowed(allow: Sequence[str]) -> tuple[set[str], list[Network]]:
    """The allow-list's host names (lowercase) and networks (an address is a /32 or /128)."""
    names: set[str] = set()
    networks: list[Network] = []
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return names, networks


async def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"host '{host}' does not resolve") from exc
    # A link-local IPv6 address may come with its interface: fe80::1%eth0.
    addresses = [ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]) for *_, sockaddr in found]
    # An IPv4 address written as IPv6 (::ffff:10.0.0.1) is that IPv4 address.
    return [a.ipv4_mapped or a if isinstance(a, ipaddress.IPv6Address) else a for a in addresses]


async def refusal(url: str, allow: Sequence[str]) -> str | None:
    """Why the API must not post to `url` (a sentence naming host and address), or None.
    Raises Unresolved if its host name does not resolve."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    names, networks = _allowed(allow)
    if host.lower() in names:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in await _addresses(host, port):
        kind = inside_kind(address)
        if kind and not any(address in network for network in networks):
            return (
                f"{host} is {address}, a {kind} address: webhooks post to public addresses "
                f"only, unless {ALLOW_SETTING} names the host or its network"
            )
    return None
