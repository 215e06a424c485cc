"""docs/plugins.md against the code: every hook with its exact signature, and every example
file on the page loaded as a drop-in into a real daemon and doing what the page says."""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.core.errors import AuthError, ExchangeRejected
from heliosd.core.protocols import (
    BreakerState,
    ExchangeContext,
    LedgerSnapshot,
    MarketSnapshot,
    MonitorContext,
    StrategyContext,
)
from heliosd.core.types import ActionKind, Mode, OrderType, PlaceRequest, Side, utcnow
from heliosd.plugins import hookspecs
from heliosd.testing import SimHandle, start_daemon, wait_for, write_config

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"
NOTIFY = "json://127.0.0.1:9/unused"


def hook_signatures() -> dict[str, str]:
    """``name(args) -> returns`` of every hook, as written in hookspecs.py."""
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {
        node.name: f"{node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("heliosd_")
        and node.returns is not None
    }  # fmt: skip


def examples() -> dict[str, str]:
    """The page's complete example files: ``{file name: source}``."""
    out = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL):
        first = block.splitlines()[0]
        if match := re.fullmatch(r"# file: (\w+\.py)", first):
            out[match.group(1)] = block
    return out


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    text = DOC.read_text()
    signatures = hook_signatures()
    assert len(signatures) == 9  # guards the parsing itself
    for signature in signatures.values():
        assert f"### `{signature}`" in text, f"docs/plugins.md lacks a heading `{signature}`"
    # ... and documents no hook that does not exist.
    documented = set(re.findall(r"^### `(heliosd_\w+)\(", text, flags=re.MULTILINE))
    assert documented == set(signatures)


def test_every_hook_has_a_runnable_example() -> None:
    sources = "\n".join(examples().values())
    for name in hook_signatures():
        assert re.search(rf"@hookimpl\ndef {name}\(", sources), f"no example implements {name}"
    for file_name, source in examples().items():
        compile(source, file_name, "exec")  # at least valid Python


@pytest.fixture(autouse=True)
def _forget_dropins() -> Iterator[None]:
    yield
    for name in [m for m in sys.modules if m.startswith("heliosd_dropin_")]:
        del sys.modules[name]


async def test_the_examples_load_into_a_real_daemon_and_work(
    sim: SimHandle, short_dir: Path
) -> None:
    plugin_dir = short_dir / "plugins"
    plugin_dir.mkdir()
    plugin_dir.chmod(0o755)
    for file_name, source in examples().items():
        (plugin_dir / file_name).write_text(source)
        (plugin_dir / file_name).chmod(0o644)
    flag = short_dir / "no-live"
    flag.touch()
    events = short_dir / "events.jsonl"
    extra = (
        f'[max_order_notional]\nmax_zar = 20000\n\n[no_live_flag]\npath = "{flag}"\n\n'
        f'[jsonl_notifier]\npath = "{events}"\n'
    )
    config = write_config(short_dir, sim, notify_url=NOTIFY, extra=extra)
    config.write_text(config.read_text().replace(
        "[daemon]\n", f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n', 1))  # fmt: skip
    running = await start_daemon(config)
    try:
        status, body = await running.request("GET", "/api/plugins")
        assert status == 200
        dropins = {p["name"]: p for p in body["plugins"] if p["kind"] == "dropin"}
        assert set(dropins) == {f"heliosd_dropin_{Path(f).stem}" for f in examples()}
        assert {h for p in dropins.values() for h in p["hooks"]} == set(hook_signatures())
        assert all(len(p["sha256"]) == 64 for p in dropins.values())
        assert {"fresh_quotes", "max_order_notional"} <= set(body["risk_rules"])
        assert "no_live_flag" in body["gates"]
        assert "equity_floor" in body["monitors"]
        assert "dca" in body["strategies"]
        assert "refuse_all" in body["exchanges"]
        assert "jsonl" in body["notifiers"]
        service = running.service
        await wait_for(lambda: service.market.price_for("BTCZAR", Side.BUY) is not None)

        # Risk rules: 0.03 BTC at about 1,000,500 ZAR is above 20,000 ZAR; 0.001 is not.
        order = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.03"}
        status, body = await running.request("POST", "/api/orders", order)
        assert status == 422, body
        assert "max_order_notional: order worth 30015.00 ZAR, above 20000 ZAR" in body["message"]
        status, body = await running.request("POST", "/api/orders", {**order, "quantity": "0.001"})
        assert status == 201, body
        rules = {v["rule"]: v["action"] for v in body["order"]["verdicts"]}
        assert rules["fresh_quotes"] == rules["max_order_notional"] == "accept"

        # The gate refuses LIVE while the flag file exists, naming it.
        status, body = await running.request("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409 and body["error"] == "gate_rejected", body
        assert f"{flag} exists (remove it to allow LIVE)" in body["message"]

        # The notifier receives the refusal through the outbox.
        await wait_for(lambda: events.exists() and "live_refused" in events.read_text())
        line = json.loads(events.read_text().splitlines()[-1])
        assert line["kind"] == "live_refused"

        # Exchange: the factory builds a client that refuses to trade.
        factory = service.registry.exchanges["refuse_all"]
        client = factory(ExchangeContext(service.settings, Mode.LIVE, service.market))
        request = PlaceRequest("c1", "BTCZAR", Side.BUY, OrderType.MARKET, Decimal("0.001"))
        with pytest.raises(ExchangeRejected, match="never trades LIVE"):
            await client.place(request)
        with pytest.raises(AuthError):
            await client.check_credentials()

        # Monitor: below the floor it asks for an emergency stop, once.
        [floor] = [m for m in service.registry.monitors if m.name == "equity_floor"]
        now = utcnow()
        low = LedgerSnapshot(
            Mode.LIVE, now, Decimal(40000), Decimal(100000), Decimal(100000), now, Decimal(0),
            Decimal(0), Decimal(0), Decimal(-60000), Decimal(60), Decimal(60), {},
        )  # fmt: skip
        action = floor.on_update(low, MonitorContext(service.settings, {}))
        assert action is not None and action.kind is ActionKind.EMERGENCY_STOP
        assert action.reason == "LIVE equity 40000.00 below 50000"
        tripped = BreakerState("emergency", True, "manual")
        assert (
            floor.on_update(low, MonitorContext(service.settings, {"emergency": tripped})) is None
        )

        # Strategy: one intent per hour, none without a price.
        dca = service.registry.strategies["dca"]
        quote = service.market.quote("BTCZAR")
        ctx = StrategyContext(service.settings, Mode.PAPER, service.ledgers[Mode.PAPER],
                              service.market, service.market.pairs(), now)  # fmt: skip
        assert dca.on_market(MarketSnapshot(now, {}), ctx) == []
        [intent] = dca.on_market(MarketSnapshot(now, {"BTCZAR": quote}), ctx)
        assert (intent.pair, intent.side, intent.quantity) == ("BTCZAR", Side.BUY,
                                                               Decimal("0.0005"))  # fmt: skip
        assert dca.on_market(MarketSnapshot(now, {"BTCZAR": quote}), ctx) == []
        later = StrategyContext(service.settings, Mode.PAPER, service.ledgers[Mode.PAPER],
                                service.market, service.market.pairs(),
                                now + timedelta(hours=1))  # fmt: skip
        assert len(dca.on_market(MarketSnapshot(now, {"BTCZAR": quote}), later)) == 1
    finally:
        await running.stop()


def test_the_docs_and_example_plugins_import_only_from_heliosd() -> None:
    """``heliosd`` is the one stable import path (issue 17): nothing a plugin author copies
    from docs/plugins.md or plugins/ imports from the modules behind it."""
    root = Path(__file__).resolve().parent.parent
    deep = re.compile(r"^\s*(from|import)\s+heliosd\.(?!testing\b)[\w.]+", re.MULTILINE)
    texts = {"docs/plugins.md": (root / "docs" / "plugins.md").read_text()}
    texts |= {f"plugins/{p.name}": p.read_text() for p in (root / "plugins").glob("*.py")}
    texts["plugins/README.md"] = (root / "plugins" / "README.md").read_text()
    found = {name: m.group(0).strip() for name, text in texts.items()
             if (m := deep.search(text)) is not None}  # fmt: skip
    assert found == {}
