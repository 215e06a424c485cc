"""The systemd notify protocol (sd_notify(3)) without a dependency.

One datagram per call to ``$NOTIFY_SOCKET`` (a filesystem path, or an abstract socket written
``@name``). When the variable is unset (not under systemd, or ``Type=simple``) every call is a
no-op returning False, so the daemon calls these unconditionally.

Sending never blocks the event loop and never raises: the socket is non-blocking, and a
failure is logged once and reported as False. Losing a notification is harmless except for
the watchdog, which is why the daemon pings at half of :meth:`SdNotifier.watchdog_interval`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class SdNotifier:
    """Sends READY/STOPPING/STATUS/WATCHDOG messages to systemd.

    ``env`` defaults to ``os.environ``, read once at construction (tests pass their own).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._env = dict(env)
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._warned = False

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            return "\0" + value[1:]  # Linux abstract namespace
        if value.startswith("/"):
            return value
        # vsock:CID:PORT (VMs) and relative paths are not for a service on the host.
        logger.warning("NOTIFY_SOCKET %r is not a supported address; not notifying", value)
        return None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one datagram; True when it was sent."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd: %s", exc.strerror or exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup finished: systemd marks the unit active (Type=notify)."""
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status is not None:
            fields.append(_status_field(status))
        return self.notify(*fields)

    def stopping(self, status: str | None = None) -> bool:
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append(_status_field(status))
        return self.notify(*fields)

    def reloading(self) -> bool:
        """A SIGHUP reload began (Type=notify-reload wants the monotonic stamp too)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> bool:
        """The one-line status ``systemctl status`` shows."""
        return self.notify(_status_field(text))

    def watchdog(self) -> bool:
        """Tell the watchdog the main loop is alive."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time for the current start-up or shutdown step."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """``WatchdogSec`` in seconds, or None when no watchdog applies to this process.

        From ``$WATCHDOG_USEC``; ``$WATCHDOG_PID``, when set, must be our pid (otherwise the
        variables were inherited from a parent the watchdog is really for).
        """
        pid = self._env.get("WATCHDOG_PID")
        if pid and (not pid.isdigit() or int(pid) != os.getpid()):
            return None
        usec = self._env.get("WATCHDOG_USEC", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        return int(usec) / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status_field(text: str) -> str:
    # A newline would start a new field: a status could otherwise forge READY=1.
    return "STATUS=" + " ".join(text.splitlines())
