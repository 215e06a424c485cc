"""How the running service treats plugins that do more, or worse, than the built-ins:

- a plugin monitor tripping its own breaker halts risk-increasing orders, shows in
  /api/risk, and a resume clears it;
- heliosd_startup / heliosd_shutdown are called with the DaemonView and its documented parts;
- an exchange client whose place() raises a foreign exception leaves the order SENT (its
  outcome is unknown) and the caller gets a clear 503, never a 500.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import SimHandle, config_text, start_daemon, wait_for

PLUGIN = textwrap.dedent(
    '''
    """Test drop-in: a monitor with its own breaker, lifecycle hooks, a broken venue."""
    from pathlib import Path

    from heliosd import Action, ActionKind, hookimpl
    from heliosd.builtin.paper import PaperExchange

    MARKER = Path(__file__).with_suffix(".log")
    ARMED = Path(__file__).with_suffix(".armed")


    class EquityFloor:
        name = "equity_floor"

        def on_update(self, snapshot, ctx):
            if ARMED.exists() and "equity_floor" not in ctx.breakers:
                return Action(ActionKind.HALT, "equity_floor", "armed by the test")
            return None


    class BrokenPaper(PaperExchange):
        name = "broken"

        async def place(self, request):
            raise RuntimeError("venue plugin bug")


    @hookimpl
    def heliosd_register_monitors(register, config):
        register(EquityFloor())


    @hookimpl
    def heliosd_register_exchanges(register, config):
        register("broken", BrokenPaper.from_context)


    def seen(daemon):
        """What a hook sees: the view's type, the mode, and which documented parts it has."""
        parts = ("settings", "store", "market", "ledgers", "router", "breakers")
        has = ",".join(p for p in parts if getattr(daemon, p, None) is not None)
        return f"{type(daemon).__name__} {daemon.mode} {has}"


    @hookimpl
    def heliosd_startup(daemon):
        line = "startup " + seen(daemon) + "\\n"
        MARKER.write_text(MARKER.read_text() + line if MARKER.exists() else line)


    @hookimpl
    def heliosd_shutdown(daemon):
        MARKER.write_text(MARKER.read_text() + "shutdown " + seen(daemon) + "\\n")
    '''
)


def make_config(directory: Path, sim: SimHandle, *, paper: str = "paper") -> Path:
    plugins = directory / "plugins"
    plugins.mkdir(mode=0o755, exist_ok=True)
    path = plugins / "testplug.py"
    path.write_text(PLUGIN)
    path.chmod(0o644)
    for name, value in (("valr_api_key", sim.key), ("valr_api_secret", sim.secret)):
        (directory / name).write_text(value)
    config = directory / "heliosd.toml"
    config.write_text(config_text(
        directory / "state", sim=sim, key_file=directory / "valr_api_key",
        secret_file=directory / "valr_api_secret",
        daemon_extra=f'plugin_dirs = ["{plugins}"]', extra=f'[exchange]\npaper = "{paper}"\n',
    ))  # fmt: skip
    return config


# What both lifecycle hooks see (docs/plugins.md, heliosd_startup): the view, not the service.
SEEN = "DaemonView PAPER settings,store,market,ledgers,router,breakers"

BUY = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001"}


wait_until = wait_for


async def test_plugin_breaker_halts_and_resume_clears(sim: SimHandle, short_dir: Path) -> None:
    config = make_config(short_dir, sim)
    running = await start_daemon(config)
    marker = short_dir / "plugins" / "testplug.log"
    try:
        assert marker.read_text() == f"startup {SEEN}\n"

        async def priced() -> bool:
            return running.service.market.mark("BTCZAR") is not None

        await wait_until(priced)
        (short_dir / "plugins" / "testplug.armed").touch()
        sim.sim.set_price("BTCZAR", _nudge(running))

        async def halted() -> bool:
            return bool((await running.request("GET", "/api/trading/mode"))[1]["halted"])

        await wait_until(halted)
        (short_dir / "plugins" / "testplug.armed").unlink()
        status, risk = await running.request("GET", "/api/risk")
        assert risk["breakers"]["equity_floor"]["tripped"] is True
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 422, body
        assert "breaker equity_floor is tripped" in body["message"]
        status, body = await running.request("POST", "/api/trading/resume", {"reason": "ok"})
        assert status == 200, body
        assert body["halted"] is False
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 201, body
    finally:
        await running.stop()
    assert marker.read_text() == f"startup {SEEN}\nshutdown {SEEN}\n"


def _nudge(running: Any) -> Any:
    """A price a little off the current mark: any quote makes the monitors run."""
    from decimal import Decimal

    mark = running.service.market.mark("BTCZAR")
    return (mark * Decimal("1.001")).quantize(Decimal(1))


@pytest.mark.logs_exception("venue plugin bug")
async def test_foreign_exception_from_place_leaves_order_sent(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(make_config(short_dir, sim, paper="broken"))
    try:

        async def priced() -> bool:
            return running.service.market.mark("BTCZAR") is not None

        await wait_until(priced)
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 503, body
        assert "venue plugin bug" in body["message"]
        order = body["details"]["order"]
        assert order["state"] == "sent"  # may have been sent: never assumed failed
        status, _ = await running.request("GET", "/api/health")
        assert status == 200
    finally:
        await running.stop()
