"""The example drop-in rules of plugins/, installed the way an operator installs them.

Each file is copied into a plugin directory (mode 0644, owned by us), named by
``daemon.plugin_dirs`` of a real daemon's config, shown by GET /api/plugins with its sha256,
and must decide the next order placed through the control socket. A file dropped in after
start is picked up on SIGHUP by a real ``heliosd run`` process.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from heliosd.core.config import DaemonSettings, Settings
from heliosd.core.errors import ConfigError
from heliosd.core.types import Side
from heliosd.plugins.manager import load_with_plugins, make_plugin_manager
from heliosd.testing import RunningDaemon, SimHandle, start_daemon, wait_for, write_config

EXAMPLES = Path(__file__).resolve().parent.parent / "plugins"
NOTIFY = "json://127.0.0.1:9/unused"
# A held position to reduce: the paper account starts with some BTC besides its ZAR.
WITH_BTC = '[paper]\nstarting_balances = { ZAR = "100000", BTC = "0.01" }\n'


def install(plugin_dir: Path, name: str) -> Path:
    """``install -m 0644 plugins/<name>.py <plugin_dir>/``."""
    target = plugin_dir / f"{name}.py"
    shutil.copyfile(EXAMPLES / f"{name}.py", target)
    target.chmod(0o644)
    return target


def config_with(short_dir: Path, sim: SimHandle, plugin_dir: Path, extra: str = "") -> Path:
    """heliosd.testing's config with ``plugin_dirs`` added to its [daemon] table."""
    path = write_config(short_dir, sim, notify_url=NOTIFY, extra=extra)
    text = path.read_text().replace("[daemon]\n", f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n', 1)
    path.write_text(text)
    return path


async def prices(running: RunningDaemon, *pairs: str) -> None:
    market = running.service.market
    await wait_for(lambda: all(market.price_for(p, Side.BUY) is not None for p in pairs))


def buy(pair: str = "BTCZAR", quantity: str = "0.001", price: str | None = None) -> dict[str, str]:
    body = {"pair": pair, "side": "BUY", "type": "MARKET", "quantity": quantity, "reason": "t"}
    if price is not None:
        body |= {"type": "LIMIT", "price": price}
    return body


def sell(quantity: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": "SELL", "type": "MARKET", "quantity": quantity}


def verdict(order: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [v for v in order["verdicts"] if v["rule"] == rule]
    return found


async def assert_listed(request: Any, path: Path, rule: str) -> None:
    """GET /api/plugins names the file, its sha256 and the rule it registered."""
    status, body = await request("GET", "/api/plugins")
    assert status == 200, body
    [record] = [p for p in body["plugins"] if p["kind"] == "dropin"]
    assert record["name"] == f"heliosd_dropin_{path.stem}"
    assert record["path"] == str(path)
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["essential"] is False
    assert "heliosd_register_risk_rules" in record["hooks"]
    assert rule in body["risk_rules"]


async def refused(running: RunningDaemon, body: dict[str, str], rule: str) -> dict[str, Any]:
    status, answer = await running.request("POST", "/api/orders", body)
    assert status == 422, answer
    assert answer["error"] == "risk_rejected"
    assert answer["message"].startswith(f"Order refused by risk rules: {rule}: ")
    found = verdict(answer["details"]["order"], rule)
    assert found["action"] == "reject"
    assert answer["details"]["order"]["state"] == "rejected"
    return found


async def placed(running: RunningDaemon, body: dict[str, str]) -> dict[str, Any]:
    status, answer = await running.request("POST", "/api/orders", body)
    assert status == 201, answer
    result: dict[str, Any] = answer["order"]
    return result


# --------------------------------------------------------------------------- max_open_orders


async def test_max_open_orders_refuses_the_order_past_the_cap(
    sim: SimHandle, short_dir: Path, plugin_dir: Path
) -> None:
    path = install(plugin_dir, "max_open_orders")
    extra = WITH_BTC + "\n[max_open_orders]\nmax_open = 3\nmax_open_per_pair = 2\n"
    running = await start_daemon(config_with(short_dir, sim, plugin_dir, extra))
    try:
        await assert_listed(running.request, path, "max_open_orders")
        await prices(running, "BTCZAR", "ETHZAR")

        # Limit BUYs well below the market rest on the paper book.
        first = await placed(running, buy(price="900000"))
        assert first["state"] == "placed"
        assert verdict(first, "max_open_orders")["action"] == "accept"
        await placed(running, buy(price="900000"))
        rejected = await refused(running, buy(price="900000"), "max_open_orders")
        assert rejected["reason"] == (
            "2 BTCZAR orders already open in PAPER (limit 2 per pair); "
            "cancel some or wait for fills"
        )
        await placed(running, buy("ETHZAR", "0.01", price="40000"))  # 3 open in all
        rejected = await refused(running, buy("ETHZAR", "0.01", price="40000"), "max_open_orders")
        assert rejected["reason"] == (
            "3 orders already open in PAPER (limit 3); cancel some or wait for fills"
        )
        assert rejected["details"] == {"open": "3", "limit": "3"}

        # A reducing MARKET order never rests: it passes even at the cap.
        sold = await placed(running, sell("0.005"))
        assert verdict(sold, "max_open_orders")["reason"] == "a reducing market order never rests"
        # A resting order counts, even a reducing one.
        await refused(running, {**sell("0.001"), "type": "LIMIT", "price": "2000000"},
                      "max_open_orders")  # fmt: skip

        # Cancelling one makes room for exactly one more.
        status, body = await running.request("DELETE", f"/api/orders/{first['id']}")
        assert status == 200 and body["order"]["state"] == "cancelled", body
        await placed(running, buy("ETHZAR", "0.01", price="40000"))
        await refused(running, buy("ETHZAR", "0.01", price="40000"), "max_open_orders")
    finally:
        await running.stop()


# --------------------------------------------------------------------------- rate


async def test_max_orders_per_minute_refuses_past_the_rate(
    sim: SimHandle, short_dir: Path, plugin_dir: Path
) -> None:
    path = install(plugin_dir, "max_orders_per_minute")
    extra = WITH_BTC + "\n[max_orders_per_minute]\nmax_orders = 2\n"
    running = await start_daemon(config_with(short_dir, sim, plugin_dir, extra))
    try:
        await assert_listed(running.request, path, "max_orders_per_minute")
        await prices(running, "BTCZAR")
        for _ in range(2):
            ok = await placed(running, buy())
            assert verdict(ok, "max_orders_per_minute")["action"] == "accept"
        rejected = await refused(running, buy(), "max_orders_per_minute")
        assert rejected["reason"] == (
            "2 orders sent in the last 60 s in PAPER (limit 2 per minute); only reducing "
            "orders pass until the rate drops"
        )
        # Refused orders never reached a venue, so they do not count; reducing ones pass.
        await refused(running, buy(), "max_orders_per_minute")
        sold = await placed(running, sell("0.001"))
        assert verdict(sold, "max_orders_per_minute") == {
            "rule": "max_orders_per_minute", "action": "accept", "reason": "reduces the position",
        }  # fmt: skip
        rejected = await refused(running, buy(), "max_orders_per_minute")
        assert rejected["details"] == {"sent": "3", "limit": "2"}
        # The window is per mode: LIVE has its full allowance (checked without sending).
        from heliosd.core.types import Mode, OrderIntent, OrderType

        intent = OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, Decimal("0.001"))
        evaluation = await running.service.router.evaluate(intent, Mode.LIVE)
        assert evaluation.quantity == Decimal("0.001")
        assert next(v for v in evaluation.verdicts if v.rule == "max_orders_per_minute").reason == (
            "within the order rate limit"
        )
    finally:
        await running.stop()


# --------------------------------------------------------------------------- trading hours


async def test_trading_hours_refuses_new_risk_outside_the_sessions(
    sim: SimHandle, short_dir: Path, plugin_dir: Path
) -> None:
    path = install(plugin_dir, "trading_hours")
    # Open all day, but only on days that are not yesterday, today or tomorrow there:
    # whatever the clock says while the test runs, now is outside.
    zone = ZoneInfo("Pacific/Auckland")
    today = datetime.now(UTC).astimezone(zone).weekday()
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    days = [names[d] for d in range(7) if (d - today) % 7 not in (6, 0, 1)]
    extra = WITH_BTC + (
        f'\n[trading_hours]\ndays = {days!r}\nstart = "00:00"\nend = "24:00"\n'
        'timezone = "Pacific/Auckland"\n'
    ).replace("'", '"')
    running = await start_daemon(config_with(short_dir, sim, plugin_dir, extra))
    try:
        await assert_listed(running.request, path, "trading_hours")
        await prices(running, "BTCZAR")
        rejected = await refused(running, buy(), "trading_hours")
        hours = f"{','.join(days)} 00:00-24:00 Pacific/Auckland"
        assert rejected["reason"].startswith(f"outside trading hours ({hours}; now ")
        assert rejected["reason"].endswith("); only reducing orders pass")
        now_day = rejected["reason"].split("; now ")[1][:3]
        assert now_day in names and now_day not in days
        assert rejected["details"]["hours"] == hours
        # Closing a position is possible at any hour.
        sold = await placed(running, sell("0.005"))
        assert (
            verdict(sold, "trading_hours")["reason"] == "outside trading hours; the order reduces"
        )
    finally:
        await running.stop()


def load_example(tmp_path: Path, name: str) -> ModuleType:
    """Load an example through the real drop-in loader and return its module."""
    directory = tmp_path / "plugins"
    directory.mkdir(exist_ok=True)
    install(directory, name)
    pm = make_plugin_manager(Settings(daemon=DaemonSettings(plugin_dirs=(directory,))), builtins=())
    module = pm.get_plugin(f"heliosd_dropin_{name}")
    assert isinstance(module, ModuleType)
    return module


def test_trading_hours_schedule_edges(tmp_path: Path) -> None:
    th = load_example(tmp_path, "trading_hours")
    # 2024-06-07 is a Friday.
    fri = datetime(2024, 6, 7, tzinfo=ZoneInfo("Africa/Johannesburg"))

    office = th.parse({}, "t.toml")  # the defaults: mon-fri 08:00-17:00
    assert office.is_open(fri.replace(hour=8))
    assert office.is_open(fri.replace(hour=16, minute=59))
    assert not office.is_open(fri.replace(hour=17))  # end is exclusive
    assert not office.is_open(fri.replace(hour=7, minute=59))
    assert not office.is_open(fri.replace(hour=12) + timedelta(days=1))  # Saturday

    night = th.parse({"days": ["FRI"], "start": "22:00", "end": "06:00"}, "t.toml")
    assert night.is_open(fri.replace(hour=23))
    assert night.is_open(fri.replace(hour=5, minute=59) + timedelta(days=1))  # Sat morning
    assert not night.is_open(fri.replace(hour=3))  # Friday morning belongs to Thursday
    assert not night.is_open(fri.replace(hour=6) + timedelta(days=1))

    always = th.parse({"days": [*th.DAY_NAMES], "start": "00:00", "end": "24:00"}, "t.toml")
    assert always.is_open(fri.replace(hour=23, minute=59))
    assert always.is_open(fri)


@pytest.mark.parametrize(
    ("name", "table", "key", "message"),
    [
        ("trading_hours", {"start": "8:00"}, "trading_hours.start", 'a time like "08:00"'),
        ("trading_hours", {"end": "24:01"}, "trading_hours.end", "between 00:00 and 24:00"),
        ("trading_hours", {"start": "09:00", "end": "09:00"}, "trading_hours.end", "ambiguous"),
        ("trading_hours", {"days": ["mo"]}, "trading_hours.days", "unknown day 'mo'"),
        ("trading_hours", {"days": []}, "trading_hours.days", "at least one day"),
        ("trading_hours", {"timezone": "Mars/Base"}, "trading_hours.timezone", "unknown time"),
        ("trading_hours", {"open": "08:00"}, "trading_hours.open", "unknown key"),
        ("max_open_orders", {"max_open": 0}, "max_open_orders.max_open", "at least 1"),
        ("max_open_orders", {"max_open": "5"}, "max_open_orders.max_open", "an integer"),
        ("max_open_orders", {"max_open_per_pair": -1}, "max_open_orders.max_open_per_pair",
         "0 (off) or more"),
        ("max_orders_per_minute", {"max_orders": 0}, "max_orders_per_minute.max_orders",
         "at least 1"),
        ("max_orders_per_minute", {"per_second": 1}, "max_orders_per_minute.per_second",
         "unknown key"),
    ],
)  # fmt: skip
def test_bad_settings_fail_startup_naming_the_key(
    tmp_path: Path, name: str, table: dict[str, Any], key: str, message: str
) -> None:
    directory = tmp_path / "plugins"
    directory.mkdir()
    install(directory, name)
    lines = [f"{k} = {_toml(v)}" for k, v in table.items()]
    config = tmp_path / "heliosd.toml"
    config.write_text(f'[daemon]\nplugin_dirs = ["{directory}"]\n\n[{name}]\n' + "\n".join(lines))
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_with_plugins(config)
    assert caught.value.key == key
    assert caught.value.source == str(config)


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


# --------------------------------------------------------------------------- SIGHUP


@pytest.mark.slow
async def test_a_rule_dropped_in_after_start_applies_after_sighup(
    sim: SimHandle, short_dir: Path, plugin_dir: Path, heliosd_process: Any
) -> None:
    proc = heliosd_process(config_with(short_dir, sim, plugin_dir))
    await proc.astart()
    try:
        status, body = await proc.arequest("GET", "/api/plugins")
        assert "max_open_orders" not in body["risk_rules"]
        # Eleven resting orders: nothing caps them yet.
        for _ in range(11):
            status, body = await proc.arequest("POST", "/api/orders", buy(price="900000"))
            assert status == 201, body

        # The example runs with its defaults (max_open = 10): the daemon parsed its config
        # before the file existed.
        path = install(plugin_dir, "max_open_orders")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)

        async def rules() -> list[str]:
            return list((await proc.arequest("GET", "/api/plugins"))[1]["risk_rules"])

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while "max_open_orders" not in await rules():
            assert loop.time() < deadline, proc.logs()
            await asyncio.sleep(0.05)
        await assert_listed(proc.arequest, path, "max_open_orders")
        assert f"sha256={hashlib.sha256(path.read_bytes()).hexdigest()}" in proc.logs()

        status, body = await proc.arequest("POST", "/api/orders", buy(price="900000"))
        assert status == 422, body
        assert body["message"] == (
            "Order refused by risk rules: max_open_orders: 11 orders already open in PAPER "
            "(limit 10); cancel some or wait for fills"
        )
    finally:
        assert await proc.aterminate() == 0
