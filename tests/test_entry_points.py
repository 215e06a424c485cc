"""Entry-point plugins from a real installed distribution, without pip.

``importlib.metadata`` finds a distribution by its ``<name>-<version>.dist-info`` directory
(METADATA + entry_points.txt) on ``sys.path``, exactly as it finds one pip installed into
site-packages. Each test builds such a directory in a temporary dir next to the plugin's
module, then puts that dir on ``sys.path`` (in process) or on ``PYTHONPATH`` (a real
``heliosd run`` process). The plugin decides real orders through the real ExecutionRouter
and blocks a real switch to LIVE; a plugin that cannot be imported, or whose names clash
with another's, stops the daemon from starting (exit 78) with an error naming it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.config import DaemonSettings, Settings
from heliosd.core.errors import ConfigError, RiskRejected
from heliosd.core.types import Mode, OrderIntent, OrderState, OrderType, Side
from heliosd.plugins.manager import ENTRY_POINT_GROUP, collect, make_plugin_manager, plugin_records
from heliosd.testing import SimHandle, start_daemon, wait_for, write_config

NOTIFY = "json://127.0.0.1:9/unused"
MODULE_PREFIX = "hx_ep_"

# A desk's own package: a risk rule, a gate and a venue, all from one entry point.
DESK = """
from decimal import Decimal

from heliosd import GateResult, Verdict, hookimpl
from heliosd.builtin.paper import PaperExchange

CAP = Decimal("0.005")


class DeskMaxQuantity:
    name = "desk_max_quantity"

    def check(self, intent, ctx):
        if intent.quantity > CAP:
            return Verdict.reject(self.name, f"{intent.quantity} BTC is over the desk cap {CAP}")
        return Verdict.accept(self.name)


class DeskChangeWindow:
    name = "desk_change_window"

    async def check(self, ctx):
        return GateResult(self.name, False, "LIVE only inside the desk's change window")


class DeskPaper(PaperExchange):
    '''The paper venue under the desk's own name (what a wrapped venue would look like).'''


@hookimpl
def heliosd_register_risk_rules(register, config):
    register(DeskMaxQuantity())


@hookimpl
def heliosd_register_gates(register, config):
    register(DeskChangeWindow())


@hookimpl
def heliosd_register_exchanges(register, config):
    register("desk_paper", DeskPaper.from_context)
"""

BROKEN = """
import hx_ep_not_installed_dependency  # the package's dependency was never installed
"""

# Takes the name of a built-in limit: it must not replace (or sit beside) the core's.
SHADOW = """
from heliosd import Verdict, hookimpl


class Lenient:
    name = "position_limit"

    def check(self, intent, ctx):
        return Verdict.accept(self.name)


@hookimpl
def heliosd_register_risk_rules(register, config):
    register(Lenient())
"""


def make_distribution(
    root: Path,
    name: str,
    entry_points: Mapping[str, str],
    modules: Mapping[str, str],
    version: str = "1.0",
) -> Path:
    """What ``pip install`` leaves behind: modules plus ``<name>-<version>.dist-info``."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{ep} = {target}" for ep, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture(autouse=True)
def _forget_plugin_modules() -> Iterator[None]:
    """Each test's plugin modules come from its own dir: never from an earlier test's."""
    yield
    for name in [m for m in sys.modules if m.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site dir on sys.path (removed after the test) into which distributions are made."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def desk(site: Path) -> Path:
    return make_distribution(
        site, "helios-desk", {"desk": f"{MODULE_PREFIX}desk"}, {f"{MODULE_PREFIX}desk": DESK}
    )


def settings(blocked: tuple[str, ...] = ()) -> Settings:
    return Settings(daemon=DaemonSettings(blocked_plugins=blocked), source="test.toml")


def intent(quantity: str) -> OrderIntent:
    return OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, Decimal(quantity), Decimal(900000))


def limit_buy(quantity: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": quantity,
            "price": "900000", "reason": "entry-point test"}  # fmt: skip


# --------------------------------------------------------------------------- in process


def test_the_distribution_is_visible_to_importlib_metadata(installed: Path) -> None:
    # Guards the premise of every other test: no pip, yet a real distribution.
    desk(installed)
    [ep] = [e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    assert (ep.name, ep.value) == ("desk", f"{MODULE_PREFIX}desk")
    assert ep.dist is not None
    assert (ep.dist.name, ep.dist.version) == ("helios-desk", "1.0")


def test_the_manager_loads_registers_and_lists_the_entry_point(installed: Path) -> None:
    desk(installed)
    pm = make_plugin_manager(settings())

    [record] = [r for r in plugin_records(pm) if r.kind == "entrypoint"]
    assert (record.name, record.module) == ("desk", f"{MODULE_PREFIX}desk")
    assert record.path == str(installed / f"{MODULE_PREFIX}desk.py")
    assert record.essential is False
    assert record.hooks == [
        "heliosd_register_exchanges",
        "heliosd_register_gates",
        "heliosd_register_risk_rules",
    ]
    registry = collect(pm, settings())
    assert registry.owners["desk_max_quantity"] == "desk"
    assert registry.owners["desk_change_window"] == "desk"
    assert registry.kind_owners["exchanges"]["desk_paper"] == "desk"
    # Besides the core's, never instead of them.
    assert {"position_limit", "clock_skew"} <= set(registry.owners)


@pytest.mark.parametrize("blocked", ["desk", f"{MODULE_PREFIX}desk"])
def test_a_blocked_entry_point_is_never_imported(installed: Path, blocked: str) -> None:
    desk(installed)
    pm = make_plugin_manager(settings(blocked=(blocked,)))

    assert [r for r in plugin_records(pm) if r.kind == "entrypoint"] == []
    assert f"{MODULE_PREFIX}desk" not in sys.modules


async def test_the_rule_refuses_through_the_real_router_and_the_venue_is_used(
    installed: Path, sim: SimHandle, short_dir: Path
) -> None:
    desk(installed)
    config = write_config(short_dir, sim, notify_url=NOTIFY,
                          extra='[exchange]\npaper = "desk_paper"\n')  # fmt: skip
    running = await start_daemon(config)
    try:
        router = running.service.router
        assert "desk_max_quantity" in [r.name for r in router.rules]
        venue = running.service.clients[Mode.PAPER]
        assert type(venue).__module__ == f"{MODULE_PREFIX}desk"
        # Without a price the built-in limits refuse first ("No market price"): wait for one.
        await wait_for(lambda: running.service.market.quote("BTCZAR") is not None)

        with pytest.raises(RiskRejected) as refused:
            await router.submit(intent("0.01"), actor="test")
        assert refused.value.message == (
            "Order refused by risk rules: desk_max_quantity: 0.01 BTC is over the desk cap 0.005"
        )
        stored = refused.value.details["order"]
        assert stored["state"] == "rejected"
        assert await venue.open_orders() == []  # never sent

        placed = await router.submit(intent("0.001"), actor="test")
        assert placed["state"] == OrderState.PLACED.value
        [resting] = await venue.open_orders()
        assert resting.customer_order_id == placed["customer_order_id"]
    finally:
        await running.stop()


def test_a_plugin_that_fails_to_import_names_itself(installed: Path) -> None:
    make_distribution(installed, "helios-broken", {"broken": f"{MODULE_PREFIX}broken"},
                      {f"{MODULE_PREFIX}broken": BROKEN}, version="2.3")  # fmt: skip

    with pytest.raises(ConfigError) as err:
        make_plugin_manager(settings())
    assert err.value.message == (
        f"entry-point plugin 'broken' ({MODULE_PREFIX}broken, from helios-broken 2.3) failed "
        f"to import: ModuleNotFoundError: No module named '{MODULE_PREFIX}not_installed_dependency'"
    )


def test_an_entry_point_naming_a_missing_module_names_itself(installed: Path) -> None:
    make_distribution(installed, "helios-gone", {"gone": f"{MODULE_PREFIX}gone"}, {})

    with pytest.raises(ConfigError, match=r"^entry-point plugin 'gone' .*helios-gone 1\.0"):
        make_plugin_manager(settings())


def test_two_distributions_with_one_entry_point_name_are_refused(installed: Path) -> None:
    # pluggy's own loader would load the first and silently skip the second.
    make_distribution(installed, "helios-desk-a", {"desk": f"{MODULE_PREFIX}a"},
                      {f"{MODULE_PREFIX}a": DESK})  # fmt: skip
    make_distribution(installed, "helios-desk-b", {"desk": f"{MODULE_PREFIX}b"},
                      {f"{MODULE_PREFIX}b": DESK})  # fmt: skip

    with pytest.raises(ConfigError) as err:
        make_plugin_manager(settings())
    assert "entry-point plugin 'desk'" in err.value.message
    assert "helios-desk-a 1.0" in err.value.message
    assert "helios-desk-b 1.0" in err.value.message
    assert "has the same name as" in err.value.message


def test_an_entry_point_named_like_a_builtin_is_refused(installed: Path) -> None:
    make_distribution(installed, "helios-impostor", {"heliosd.builtin.limits": f"{MODULE_PREFIX}x"},
                      {f"{MODULE_PREFIX}x": DESK})  # fmt: skip

    with pytest.raises(ConfigError, match="has the same name as a built-in plugin"):
        make_plugin_manager(settings())
    assert f"{MODULE_PREFIX}x" not in sys.modules


def test_a_rule_named_like_a_builtin_limit_is_refused_naming_both(installed: Path) -> None:
    make_distribution(installed, "helios-shadow", {"shadow": f"{MODULE_PREFIX}shadow"},
                      {f"{MODULE_PREFIX}shadow": SHADOW})  # fmt: skip
    pm = make_plugin_manager(settings())

    with pytest.raises(ConfigError) as err:
        collect(pm, settings())
    assert err.value.message == (
        "duplicate risk_rules name 'position_limit': registered by heliosd.builtin.limits "
        "and by shadow"
    )


# --------------------------------------------------------------------------- a real process


def site_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


async def test_a_heliosd_process_loads_lists_and_obeys_the_entry_point(
    tmp_path: Path, sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    site = desk(tmp_path / "site")  # on PYTHONPATH of the daemon only, not of this test
    proc = heliosd_process(write_config(short_dir, sim, notify_url=NOTIFY))
    await proc.astart(env=site_env(site))
    try:
        status, body = await proc.arequest("GET", "/api/plugins")
        assert status == 200, body
        [record] = [p for p in body["plugins"] if p["kind"] == "entrypoint"]
        assert record["name"] == "desk"
        assert record["module"] == f"{MODULE_PREFIX}desk"
        assert record["path"] == str(site / f"{MODULE_PREFIX}desk.py")
        assert "desk_max_quantity" in body["risk_rules"]
        assert "desk_change_window" in body["gates"]
        assert "desk_paper" in body["exchanges"]
        assert "loaded entry-point plugin 'desk' (hx_ep_desk, from helios-desk 1.0)" in proc.logs()

        status, body = await proc.arequest("POST", "/api/orders", limit_buy("0.01"))
        assert status == 422, body
        assert body["error"] == "risk_rejected"
        assert body["message"] == (
            "Order refused by risk rules: desk_max_quantity: 0.01 BTC is over the desk cap 0.005"
        )
        assert body["details"]["order"]["state"] == "rejected"

        status, body = await proc.arequest("POST", "/api/orders", limit_buy("0.001"))
        assert status == 201, body
        assert body["order"]["state"] == "placed"

        # The gate from the same distribution refuses the switch to LIVE (after cancelling
        # the resting order, so "no pending orders" is not what refuses it).
        status, _ = await proc.arequest("DELETE", f"/api/orders/{body['order']['id']}")
        assert status == 200
        status, body = await proc.arequest("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409, body
        assert body["error"] == "gate_rejected"
        assert "LIVE only inside the desk's change window" in body["message"]
        status, body = await proc.arequest("GET", "/api/trading/mode")
        assert body["mode"] == "PAPER"
    finally:
        assert await proc.aterminate() == 0


def heliosd_run(config: Path, site: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``heliosd run`` with ``site`` on PYTHONPATH; it is expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config)],
        env={**os.environ, **site_env(site)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_a_daemon_with_a_broken_entry_point_does_not_start(
    tmp_path: Path, sim: SimHandle, short_dir: Path
) -> None:
    site = make_distribution(tmp_path / "site", "helios-broken", {"broken": f"{MODULE_PREFIX}b"},
                             {f"{MODULE_PREFIX}b": BROKEN})  # fmt: skip
    config = write_config(short_dir, sim, notify_url=NOTIFY)

    done = await asyncio.to_thread(heliosd_run, config, site)

    assert done.returncode == 78, done.stderr
    assert (
        "heliosd: configuration error: entry-point plugin 'broken' (hx_ep_b, from helios-broken "
        "1.0) failed to import: ModuleNotFoundError: No module named "
        "'hx_ep_not_installed_dependency'"
    ) in done.stderr
    assert not (short_dir / "state" / "heliosd.sock").exists()


async def test_a_daemon_whose_entry_point_shadows_a_limit_does_not_start(
    tmp_path: Path, sim: SimHandle, short_dir: Path
) -> None:
    site = make_distribution(tmp_path / "site", "helios-shadow", {"shadow": f"{MODULE_PREFIX}s"},
                             {f"{MODULE_PREFIX}s": SHADOW})  # fmt: skip
    config = write_config(short_dir, sim, notify_url=NOTIFY)

    done = await asyncio.to_thread(heliosd_run, config, site)

    assert done.returncode == 78, done.stderr
    assert (
        "duplicate risk_rules name 'position_limit': registered by heliosd.builtin.limits "
        "and by shadow"
    ) in done.stderr
