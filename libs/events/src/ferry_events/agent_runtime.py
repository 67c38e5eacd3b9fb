"""The one runtime of Ferry's agents: the bus and the agent's queue, the idempotent inbox, the check
of each command before its handler sees it, reports that answer the command, optional Prometheus
/metrics, background tasks, and stopping on SIGTERM/SIGINT. An agent's main.py describes itself
in an `Agent` and hands it to `serve`, which waits for a broker that is not up yet (bus_connect).

A command goes through four steps:

    trust    `Agent.trust` (command_trust.py): signed, unchanged, unexpired, addressed to this
             agent, this queue's type, not handled before (a broker's redelivery is no replay).
    read     the relayed StoredEvent and the agent's route for its type
    check    `CommandTaker.check`: the agent's checks (`Agent.checks`, in order), then the wire
             contract (the payload parses into the route's command type). THE place where an
             authentic command is refused before any handler sees it: a check raises
             `CommandRefused`, which is logged and reported as the route's failure event.
    handle   the route's handler, with a `report` that publishes on REPORTS (agent_reports.py)

What becomes a failure report, and what does not:

    not trusted      reported as AgentCommandRefused, never as the route's failure: a forged
                     command must not fail the ticket it names (the API records it apart)
    CommandRefused   a check said no: reported as "refused: <why>" (unless report=False)
    bus errors       `ReportNotSent` (a report could not be published: broker gone, nothing bound,
                     permission denied) or any BusError, anywhere in the exception's chain:
                     infrastructure, never the command's fault, so never reported (the report
                     would fail the same way, or blame the ticket for the broker). Re-raised to
                     the bus: a broker that lost the report (NotConfirmed) has the command held
                     and tried again until it is back; nothing bound or permission denied is
                     retried, then dead-lettered with the reason (bus.Bus.consume); a
                     redelivery reports under the same ids.
    CancelledError   the agent stops: not caught; the unacked command returns to its queue.
    anything else    a handler's bug or input it cannot handle (a file name it cannot encode):
                     reported as the route's failure event, with a reason naming only the
                     exception's class (its text may hold a path or a URL with a secret; the
                     traceback goes to the log), and acked: the ticket moves on instead of
                     waiting on retries that fail the same way. If a final report (completed or
                     failed) went out already, it is only logged: the command's answer stands.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import structlog
from pydantic import ValidationError

from ferry_events.agent_reports import Report, Reporter, ReportNotSent, answer
from ferry_events.bus import EVENTS, Bus, BusError, Handler
from ferry_events.bus_connect import open_bus_when_reachable
from ferry_events.command_trust import Trust, refuse
from ferry_events.envelope import Message, StoredEvent
from ferry_events.inbox import FileInbox, Inbox, idempotent
from ferry_events.registry import Event
from ferry_events.signing import CommandRefused as Untrusted

if TYPE_CHECKING:
    from ferry_events.agent_metrics import CommandMetrics

__all__ = [
    "Agent",
    "AgentSettings",
    "Check",
    "CommandHandler",
    "CommandRefused",
    "CommandTaker",
    "Incoming",
    "Report",
    "ReportNotSent",
    "Route",
    "Task",
    "Trust",
    "serve",
    "stop_on_signals",
]

C = TypeVar("C", bound=Event)
C_contra = TypeVar("C_contra", bound=Event, contravariant=True)
Task = Callable[[Bus], Coroutine[Any, Any, None]]

log = structlog.get_logger()


class CommandRefused(Exception):
    """A check refuses the command; its message is the reason. `report=False` refuses it in the
    log only (for a command whose sender may not speak for the ticket it names)."""

    def __init__(self, reason: str, *, report: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.report = reason, report


@dataclass(frozen=True)
class Incoming:
    """A command as it came off the bus, before it is trusted: what checks look at."""

    message: Message
    stored: StoredEvent


Check = Callable[[Incoming], None]  # raises CommandRefused


class CommandHandler(Protocol[C_contra]):
    """A handler, called as `handle(command, report=report)`: so `functools.partial` can bind
    what else it takes (`partial(stage_ticket, stager=stager)`)."""

    def __call__(self, command: C_contra, /, *, report: Report) -> Coroutine[Any, Any, None]: ...


@dataclass(frozen=True)
class Route(Generic[C]):
    """What the agent does with one command type, and the reports that end it."""

    command: type[C]
    handle: CommandHandler[C]
    completed: type[Event]
    failed: type[Event]  # built from the command's fields and a reason


class AgentSettings(Protocol):
    """What the runtime reads of an agent's settings."""

    @property
    def broker_url(self) -> str: ...

    @property
    def metrics_port(self) -> int: ...  # 0: no /metrics, and prometheus_client never imported

    @property
    def metrics_address(self) -> str: ...


@dataclass(frozen=True)
class Agent:
    """What an agent's main.py hands the runtime (the first six fields read well positionally)."""

    name: str  # in logs and in the reasons of failure reports
    queue: str
    routes: Sequence[Route[Any]]
    inbox: Path  # the FileInbox of handled message ids
    settings: AgentSettings
    metrics: Callable[[], CommandMetrics] | None = None  # made only when metrics_port is set
    bindings: Sequence[str] = ()  # default: each route's command type, on EVENTS
    prefetch: int = 4
    checks: Sequence[Check] = ()
    trust: Trust = field(kw_only=True)  # no default: an agent never obeys unsigned commands
    tasks: Sequence[Task] = ()  # run while serving, cancelled once the consumer has stopped
    details: Mapping[str, Any] = field(default_factory=dict)  # logged with agent.started


async def serve(agent: Agent, stop: asyncio.Event | None = None, bus: Bus | None = None) -> None:
    """Serve until `stop` is set (by default: on SIGTERM or SIGINT). The embedded demo hands in
    its in-process bus; otherwise the agent opens (and closes) its own."""
    stop = stop or stop_on_signals()
    agent.inbox.parent.mkdir(parents=True, exist_ok=True)
    inbox = FileInbox(agent.inbox)
    try:
        connection = bus or await open_bus_when_reachable(agent.settings.broker_url, stop)
        if connection is None:
            return  # told to stop while the broker was unreachable
        try:
            bindings = agent.bindings or [r.command.type_name for r in agent.routes]
            await connection.declare_queue(agent.queue, bindings, EVENTS)
            metrics = _metrics(agent)
            taker = CommandTaker(agent, connection, metrics, inbox)
            with _served(metrics, agent.settings):
                await _consume(agent, connection, taker, stop)
        finally:
            if bus is None:
                await connection.close()
    finally:
        inbox.close()


async def _consume(agent: Agent, bus: Bus, handler: Handler, stop: asyncio.Event) -> None:
    tasks = [asyncio.create_task(task(bus)) for task in agent.tasks]
    consumer = await bus.consume(agent.queue, handler, prefetch=agent.prefetch)
    log.info("agent.started", agent=agent.name, queue=agent.queue, **agent.details)
    try:
        await stop.wait()
        await consumer.stop()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    log.info("agent.stopped", agent=agent.name)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    return stop


class CommandTaker:
    """The bus handler of one agent: trust, read, check, handle, report."""

    def __init__(
        self, agent: Agent, bus: Bus, metrics: CommandMetrics | None, inbox: Inbox
    ) -> None:
        self._agent, self._bus, self._metrics, self._inbox = agent, bus, metrics, inbox
        self._routes = {route.command.type_name: route for route in agent.routes}
        self._once = idempotent(self._read, inbox)

    async def __call__(self, message: Message) -> None:
        try:
            self._agent.trust.verified(message, self._routes)
        except Untrusted as refusal:
            await refuse(self._bus, self._agent.name, message, refusal.reason)
            return
        # Seen and not redelivered by the broker: the same signed command sent again.
        if not message.redelivered and await self._inbox.seen(message.message_id):
            await refuse(self._bus, self._agent.name, message, "already handled: a replay")
            return
        await self._once(message)

    async def _read(self, message: Message) -> None:
        stored = message.stored_event()  # trusted: it parsed as one when it was verified
        # Bound for the whole command: the handler's log lines (its threads too) carry them.
        with structlog.contextvars.bound_contextvars(**_log_context(stored.data)):
            await self._take(message, stored)

    async def _take(self, message: Message, stored: StoredEvent) -> None:
        route = self._routes[stored.type]  # trust refused every other type
        reporter = Reporter(self._bus, stored)
        report = self._metrics.counting(reporter) if self._metrics else reporter
        try:
            command = self.check(Incoming(message, stored), route)
        except CommandRefused as refusal:
            log.error("command.refused", type=stored.type, reason=refusal.reason)
            if refusal.report:
                await _report_failure(stored, route, f"refused: {refusal.reason}", report)
            return
        await self._handle(stored, route, command, report, reporter)

    def check(self, incoming: Incoming, route: Route[C]) -> C:
        """Refuse (CommandRefused) what the handler must never see; return the typed command."""
        for check in self._agent.checks:
            check(incoming)
        try:
            command = incoming.stored.payload()
        except ValidationError as error:
            raise CommandRefused(_invalid(error)) from error
        if not isinstance(command, route.command):
            stored = incoming.stored
            unknown = f"{stored.type} v{stored.schema_version} is unknown to this agent"
            raise CommandRefused(unknown)
        return command

    async def _handle(
        self,
        stored: StoredEvent,
        route: Route[Any],
        command: Event,
        report: Report,
        reporter: Reporter,
    ) -> None:
        try:
            await route.handle(command, report=report)
        except Exception as error:
            if _from_the_bus(error):
                raise
            name = type(error).__name__
            if reporter.sent[route.completed] or reporter.sent[route.failed]:
                log.error("command.failed_after_report", error=name, exc_info=True)
                return
            log.error("command.crashed", error=name, exc_info=True)
            reason = f"the {self._agent.name} failed unexpectedly ({name}; see its log)"
            await _report_failure(stored, route, reason, report)


async def _report_failure(
    stored: StoredEvent, route: Route[Any], reason: str, report: Report
) -> None:
    try:
        failed = answer(stored.data, route.failed, reason=reason)
    except ValidationError:
        return  # nothing names a ticket to report to; the log line is all there is
    await report(failed)


def _log_context(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a command says about itself that every log line of its handling should carry."""
    keys = ("ticket_id", "app", "host", "version", "attempt")
    return {k: data[k] for k in keys if isinstance(data.get(k), str | int)}


def _invalid(error: ValidationError) -> str:
    return "an invalid command: " + "; ".join(
        f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in error.errors()
    )


def _from_the_bus(error: BaseException) -> bool:
    """Whether the bus failed somewhere in this exception's chain (a handler may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ReportNotSent | BusError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _metrics(agent: Agent) -> CommandMetrics | None:
    return agent.metrics() if agent.metrics is not None and agent.settings.metrics_port else None


@contextmanager
def _served(metrics: CommandMetrics | None, settings: AgentSettings) -> Iterator[None]:
    if metrics is None:
        yield
        return
    with metrics.served(settings.metrics_address, settings.metrics_port):
        yield
