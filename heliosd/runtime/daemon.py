"""The daemon: startup stack, staged shutdown, signals, sd_notify, watchdog.

Resources open on an AsyncExitStack in the order store -> notifications -> exchanges/feeds ->
engine -> control API. SIGTERM/SIGINT (``systemctl stop``) send STOPPING=1 and run the staged
shutdown of :mod:`heliosd.runtime.shutdown`, each stage within its own budget: stop taking
orders (the control API answers 503 ``shutting_down`` except to reads, the engine stops),
let placements on the wire get their answer, drain the fills and statuses received and the
store's queue, flush the notification outbox, close the control API and the exchange
clients, and close the store, always. ``daemon.shutdown_timeout_s`` caps the whole, and the
worst case fits inside systemd's TimeoutStopSec (a test checks). A second signal cuts the
remaining stages short, but the store is still closed before the process exits (exit 1).
The signal handlers are removed when :meth:`Daemon.run` returns.

SIGHUP (``systemctl reload``) re-reads the config file the daemon was started with
(``settings.source``) and reloads the drop-in plugins, all or nothing
(:meth:`heliosd.runtime.service.Service.reload_plugins`): the drop-ins' sections take effect with
the new rules, gates and monitors, while core sections ([daemon], [risk], [valr] ...) stay
as started, each changed key logged "restart heliosd to apply". A reload that fails (file
missing or invalid, a bad key, a refused plugin) changes nothing, logs one error naming the
key and the file, and the daemon keeps running. Every reload is audited (actor "SIGHUP").

Before anything opens, :meth:`Daemon.run` takes the state directory's exclusive lock
(:mod:`heliosd.runtime.runlock`): a second daemon on the same directory raises
:class:`~heliosd.runtime.runlock.StateDirLocked` having opened nothing, and ``heliosd run`` exits
:data:`~heliosd.runtime.runlock.EXIT_LOCKED` (73) after one line naming the holder's pid.

The daemon also implements :class:`heliosd.control.backend.ControlBackend` (in
:mod:`heliosd.runtime.service`), so the control API drives the very objects that trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from heliosd.core.config import Settings
from heliosd.runtime.logs import register_settings_secrets
from heliosd.runtime.runlock import EXIT_LOCKED, RunLock
from heliosd.runtime.sdnotify import SdNotifier
from heliosd.runtime.service import Service
from heliosd.runtime.shutdown import Shutdown
from heliosd.runtime.shutdown_stages import service_stages

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops the restart loop
__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_LOCKED", "EXIT_OK", "Daemon", "DaemonState"]

# How long a thread may hold the GIL while another waits for it (CPython's default: 5 ms).
# The store's writer thread releases the GIL around every SQLite call and must win it back
# from the event loop each time; with the loop busy (a fill stream), each hand-off waited up
# to 5 ms, a group commit of a dozen statements up to ~60 ms. At 0.5 ms the p99 delay of a
# fill from the venue to its commit fell 5x at 15,000 fills/s (bench/RESULTS.md section 2);
# the extra switches cost nothing measurable when one thread is idle, which is the usual case.
GIL_SWITCH_INTERVAL_S = 0.0005


class DaemonState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Daemon:
    """Owns one :class:`Service` and its process-level concerns."""

    def __init__(
        self,
        settings: Settings,
        *,
        pm: Any = None,
        status_line: bool = False,
        lock: RunLock | None = None,
    ) -> None:
        self.settings = settings
        # Taken by run() unless the caller already holds it (the CLI takes it first).
        self.lock = lock or RunLock(settings.daemon.state_dir)
        self.state = DaemonState.STARTING
        self.service = Service(settings, pm=pm)
        self.sd = SdNotifier()
        self._stop = asyncio.Event()
        self._signals = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._status_line = status_line
        self.on_ready: list[Callable[[], None]] = []
        self._reload_lock = asyncio.Lock()
        self._reload_pending = False
        self._reloads: set[asyncio.Task[None]] = set()
        self._shutdown: Shutdown | None = None
        self._starting: asyncio.Task[None] | None = None
        self._start_cut = False

    # ------------------------------------------------------------------ signals

    def handle_signal(self, signum: int) -> None:
        """First SIGTERM/SIGINT: staged shutdown (during startup: once the start is done).
        Second: the remaining stages are cut short, or the start itself if it is still
        running, but the store still closes (never an exit with the database open)."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals >= 2 and self._starting is not None and not self._starting.done():
            log.error("second signal %s during startup: cutting the start short", name)
            self._start_cut = True
            self._starting.cancel()
            return
        if self._signals >= 2:
            log.error("second signal %s: cutting the shutdown short; closing the store", name)
            if self._shutdown is not None:
                self._shutdown.force(f"a second {name}")
            self._stop.set()
            return
        log.info("signal %s: shutting down", name)
        self._stop.set()

    def handle_reload(self) -> None:
        """SIGHUP: reload config and drop-ins in a task (never in the signal callback)."""
        if self.state is DaemonState.STARTING:
            # The file may have been edited after startup read it: reload once running.
            self._reload_pending = True
            log.info("SIGHUP during startup: reloading once heliosd is ready")
            return
        if self.state is not DaemonState.RUNNING:
            log.info("SIGHUP ignored: heliosd is %s", self.state)
            return
        task = asyncio.get_running_loop().create_task(self._reload())
        # The loop keeps only a weak reference to a task: hold it until it is done.
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        # Two quick SIGHUPs run one after the other: the second reads the file as it is
        # after the first applied, never interleaved with it.
        async with self._reload_lock:
            self.sd.reloading()
            try:
                result = await self.service.reload_plugins(actor="SIGHUP")
            except Exception as exc:
                log.error("reload refused, nothing changed, still running as before: %s", exc)
                return
            finally:
                self.sd.ready()
            # A plugin section may hold secrets of its own (p_secret): redact them from now on.
            register_settings_secrets(result.settings)
            # Each changed core key has its own warning (from the service); this is the sum.
            log.info("reloaded %s: drop-ins: %s; core keys changed but not applied: %s",
                     self.settings.source, ", ".join(r.name for r in result.dropins) or "none",
                     ", ".join(result.not_applied) or "none")  # fmt: skip

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        """Run until a signal or :meth:`request_stop`; raises StateDirLocked (before
        anything opened) if another daemon holds the state directory."""
        owned = not self.lock.held
        try:
            self.lock.acquire()
        except BaseException:
            self.state = DaemonState.STOPPED
            raise
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, GIL_SWITCH_INTERVAL_S))
        try:
            return await self._run()
        finally:
            sys.setswitchinterval(previous)  # an in-process daemon (tests) leaves no trace
            if owned:
                self.lock.release()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for signum in signums[:2]:
            loop.add_signal_handler(signum, self.handle_signal, signum)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.handle_reload)
        try:
            return await self._serve(loop)
        finally:
            # An in-process daemon (tests, demo) leaves the loop's signals as it found them.
            for signum in signums:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signum)

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> int:
        register_settings_secrets(self.settings)
        self._starting = loop.create_task(self.service.start())
        try:
            await self._starting
        except BaseException as exc:
            self.state = DaemonState.STOPPED
            with contextlib.suppress(Exception):
                await self.service.close()
            if isinstance(exc, asyncio.CancelledError) and self._start_cut:
                log.error("heliosd stopped during startup (a second signal); store closed")
                return EXIT_FAILURE
            raise
        self.state = DaemonState.RUNNING
        self.sd.ready()
        self.sd.status(self.service.status_text())
        interval = self.sd.watchdog_interval()
        if interval:
            self._tasks.append(loop.create_task(self._watchdog(interval / 2)))
        self._tasks.append(loop.create_task(self._status_updates()))
        for callback in self.on_ready:
            callback()
        log.info("heliosd ready (mode %s)", self.service.store_mode())
        if self._reload_pending:
            self.handle_reload()
        await self._stop.wait()
        return await self.shutdown()

    async def shutdown(self) -> int:
        """The staged shutdown (:mod:`heliosd.runtime.shutdown`): EXIT_OK when orderly."""
        self.state = DaemonState.STOPPING
        self.sd.stopping("shutting down")
        for task in self._tasks:
            task.cancel()
        shutdown = Shutdown(
            service_stages(self.service), total_s=float(self.settings.daemon.shutdown_timeout_s)
        )
        # One list: a stage's finding (a placement unanswered) keeps the run from being
        # recorded clean by the stage that writes the marker.
        self.service.shutdown_problems = shutdown.problems
        self._shutdown = shutdown
        if self._signals >= 2:
            shutdown.force("a second signal")
        orderly = await shutdown.run()
        self.state = DaemonState.STOPPED
        took = ", ".join(f"{k} {v:.2f} s" for k, v in shutdown.durations.items())
        log.info("heliosd stopped (%s; %s)", "orderly" if orderly else "not orderly", took)
        return EXIT_OK if orderly else EXIT_FAILURE

    async def _watchdog(self, period: float) -> None:
        # Ping only while the loop and the store answer: a wedged daemon gets restarted.
        while True:
            if await self.service.alive():
                self.sd.watchdog()
            await asyncio.sleep(period)

    async def _status_updates(self) -> None:
        while True:
            await asyncio.sleep(5)
            self.sd.status(self.service.status_text())
