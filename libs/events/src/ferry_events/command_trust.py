"""The trust step of the agent runtime: whether a command came from the API at all, before
anything in it is believed. A command is obeyed only when a trusted key signed it (unchanged and
unexpired, signing.py), it is addressed to this agent (an rsync agent obeys only its own host's
syncs), its type is one this queue takes, and it was not handled before (a replay).

A command that fails here is refused and reported as AgentCommandRefused, which names no ticket
the API would act on: its content is unproven, so it may not fail (nor move) any ticket.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from ferry_events.agent_reports import ReportNotSent
from ferry_events.bus import REPORTS, Bus
from ferry_events.envelope import Message, StoredEvent
from ferry_events.schemas import AgentCommandRefused
from ferry_events.signing import (
    BadKey,
    CommandRefused,
    CommandVerifier,
    MalformedCommand,
    addressed_to,
    load_public_keys,
)

__all__ = ["NoTrustedKeys", "Trust", "refuse", "trusted_verifier"]

log = structlog.get_logger()

_SHORT = 200  # untrusted text that goes into the log and into a report is cut to this


class NoTrustedKeys(SystemExit):
    """An agent without a usable trusted key would refuse every command: it does not start."""


def trusted_verifier(sources: Sequence[str | Path], setting: str) -> CommandVerifier:
    """The verifier of the API's public keys named by an agent's setting (files or folders of
    `*.pub`); NoTrustedKeys, naming the setting, when there is none or one is unusable."""
    if not sources:
        raise NoTrustedKeys(
            f"no trusted key: set {setting} to the API's public key file (`ferry-api "
            "signing-key generate PATH` writes PATH.pub) or a directory of *.pub files"
        )
    try:
        return CommandVerifier(load_public_keys(list(sources)))
    except BadKey as error:
        raise NoTrustedKeys(f"{setting}: {error}") from None


@dataclass(frozen=True)
class Trust:
    """What an agent trusts: the API's keys and, for an rsync agent, its own host name."""

    verifier: CommandVerifier
    host: str | None = None

    def verified(self, message: Message, commands: Collection[str]) -> StoredEvent:
        """The command's stored event once it is the API's, this agent's and this queue's;
        CommandRefused (signing.py) with the reason otherwise."""
        try:
            event = self.verifier.verify(message)
            addressed = self.host is None or addressed_to(event, self.host)
        except MalformedCommand as malformed:
            # The API signed it: authentic. The check step fails it as the route's failure, so
            # its ticket does not wait for ever; only another host's is refused here.
            event = malformed.event
            addressed = self.host is None or event.data.get("host") in (None, self.host)
        if not addressed:
            named = str(event.data.get("host"))[:_SHORT]
            raise CommandRefused(f"addressed to host {named}, not {self.host}")
        if event.type not in commands:
            raise CommandRefused(f"{event.type[:_SHORT]} is not a command of this queue")
        return event


async def refuse(bus: Bus, agent: str, message: Message, reason: str) -> None:
    """Log the refusal (never the payload: it may hold secrets) and report it to the API."""
    command_type, command_id = message.type[:_SHORT], message.message_id[:_SHORT]
    log.error(
        "command.refused",
        agent=agent,
        type=command_type,
        message_id=command_id,
        sender=message.sender,
        reason=reason,
    )
    refusal = AgentCommandRefused(
        agent=agent[:_SHORT],
        command_type=command_type,
        command_event_id=command_id,
        reason=reason[:1000],
    )
    # A fresh id: nothing of an unproven command may choose the id of a fact in the log.
    try:
        await bus.publish(REPORTS, [Message.report(refusal)])
    except Exception as error:
        raise ReportNotSent(f"{refusal.type_name}: {type(error).__name__}: {error}") from error
