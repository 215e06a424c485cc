"""The demo crossover strategy, driven by synthetic quote sequences through a real MarketData
and a real Ledger; and by the simulator's own price path, to show it trades within a minute."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pluggy
import pytest

from heliosd.builtin import demo_strategy as demo_module
from heliosd.builtin.demo_strategy import DemoSettings, DemoStrategy
from heliosd.builtin.sizing import kelly_quantity
from heliosd.core.config import Settings, parse_settings
from heliosd.core.errors import ConfigError
from heliosd.core.protocols import MarketSnapshot, Strategy, StrategyContext
from heliosd.core.types import Fill, Mode, OrderIntent, OrderType, Quote, Side
from heliosd.plugins import hookspecs
from heliosd.risk.ledger import Ledger
from heliosd.sim.prices import PricePath
from heliosd.trading.marketdata import MarketData

D = Decimal
T0 = datetime(2025, 6, 17, 12, 0, tzinfo=UTC)
# Tiny windows so every decision below can be checked by hand: SMA2 against SMA4, no band.
SMALL = DemoSettings(short_window=2, long_window=4, threshold_bps=D(0))


class Feed:
    """Feeds quotes into a real MarketData and asks the strategy, as the engine would."""

    def __init__(self, strategy: DemoStrategy, starting: Mapping[str, Decimal] | None = None):
        self.strategy = strategy
        self.settings = Settings()
        self.market = MarketData()
        self.ledger = Ledger(
            Mode.PAPER, "ZAR", self.settings.risk.tz, self.market.pairs(), self.market,
            starting or {"ZAR": D(100000)},
        )  # fmt: skip
        self.now = T0

    def step(self, mids: Mapping[str, Decimal], *, new: bool = True) -> list[OrderIntent]:
        if new:
            self.now += timedelta(seconds=1)
            for pair, mid in mids.items():
                half = D(500) if pair == "BTCZAR" else D(25)
                self.market.update(Quote(pair, mid - half, mid + half, mid, self.now))
        snapshot = MarketSnapshot(self.now, self.market.quotes())
        ctx = StrategyContext(
            settings=self.settings, mode=Mode.PAPER, ledger=self.ledger, market=self.market,
            pairs=self.market.pairs(), now=self.now,
        )  # fmt: skip
        return self.strategy.on_market(snapshot, ctx)

    def run(self, pair: str, mids: Iterable[int]) -> list[list[OrderIntent]]:
        return [self.step({pair: D(m)}) for m in mids]

    def fill(self, intent: OrderIntent, price: Decimal) -> None:
        self.ledger.apply_fill(Fill(f"t{self.now.timestamp()}", intent.pair, intent.side, price,
                                    intent.quantity, D(0), "ZAR", self.now))  # fmt: skip


# --------------------------------------------------------------------------- decisions


def test_nothing_happens_until_the_long_window_is_full() -> None:
    feed = Feed(DemoStrategy(SMALL))
    assert feed.run("BTCZAR", [1040000, 1030000, 1020000]) == [[], [], []]


def test_an_up_cross_while_flat_buys_a_half_kelly_quantity() -> None:
    feed = Feed(DemoStrategy(SMALL))
    # Falling: SMA2 1,015,000 < SMA4 1,025,000: the starting side is "below", not a cross.
    assert feed.run("BTCZAR", [1040000, 1030000, 1020000, 1010000]) == [[], [], [], []]
    # 1,060,000: SMA2 (1,010,000 + 1,060,000) / 2 = 1,035,000 > SMA4 4,120,000 / 4 = 1,030,000.
    (intents,) = feed.run("BTCZAR", [1060000])
    assert len(intents) == 1
    (intent,) = intents
    assert (intent.pair, intent.side, intent.type) == ("BTCZAR", Side.BUY, OrderType.MARKET)
    # Kelly 0.53 - 0.47 / 1 = 6 %, halved (risk.kelly_fraction 0.5) = 3 % of 100,000 ZAR at the
    # ask 1,060,500: 3,000 / 1,060,500 = 0.0028288543... -> 0.00282885 (8 decimals, down).
    assert intent.quantity == D("0.00282885")
    assert intent.quantity == kelly_quantity(
        D(100000), D(1060500), D("0.53"), D(1), D("0.5"), D(18), feed.market.pairs()["BTCZAR"]
    )
    assert intent.reason == "demo: up-cross, SMA2 1035000.00 > SMA4 1030000.00"


def test_a_down_cross_sells_exactly_what_is_held() -> None:
    feed = Feed(DemoStrategy(SMALL))
    feed.run("BTCZAR", [1040000, 1030000, 1020000, 1010000])
    ((bought,),) = feed.run("BTCZAR", [1060000])
    feed.fill(bought, D(1060500))
    # Still above: hold. Window 1,030,000 1,020,000 1,010,000 1,060,000 -> 1,020,000 1,010,000
    # 1,060,000 1,050,000: SMA2 1,055,000 > SMA4 1,035,000.
    assert feed.run("BTCZAR", [1050000]) == [[]]
    # 950,000: SMA2 1,000,000 < SMA4 (1,010,000 + 1,060,000 + 1,050,000 + 950,000) / 4.
    ((sold,),) = feed.run("BTCZAR", [950000])
    assert (sold.side, sold.type, sold.quantity) == (Side.SELL, OrderType.MARKET, D("0.00282885"))
    assert sold.reason.startswith("demo: down-cross, SMA2 1000000.00 < SMA4 1017500.00")


def test_a_down_cross_while_flat_and_an_up_cross_while_holding_do_nothing() -> None:
    feed = Feed(DemoStrategy(SMALL), starting={"ZAR": D(100000)})
    # Rising then falling: the starting side is "above", the fall is a down-cross, flat.
    assert feed.run("BTCZAR", [1000000, 1010000, 1020000, 1030000, 900000]) == [[]] * 5

    holder = Feed(DemoStrategy(SMALL), starting={"ZAR": D(100000), "BTC": D("0.01")})
    # Falling then an up-cross, but 0.01 BTC is already held: no second buy.
    assert holder.run("BTCZAR", [1040000, 1030000, 1020000, 1010000, 1060000]) == [[]] * 5


def test_dust_counts_as_flat() -> None:
    feed = Feed(DemoStrategy(SMALL), starting={"ZAR": D(100000), "BTC": D("0.00005")})
    intents = feed.run("BTCZAR", [1040000, 1030000, 1020000, 1010000, 1060000])
    assert [len(i) for i in intents] == [0, 0, 0, 0, 1]
    assert intents[-1][0].side is Side.BUY


def test_a_quote_seen_again_is_not_a_new_sample() -> None:
    feed = Feed(DemoStrategy(SMALL))
    feed.run("BTCZAR", [1040000, 1030000, 1020000])
    # The engine's interval ticks show the same quote again and again: nothing changes.
    for _ in range(10):
        assert feed.step({}, new=False) == []
    feed.run("BTCZAR", [1010000])
    assert feed.run("BTCZAR", [1060000])[0][0].side is Side.BUY


def test_a_wobble_inside_the_band_is_not_a_cross() -> None:
    below = [1010000, 1010000, 1010000, 1000000]  # SMA2 1,005,000 < SMA4 1,007,500: 25 bps
    # 1,022,000: SMA2 1,011,000 vs SMA4 1,010,500, 500 ZAR = 4.9 bps above.
    banded = Feed(DemoStrategy(DemoSettings(short_window=2, long_window=4, threshold_bps=D(10))))
    banded.run("BTCZAR", below)
    assert banded.run("BTCZAR", [1022000]) == [[]]  # inside the 10 bps band: no side change
    bare = Feed(DemoStrategy(SMALL))
    bare.run("BTCZAR", below)
    assert bare.run("BTCZAR", [1022000])[0][0].side is Side.BUY  # without a band: a cross
    # Clearly above (window 1,010,000 1,000,000 1,022,000 1,040,000: SMA2 1,031,000 vs
    # SMA4 1,018,000, 128 bps): the banded strategy crosses too.
    assert banded.run("BTCZAR", [1040000])[0][0].side is Side.BUY


def test_each_pair_keeps_its_own_windows() -> None:
    feed = Feed(DemoStrategy(SMALL))
    for btc, eth in [(1040000, 50000), (1030000, 50100), (1020000, 50200), (1010000, 50300)]:
        assert feed.step({"BTCZAR": D(btc), "ETHZAR": D(eth)}) == []
    # BTC turns up (a cross), ETH keeps rising (no cross).
    intents = feed.step({"BTCZAR": D(1060000), "ETHZAR": D(50400)})
    assert [(i.pair, i.side) for i in intents] == [("BTCZAR", Side.BUY)]


def test_no_buy_without_equity() -> None:
    feed = Feed(DemoStrategy(SMALL), starting={"ZAR": D(0)})
    assert feed.run("BTCZAR", [1040000, 1030000, 1020000, 1010000, 1060000])[-1] == []


# --------------------------------------------------------------------------- on the sim's walk


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_defaults_trade_within_a_minute_of_the_simulators_walk(seed: int) -> None:
    """price_interval_s 0.5 -> 120 prices a minute per pair, 5 bps steps (SimConfig defaults)."""
    path = PricePath({"BTCZAR": D(1000000), "ETHZAR": D(50000)}, seed=seed, volatility_bps=5)
    feed = Feed(DemoStrategy())
    first_buy = None
    for tick in range(120):
        intents = feed.step({pair: path.next(pair) for pair in ("BTCZAR", "ETHZAR")})
        for intent in intents:
            if intent.side is Side.BUY:
                feed.fill(intent, feed.market.price_for(intent.pair, Side.BUY) or D(0))
                first_buy = tick if first_buy is None else first_buy
            else:
                feed.fill(intent, feed.market.price_for(intent.pair, Side.SELL) or D(0))
    assert first_buy is not None
    assert first_buy < 120
    # Every position stayed well under the 20 % position limit.
    equity = feed.ledger.equity()
    for pair, quantity in feed.ledger.positions().items():
        mark = feed.market.mark(pair) or D(0)
        assert abs(quantity) * mark / equity < D("0.05")


# --------------------------------------------------------------------------- plugin and config


def test_registered_as_demo_with_its_config_section() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(demo_module)
    (sections,) = pm.hook.heliosd_config_sections()
    settings = parse_settings(
        {"demo_strategy": {"short_window": 3, "long_window": 9, "threshold_bps": 1.5}},
        "test.toml",
        sections,
    )
    registered: list[Strategy] = []
    pm.hook.heliosd_register_strategies(register=registered.append, config=settings)
    (strategy,) = registered
    assert strategy.name == "demo"
    assert isinstance(strategy, DemoStrategy)
    assert strategy.settings == DemoSettings(3, 9, D("1.5"))

    registered.clear()
    pm.hook.heliosd_register_strategies(register=registered.append, config=Settings())
    assert isinstance(registered[0], DemoStrategy)
    assert registered[0].settings == DemoSettings()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"window": 3}, r"\[demo_strategy\.window\] unknown key"),
        ({"short_window": 9, "long_window": 9}, r"need 1 <= short_window \(9\) < long_window"),
        ({"win_probability": 1.2}, r"win_probability\] must be between 0 and 1"),
        ({"payoff_ratio": 0}, r"payoff_ratio\] must be above 0"),
        ({"threshold_bps": -1}, r"threshold_bps\] must not be negative"),
        ({"long_window": "20"}, r"long_window\] must be an integer"),
    ],
)
def test_bad_config_names_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        demo_module.parse_demo_settings(table, "test.toml")
