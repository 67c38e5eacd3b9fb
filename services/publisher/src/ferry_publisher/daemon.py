"""The publisher's rsync daemon as its settings describe it: the exports, every login, and the
command that rebuilds a pruned export."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ferry_publisher.rsyncd import RsyncDaemon
from ferry_publisher.settings import Settings


def rsync_daemon(settings: Settings, on_exit: Callable[[], None] | None = None) -> RsyncDaemon:
    """`on_exit`: what to do if the daemon exits while serving (the publisher: stop)."""
    logins = settings.rsync_logins()  # Settings refuses to start without a password
    return RsyncDaemon(
        settings.exports_dir,
        settings.home / "rsyncd",
        address=settings.rsync_address,
        port=settings.rsync_port,
        user=settings.rsync_user,
        password=logins.pop(settings.rsync_user),
        hosts_allow=settings.rsync_hosts_allow,
        more_users=logins,
        rebuild=[sys.executable, "-m", "ferry_publisher.reexport", str(settings.repos_dir)],
        on_exit=on_exit,
    )
