"""The rsync daemon that serves exports read-only: one module per app, password auth, no listing.

The publisher writes the config and starts `rsync --daemon --no-detach` itself. The daemon
re-reads its config on every connection, so a new app needs only the file rewritten.
Hosts pull `rsync://<user>@<address>:<port>/<app>/<N>/`, as any of its users.

A daemon that cannot listen (the port is taken) fails the start with DaemonFailed; one that exits
later calls `on_exit` (the publisher stops) and its context raises DaemonFailed: a publisher must
never go on tagging releases that no host can pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import structlog
from ferry_events.validation import APP_NAME

log = structlog.get_logger()

# rsyncd runs it before each transfer, with the request in its environment (never in the
# command line). Only a request for a release whose export is missing runs the rebuild.
HOOK = """\
# Written by ferry-publisher: rsyncd's pre-xfer exec. Rebuilds a pruned export from its tag.
request=${{RSYNC_REQUEST%% *}}
case $request in */*) ;; *) exit 0 ;; esac
version=${{request#*/}}
version=${{version%%/*}}
version=${{version%.manifest}}
case $version in ''|*[!0-9]*) exit 0 ;; esac
[ -d "$RSYNC_MODULE_PATH/$version" ] && [ -f "$RSYNC_MODULE_PATH/$version.manifest" ] && exit 0
exec {rebuild} "$RSYNC_MODULE_PATH" "$RSYNC_MODULE_NAME" "$version"
"""


class DaemonFailed(RuntimeError):
    """The rsync daemon did not come up, or exited: the message says why, for the operator."""


class RsyncDaemon:
    def __init__(
        self,
        exports_dir: Path,
        run_dir: Path,
        *,
        address: str,
        port: int,
        user: str,
        password: str,
        hosts_allow: str,
        more_users: Mapping[str, str] | None = None,
        rebuild: Sequence[str] = (),
        chroot: bool | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.exports_dir = exports_dir.resolve()
        self.run_dir = run_dir.resolve()
        self.address, self.port, self.hosts_allow = address, port, hosts_allow
        self.user = user
        self._logins = {user: password, **(more_users or {})}
        self.config = self.run_dir / "rsyncd.conf"
        self.secrets = self.run_dir / "rsyncd.secrets"
        # The command that rebuilds a pruned export (reexport.py); none: no hook.
        self.rebuild = list(rebuild)
        self.hook = self.run_dir / "pre-xfer.sh"
        self._process: asyncio.subprocess.Process | None = None
        self._on_exit = on_exit  # called if the daemon exits before stop()
        self._watcher: asyncio.Task[None] | None = None
        self.failure: DaemonFailed | None = None
        # chroot needs root; None: chroot exactly when running as root.
        self.chroot = os.geteuid() == 0 if chroot is None else chroot

    def apps(self) -> list[str]:
        if not self.exports_dir.is_dir():
            return []
        names = (p.name for p in self.exports_dir.iterdir() if p.is_dir())
        # "global" would be read as rsyncd's own section, not a module.
        return sorted(n for n in names if re.match(APP_NAME, n) and n != "global")

    def config_text(self) -> str:
        lines = [
            "# Written by ferry-publisher: regenerated when an app appears; do not edit.",
            f"address = {self.address}",
            f"port = {self.port}",
            f"use chroot = {'yes' if self.chroot else 'no'}",
            "read only = yes",
            "write only = no",
            "list = no",
            # Off even without chroot (where it defaults to on): munging guards a module that
            # takes uploads and sends a read-only one's links verbatim anyway, and it never
            # stopped the daemon following a link already there. What keeps a host off the
            # rest of the disk is that no export holds a link out (tree_rules, at staging and
            # on export); rsync 3.5 also follows no link in a path a client asks for.
            "munge symlinks = no",
            "reverse lookup = no",
            "numeric ids = yes",
            "timeout = 600",
            f"hosts allow = {self.hosts_allow}",
            "hosts deny = *",
            f"auth users = {', '.join(self._logins)}",
            f"secrets file = {self.secrets}",
            "strict modes = yes",
            f"log file = {self.run_dir / 'rsyncd.log'}",
            "",
        ]
        hook = [f"pre-xfer exec = /bin/sh {shlex.quote(str(self.hook))}"] if self.rebuild else []
        for app in self.apps():
            lines += [
                f"[{app}]",
                f"path = {self.exports_dir / app}",
                f"comment = {app} releases",
                *hook,
                "",
            ]
        return "\n".join(lines)

    def write_config(self) -> None:
        """Write the secrets and config files (atomically, the secrets file 0600) when changed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.secrets, "".join(f"{u}:{p}\n" for u, p in self._logins.items()))
        if self.rebuild:
            _write_private(self.hook, HOOK.format(rebuild=shlex.join(self.rebuild)))
        text = self.config_text()
        if not self.config.exists() or self.config.read_text() != text:
            _write_private(self.config, text)
            log.info("rsyncd.configured", apps=self.apps(), port=self.port)

    async def start(self) -> None:
        self.write_config()
        self._check_port_free()
        self._process = await asyncio.create_subprocess_exec(
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={self.config}",
            stdin=asyncio.subprocess.DEVNULL,
        )
        await self._wait_listening()
        self._watcher = asyncio.create_task(self._watch())
        log.info("rsyncd.started", address=self.address, port=self.port, pid=self._process.pid)

    def _check_port_free(self) -> None:
        """Refuse at once, and say why, when another process holds the port: the daemon would
        exit, and a check by connecting would reach that other process instead."""
        try:
            family, kind, _, _, address = socket.getaddrinfo(
                self.address, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as rsync binds
                probe.bind(address)
        except OSError as error:
            raise DaemonFailed(
                f"the rsync daemon cannot listen on {self.address}:{self.port}: "
                f"{error.strerror or error} (another process holds the port? "
                "stop it or set FERRY_RSYNC_PORT)"
            ) from None

    async def _wait_listening(self, seconds: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            self._check_running()
            if await self._greets():
                self._check_running()
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise DaemonFailed(f"the rsync daemon did not listen on {self.address}:{self.port}")

    async def _greets(self) -> bool:
        """Whether an rsync daemon answers on the port (its `@RSYNCD:` greeting)."""
        try:
            async with asyncio.timeout(2):
                reader, writer = await asyncio.open_connection(self.address, self.port)
                try:
                    greeting = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError):
            return False
        return greeting.startswith(b"@RSYNCD:")

    def _check_running(self) -> None:
        assert self._process is not None
        if self._process.returncode is not None:
            raise DaemonFailed(self._exited_text("did not start"))

    async def _watch(self) -> None:
        assert self._process is not None
        await self._process.wait()
        self.failure = DaemonFailed(self._exited_text("stopped serving"))
        log.error("rsyncd.exited", returncode=self._process.returncode, error=str(self.failure))
        if self._on_exit is not None:
            self._on_exit()

    def _exited_text(self, what: str) -> str:
        assert self._process is not None
        logged = self.run_dir / "rsyncd.log"
        text = logged.read_text(errors="replace") if logged.exists() else ""
        last = text.strip().splitlines()[-2:]  # rsync's own words: "bind() failed: ..."
        said = f": {' / '.join(last)}" if last else ""
        return f"the rsync daemon {what} (exit {self._process.returncode}){said}"

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()  # stopping it is no failure
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._process and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None

    async def __aenter__(self) -> RsyncDaemon:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self.failure is not None and kind is None:
            raise self.failure


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)
