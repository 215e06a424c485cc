"""Simulator configuration: the static market definition and the mutable fault switches.

``SimConfig`` is fixed for the life of a simulator; ``FaultConfig`` is deliberately mutable
so a test can flip a fault on and off while a client is connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CurrencySpec:
    """One currency as VALR describes it (the ``currency`` object of BALANCE_UPDATE)."""

    short_name: str  # the code clients use: "ZAR", "BTC"
    symbol: str  # VALR's own symbol: ZAR's is "R"
    long_name: str
    decimal_places: int

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimal_places)


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One spot pair with the limits VALR publishes in ``/v1/public/pairs``."""

    symbol: str
    base: str
    quote: str
    min_base: Decimal
    max_base: Decimal
    min_quote: Decimal
    max_quote: Decimal
    tick_size: Decimal
    base_decimal_places: int

    @property
    def base_quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.base_decimal_places)


CURRENCIES: dict[str, CurrencySpec] = {
    "ZAR": CurrencySpec("ZAR", "R", "Rand", 2),
    "BTC": CurrencySpec("BTC", "BTC", "Bitcoin", 8),
    "ETH": CurrencySpec("ETH", "ETH", "Ethereum", 8),
    "USDC": CurrencySpec("USDC", "USDC", "USD Coin", 6),
}

PAIRS: dict[str, PairSpec] = {
    "BTCZAR": PairSpec(
        "BTCZAR",
        "BTC",
        "ZAR",
        Decimal("0.0001"),
        Decimal("2"),
        Decimal("10"),
        Decimal("5000000"),
        Decimal("1"),
        8,
    ),
    "ETHZAR": PairSpec(
        "ETHZAR",
        "ETH",
        "ZAR",
        Decimal("0.0002"),
        Decimal("69.21"),
        Decimal("10"),
        Decimal("5000000"),
        Decimal("1"),
        8,
    ),
    "BTCUSDC": PairSpec(
        "BTCUSDC",
        "BTC",
        "USDC",
        Decimal("0.00001"),
        Decimal("2"),
        Decimal("1"),
        Decimal("300000"),
        Decimal("1"),
        8,
    ),
}

DEFAULT_START_PRICES: dict[str, Decimal] = {
    "BTCZAR": Decimal("1000000"),
    "ETHZAR": Decimal("50000"),
    "BTCUSDC": Decimal("60000"),
}


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes one simulated exchange.

    ``price_interval_s`` of 0 or None means prices only move through ``Simulator.set_price``
    (deterministic tests). Fees are percentages, as ``/v1/account/fees/trade`` reports them.
    """

    seed: int = 1
    pairs: tuple[str, ...] = ("BTCZAR", "ETHZAR")
    start_prices: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_START_PRICES))
    price_interval_s: float | None = 0.5
    # The real window is undocumented by VALR; 60 s either side of server time.
    timestamp_window_ms: int = 60_000
    # VALR closes unauthenticated trade sockets after 15 minutes.
    unauth_timeout_s: float = 900.0
    taker_fee_pct: Decimal = Decimal("0.1")
    maker_fee_pct: Decimal = Decimal("0")
    # Random-walk step bound per tick, in basis points of the mid price.
    volatility_bps: int = 5
    # Replay "pair,price" rows instead of the random walk (one row per pair per tick).
    price_csv: Path | str | None = None
    mm_levels: int = 10
    mm_half_spread_bps: int = 5
    mm_level_step_bps: int = 5
    # Quote notional the market maker shows per level (0.5 BTC at 1,000,000 ZAR).
    mm_level_notional: Decimal = Decimal("500000")
    # Per-key fixed wall-clock-minute budget (VALR: 2000/min); None = unlimited.
    rate_limit_per_minute: int | None = None
    # Delay before a v1 (202) order or cancel is processed; 0 = next loop iteration.
    v1_processing_delay_s: float = 0.0
    # Extra pairs beyond the built-in PAIRS table.
    pair_specs: dict[str, PairSpec] = field(default_factory=dict)

    def pair_spec(self, symbol: str) -> PairSpec:
        return self.pair_specs.get(symbol) or PAIRS[symbol]

    def currencies(self) -> list[str]:
        """Every currency of the configured pairs, in a stable order."""
        seen: dict[str, None] = {}
        for pair in self.pairs:
            spec = self.pair_spec(pair)
            seen.setdefault(spec.base)
            seen.setdefault(spec.quote)
        return list(seen)


@dataclass
class FaultConfig:
    """Fault switches a test may change at any time (all randomness is seeded).

    * ``http_429_rate`` / ``http_5xx_rate``: fraction (0..1) of REST requests answered with a
      429 (``x-valr-ratelimited: true``, ``Retry-After``, HTML body) or a 5xx.
    * ``http_5xx_after_rate``: fraction of those 5xx answers produced *after* the handler ran,
      so the request took effect but its response was lost (a gateway timeout). This is the
      case a client's "place at most once" logic must survive.
    * ``delay_s``: added to every REST request *before* it is handled (held in flight);
      ``delay_after_s``: added *after* it was handled (it took effect, the answer is late).
    * ``drop_ws_every_s``: close every account and trade socket periodically.
    * ``ws_drop_mode``: ``"close"`` sends a close frame (1001); ``"abort"`` cuts the TCP
      connection without one.
    * ``pause_account_stream``: account events are discarded, not queued, while set; trades
      still happen, so a client has to reconcile through REST.
    * ``garble_rate``: fraction of pushed WS events replaced by a truncated, non-JSON or
      unknown-type message (the original is lost).
    * ``read_only``: ``/v1/public/status`` says ``read-only`` and every non-GET gets 503.
    * ``rate_limits``: :class:`RateLimitRule` s, each answering 429 with its own
      ``Retry-After`` to the next ``count`` requests on a route prefix (then spent).
    * ``route_delays``: :class:`RouteDelay` s, holding matching requests before (or, with
      ``after``, after) the handler runs.
    * ``view_lag_s``: VALR's read views lag its matching engine: order lookups, open
      orders, order history and trade history leave out orders created, and trades made,
      less than this many seconds ago (a lookup of such an order answers -1).
    * ``v1_cancel_status``: what ``DELETE /v1/orders/order`` answers, empty-bodied: 202
      (VALR's docs) or 200 (reported from the live exchange).
    * ``drop_account_messages``: ``{type: n}``: the next ``n`` account-stream messages of
      that ``type`` are dropped at the source (no socket gets them), e.g.
      ``{"NEW_ACCOUNT_TRADE": 1}`` loses exactly one fill notice. Only messages that would
      have reached a socket count: with no account socket open nothing is dropped.
    * ``clock_offset_ms``: the simulator's clock runs this far ahead of the machine's (negative:
      behind): ``/v1/public/time`` and the signed-timestamp window both use it, so a test
      drifts "VALR's" clock away from the client's.
    * ``stale_timestamp_plain``: a request outside the timestamp window is answered with a
      bare 401 ``{"message": "Unauthorized"}`` (no code, no mention of a timestamp) instead of
      the simulator's own -11253 text: VALR's answer is undocumented, so a client must
      recover from clock drift without reading the error.
    * ``maker_rebate_bps``: while above 0, every maker fill *earns* this many basis points
      of the traded amount (in the currency a maker fee would be paid in: quote for a maker
      buy, base for a maker sell) instead of paying ``SimConfig.maker_fee_pct``. Set at
      placement too: a resting order reserves no maker fee then.
    * ``maker_reward_shape``: how a maker rebate (from ``maker_rebate_bps`` or a negative
      ``maker_fee_pct``) is written on trade-history rows and ``NEW_ACCOUNT_TRADE``:
      ``"reward"`` (``makerReward`` and ``makerRewardCurrency`` in place of ``fee`` and
      ``feeCurrency``; one third-party capture, low confidence), ``"both"`` (``fee: "0"``
      and ``feeCurrency`` beside them) or ``"fee"`` (a negative ``fee``). Fixed per trade
      when it happens.
    * ``garble_maker_rewards``: the next ``n`` ``NEW_ACCOUNT_TRADE`` messages carrying a
      ``makerReward`` get an unreadable one (``"0.0I"``) on the stream; the REST rows stay
      right, so a client that skips the message recovers the fill by reconciling. Counted in
      ``garbled_maker_rewards``; only messages that would have reached a socket count.
    * ``no_trade_authenticated`` / ``no_account_authenticated``: a signed ``/ws/trade`` (or
      ``/ws/account``) connection gets no ``{"type":"AUTHENTICATED"}``: whether VALR sends it
      on each stream is unproven, so a client must not depend on it.
    """

    http_429_rate: float = 0.0
    http_5xx_rate: float = 0.0
    http_5xx_after_rate: float = 0.5
    retry_after_s: int = 1
    delay_s: float = 0.0
    delay_after_s: float = 0.0
    drop_ws_every_s: float | None = None
    ws_drop_mode: str = "close"
    pause_account_stream: bool = False
    garble_rate: float = 0.0
    read_only: bool = False
    view_lag_s: float = 0.0
    v1_cancel_status: int = 202
    rate_limits: list[RateLimitRule] = field(default_factory=list)
    route_delays: list[RouteDelay] = field(default_factory=list)
    drop_account_messages: dict[str, int] = field(default_factory=dict)
    clock_offset_ms: int = 0
    stale_timestamp_plain: bool = False
    maker_rebate_bps: int = 0
    maker_reward_shape: str = "reward"
    garble_maker_rewards: int = 0
    no_trade_authenticated: bool = False
    no_account_authenticated: bool = False
    # Account messages dropped so far by ``drop_account_messages``, by type.
    dropped_account_messages: dict[str, int] = field(default_factory=dict)
    # NEW_ACCOUNT_TRADE messages whose makerReward ``garble_maker_rewards`` garbled so far.
    garbled_maker_rewards: int = 0


# ``FaultConfig.maker_reward_shape`` values.
MAKER_REWARD_SHAPES = ("reward", "both", "fee")
# The most a maker rebate may be (1 %): far above any real schedule, still a rebate.
MAX_MAKER_REBATE_BPS = 100


@dataclass
class RateLimitRule:
    """429 (``Retry-After: retry_after_s``) for the next ``count`` requests whose path starts
    with ``prefix`` (and whose method is ``method``, when given). ``hits`` counts the 429s
    it answered; a rule with ``count`` 0 is spent and matches nothing."""

    prefix: str
    count: int = 1
    retry_after_s: int = 1
    method: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.count > 0
            and path.startswith(self.prefix)
            and (self.method is None or self.method == method)
        )


@dataclass
class RouteDelay:
    """Hold requests whose path starts with ``prefix`` (method ``method`` when given) for
    ``delay_s`` before the handler runs (in flight: not yet seen), or after it ran when
    ``after`` (it took effect; only the answer is late)."""

    prefix: str
    delay_s: float
    method: str | None = None
    after: bool = False

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.prefix) and (self.method is None or self.method == method)
