"""``heliosd demo`` (what ``make run`` starts): the daemon doing its main job, offline.

It embeds the VALR simulator on loopback with a funded account and a trade-only key, a tiny
local notification receiver (so Apprise delivery is real and visible in
``<state_dir>/notifications.log``), and runs the daemon in PAPER with the demo strategy,
state under ``./var`` and the control socket at ``./var/heliosd.sock``. LIVE here means the
simulator's account, and every place that shows the venue says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from heliosd.core.config import Secret, Settings
from heliosd.core.pipes import stdout_gone
from heliosd.core.types import Mode, utcnow
from heliosd.core.venue import SIMULATOR_NOTE
from heliosd.runtime.runlock import RunLock

if TYPE_CHECKING:
    import pluggy

    from heliosd.runtime.daemon import Daemon
    from heliosd.runtime.service import Service

log = logging.getLogger("heliosd.demo")

DEMO_LABEL = "VALR simulator (demo account, not real money)"


async def _receiver(log_path: Path) -> tuple[web.AppRunner, int]:
    """Accept Apprise json:// posts and append them to a log file."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        try:
            data: Any = json.loads(body)
        except ValueError:
            data = {"raw": body[:500]}
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"received_at": utcnow().isoformat(), **data}) + "\n")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(port)


def demo_settings(
    state_dir: Path,
    *,
    rest_url: str,
    ws_url: str,
    key: str,
    secret: str,
    notify_url: str,
    engine: bool,
) -> tuple[Settings, pluggy.PluginManager]:
    from heliosd.plugins.manager import load_with_plugins

    path = resources.files("heliosd") / "etc" / "demo.toml"
    with resources.as_file(path) as real:
        settings, pm = load_with_plugins(real)
    state_dir = state_dir.resolve()
    settings = settings.replace(
        daemon=settings.daemon.replace(
            state_dir=state_dir, control_socket=state_dir / "heliosd.sock"
        ),
        valr=settings.valr.replace(
            rest_url=rest_url, ws_url=ws_url, api_key=Secret(key, "demo"),
            api_secret=Secret(secret, "demo"), label=DEMO_LABEL,
        ),
        notify=settings.notify.replace(urls=(Secret(notify_url, "demo"),)),
        engine=settings.engine.replace(
            strategy=settings.engine.strategy or "demo", autostart=engine
        ),
    )  # fmt: skip
    return settings, pm


async def _demo(
    state_dir: Path, lock: RunLock, *, engine: bool, status: bool, sim_port: int
) -> int:
    from heliosd.runtime.daemon import Daemon
    from heliosd.runtime.logs import setup_logging
    from heliosd.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=7, price_interval_s=0.5))
    await sim.start(port=sim_port)
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    sim.add_account("0")
    sim.add_api_key(key, secret, permissions=("View access", "Trade"), account_id="0",
                    label="heliosd demo")  # fmt: skip
    sim.fund("0", "ZAR", Decimal(100000))
    receiver, port = await _receiver(state_dir / "notifications.log")
    setup_logging("info")
    try:
        settings, pm = demo_settings(
            state_dir, rest_url=sim.rest_url, ws_url=sim.ws_url, key=key, secret=secret,
            notify_url=f"json://127.0.0.1:{port}/notify", engine=engine,
        )  # fmt: skip
        setup_logging(settings.daemon.log_level)
        daemon = Daemon(settings, pm=pm, lock=lock)
        ticker: list[asyncio.Task[None]] = []
        if status:

            def start_status() -> None:
                ticker.append(asyncio.get_running_loop().create_task(_status(daemon)))

            daemon.on_ready.append(start_status)
        print(
            f"heliosd demo: {DEMO_LABEL} at {sim.rest_url}; control socket "
            f"{settings.daemon.control_socket}\n  try: heliosctl --socket "
            f"{settings.daemon.control_socket} mode   (Ctrl-C stops)",
            file=sys.stderr,
        )
        code = await daemon.run()
        for t in ticker:
            t.cancel()
        return code
    finally:
        await receiver.cleanup()
        await sim.stop()


# On a terminal the status refreshes every second in the window title (log lines on stderr
# would overwrite, or be overwritten by, a line redrawn in place) and prints as a line of its
# own every STATUS_LINE_EVERY_S; elsewhere (a file, a pipe) only the lines, every 10 s.
STATUS_LINE_EVERY_S = 30


def status_label(mode: Mode) -> str:
    return f"LIVE {SIMULATOR_NOTE}" if mode is Mode.LIVE else "PAPER"


async def _status(daemon: Daemon) -> None:
    """The demo's status: the terminal's title, and a line of its own now and then."""
    tty = sys.stdout.isatty()
    service = daemon.service
    ticks = 0
    try:
        while True:
            # The first status a second after ready, then every second (tty) or 10 s.
            await asyncio.sleep(1 if tty or not ticks else 10)
            ticks += 1
            line = _status_line(service)
            if tty:
                # OSC 0: set the window title; printable text only (no escape injection).
                title = "".join(ch for ch in line[:200] if ch.isprintable())
                sys.stdout.write(f"\x1b]0;heliosd demo: {title}\x07")
                if ticks % STATUS_LINE_EVERY_S == 1:
                    sys.stdout.write(f"status: {line}\n")
                sys.stdout.flush()
            else:
                print(f"status: {line}", flush=True)
    except BrokenPipeError:
        # `heliosd demo | head -1`: the reader has what it wanted; stop as on Ctrl-C.
        stdout_gone()
        tty = False
        log.info("stdout closed: stopping the demo")
        daemon.request_stop()
    finally:
        if tty:
            with contextlib.suppress(OSError):
                sys.stdout.write("\x1b]0;\x07")  # give the terminal its title back
                sys.stdout.flush()


def _status_line(service: Service) -> str:
    """Mode (LIVE says it is the simulator), equity, P&L, drawdown, positions, fills."""
    store, breakers = service.store, service.breakers
    if store is None or breakers is None:
        return "status unavailable: not started"
    try:
        mode = store.mode_state().mode
        snap = service.ledgers[mode].peek(utcnow())
        positions = (
            ", ".join(
                f"{p} {format(q.normalize(), 'f')}"
                for p, q in service.ledgers[mode].positions().items()
                if q
            )
            or "none"
        )
        halt = breakers.halt_reason()
        line = (
            f"{status_label(mode)} | equity {snap.equity:,.2f} ZAR | day {snap.daily_pnl:+,.2f}"
            f" | dd {snap.drawdown_pct:.2f}% | positions {positions}"
            f" | fills {service.sinks[mode].fills_applied}" + (f" | HALTED: {halt}" if halt else "")
        )
    except Exception as exc:  # the status line must never take the demo down
        line = f"status unavailable: {exc}"
    return line


def run_demo(
    state_dir: Path, *, engine: bool = True, status: bool = True, sim_port: int = 0
) -> int:
    # Before the simulator and the receiver (which writes into the state directory): a
    # second demo on the same directory stops here (StateDirLocked: one line, exit 73).
    lock = RunLock(state_dir.resolve())
    lock.acquire()
    try:
        return asyncio.run(_demo(state_dir, lock, engine=engine, status=status,
                                 sim_port=sim_port))  # fmt: skip
    except KeyboardInterrupt:
        return 0
    finally:
        lock.release()
