"""The control API's answers as msgspec Structs (re-exported by ``heliosd.control.schema``).

Answer Structs name every field the daemon returns today with its JSON type. They do not
forbid unknown fields: a new field is added here as an optional attribute (a default), and a
route whose answer is a free-form view (risk, health, positions, P&L, ...) documents its
known fields and allows more. Amounts are decimal strings, times ISO 8601 strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from heliosd.control.schema_fields import DecimalText, Epoch, ModeName, Time, TradingStateName

# --------------------------------------------------------------------------- answers


class Answer(Struct):
    """Base of every answer: more fields may follow (clients ignore what they do not know)."""


class Error(Answer):
    """The one error body of the API."""

    error: Annotated[str, Meta(examples=["bad_request", "gate_rejected", "halted"])]
    message: Annotated[str, Meta(description="A sentence for a human.")]
    details: Annotated[
        dict[str, Any],
        Meta(description="Machine-readable context; a refused field is details.field."),
    ]


class Mode(Answer):
    mode: ModeName
    updated_at: Time
    updated_by: str
    halted: Annotated[bool, Meta(description="True while trading_state is not ACTIVE.")]
    halt_reason: str | None
    verified: Annotated[bool, Meta(description="The stored mode passed its integrity check.")]
    trading_state: TradingStateName
    state_reason: Annotated[str, Meta(description="Empty when ACTIVE.")]
    epoch: Epoch
    live_venue: Annotated[str, Meta(description="The LIVE venue's label.")]
    live_is_simulator: Annotated[
        bool,
        Meta(description="LIVE is the VALR simulator (plain loopback URLs): not real money."),
    ]


class ModeSwitched(Mode):
    """The Mode after the switch, plus what the switch reports."""

    open_live_orders: list[dict[str, Any]] = []


class Gate(Answer):
    name: str
    ok: bool
    reason: str


class HistoryRow(Answer):
    id: int
    old_mode: str | None
    new_mode: str
    changed_at: Time
    changed_by: str
    reason: str


class History(Answer):
    history: list[HistoryRow]


class Audit(Answer):
    audit: list[dict[str, Any]]


class RemainingOrder(Answer):
    mode: ModeName
    pair: str
    side: Literal["BUY", "SELL"]
    exchange_order_id: str | None
    customer_order_id: str | None


class EmergencyStop(Answer):
    halted: bool
    mode: ModeName
    trading_state: TradingStateName
    epoch: Annotated[int, Meta(description="The epoch the stop's latch committed.")]
    cancelled_orders: int
    remaining_open_orders: Annotated[
        int | None,
        Meta(description="Orders still open at the venues after the verification; null when"
             " the LIVE venue could not be checked."),
    ]  # fmt: skip
    remaining: list[RemainingOrder]
    unresolved_placements: Annotated[
        list[str],
        Meta(description="customerOrderIds still on the wire when the settle bound ran out;"
             " a follow-up cancels again once they answer."),
    ]  # fmt: skip
    reason: str
    notes: list[str]
    flattened: list[dict[str, Any]] = []
    next_step: Annotated[
        str | None,
        Meta(description="What to do next: present when the LIVE account still holds"
             " something; it names the close (heliosctl close --all --live)."),
    ] = None  # fmt: skip


class CloseSell(Answer):
    """One order a close sends: always a market SELL."""

    pair: str
    side: Literal["SELL"]
    quantity: DecimalText


class CloseLeft(Answer):
    """A holding, or part of one, a close does not sell, and why (below VALR's minimum,
    finer than the quantity step, reserved by open orders, no pair sells it, refused)."""

    pair: str | None
    quantity: DecimalText
    why: str
    asset: str = ""


class ClosePlan(Answer):
    """``details`` of the first answer (409 confirmation_required) to a close."""

    confirm_token: Annotated[str, Meta(description="Send the same body with it; single use.")]
    expires_in: Annotated[int, Meta(description="Seconds the token stays valid.")]
    orders: list[CloseSell]
    remaining: list[CloseLeft] = []
    mode: ModeName | None = None


class Closed(Answer):
    """A close sent (or found nothing to send: orders empty, remaining says why)."""

    orders: Annotated[list[Order], Meta(description="The stored orders, as GET /api/orders.")]
    remaining: list[CloseLeft]


class Halt(Mode):
    breaker: Literal["halt"]
    reason: str
    unresolved_placements: Annotated[
        list[str],
        Meta(description="Customer ids of placements still unanswered when the halt answered."),
    ] = []


class Resumed(Mode):
    cleared: Annotated[int, Meta(description="Breakers cleared.")]
    rebased: dict[str, Any] = {}


class Verdict(Answer):
    rule: str
    action: Literal["accept", "cap", "reject"]
    reason: str = ""


OrderStateName = Literal[
    "new", "sent", "placed", "partially_filled", "filled", "cancelled", "failed", "rejected"
]


class Order(Answer):
    id: int
    customer_order_id: str
    exchange_order_id: str | None
    mode: ModeName
    pair: str
    side: Literal["BUY", "SELL"]
    type: Literal["MARKET", "LIMIT"]
    requested_quantity: DecimalText
    quantity: DecimalText
    price: DecimalText | None
    state: OrderStateName
    reason: str
    source: str
    actor: str
    verdicts: list[Verdict]
    filled_quantity: DecimalText
    average_price: DecimalText | None
    failed_reason: str | None
    created_at: Time
    updated_at: Time
    fees: (
        Annotated[
            dict[str, DecimalText],
            Meta(description="GET /api/orders only: the fills' fees summed per currency."),
        ]
        | None
    ) = None


class OrderAnswer(Answer):
    order: Order


class Cancelled(Answer):
    order: Order
    cancelled: Annotated[bool, Meta(description="False when the order was no longer open.")]


class Orders(Answer):
    orders: list[Order]


class _Trade(Answer):
    """The fields every fill answer has (not a component of its own)."""

    trade_id: str
    pair: str
    side: Literal["BUY", "SELL"]
    price: DecimalText
    quantity: DecimalText
    fee: DecimalText
    fee_currency: str
    traded_at: Time


class Fill(_Trade):
    in_venue_history: Annotated[bool, Meta(description="LIVE only.")] = False


class Fills(Answer):
    order_id: int
    mode: ModeName
    venue_checked: bool
    fills: list[Fill]


class RecentFill(_Trade):
    order_id: Annotated[int | None, Meta(description="None: a trade heliosd did not place.")]
    mode: ModeName


class RecentFills(Answer):
    fills: list[RecentFill]


class Engine(Answer):
    running: bool
    strategy: str | None = None
    started_at: Time | None = None
    interval_s: float | None = None
    pairs: list[str] = []
    strategies: dict[str, Any] = {}


class Positions(Answer):
    mode: ModeName
    paper: list[dict[str, Any]]
    live: list[dict[str, Any]]


class Pnl(Answer):
    mode: ModeName
    paper: dict[str, Any]
    live: dict[str, Any]


class Risk(Answer):
    mode: ModeName
    reference_currency: str
    equity: DecimalText
    limits: dict[str, Any]
    pending: Any
    pending_buy_value: DecimalText
    # The value of today's deposits, withdrawals and transfers (the account's local day):
    # what moved the daily-loss and drawdown baselines instead of counting as P&L.
    stale: list[str]
    breakers: Any
    halted: bool
    pairs: dict[str, Any]
    rules: list[str]
    flows_today: DecimalText = "0"


class Plugins(Answer):
    plugins: list[dict[str, Any]]
    risk_rules: list[str] = []
    gates: list[str] = []
    monitors: list[str] = []
    strategies: list[str] = []
    exchanges: list[str] = []
    notifiers: list[str] = []


class Health(Answer):
    status: Literal["ok", "degraded"]
    store: bool
    mode: ModeName
    streams: dict[str, Any]
    started_at: Time | None
    halted: bool
    ledger_errors: dict[str, Any]
    cancel_on_disconnect: bool
    version: Annotated[str, Meta(description="heliosd's version.", examples=["0.1.0"])]
    fill_gaps_closed: Annotated[
        int,
        Meta(
            description="Orders whose missing fills were fetched from VALR's trade history "
            "since the daemon started (a fill gap found and closed)."
        ),
    ] = 0


class DoctorCheck(Answer):
    """One check of ``heliosctl doctor``."""

    name: Annotated[str, Meta(examples=["clock_skew", "valr_credentials", "state_dir"])]
    status: Annotated[
        Literal["ok", "warn", "fail"],
        Meta(description="fail: not ready (also a check that raised or timed out)."),
    ]
    detail: Annotated[str, Meta(description="What the check found, for a human.")]
    fix: Annotated[str, Meta(description="What to do about it; empty when ok.")]


class Doctor(Answer):
    """GET /api/doctor: is this daemon ready to go LIVE?"""

    ok: Annotated[bool, Meta(description="No check failed (warnings allowed).")]
    checks: Annotated[list[DoctorCheck], Meta(description="Every check, in a fixed order.")]


class EquityPoint(Answer):
    """One point of the equity curve, as the monitor pass saw it (reference currency)."""

    at: Time
    equity: DecimalText
    peak: Annotated[
        str, Meta(description="The flow-adjusted high-water mark the drawdown stop uses.")
    ]
    day_start_equity: DecimalText = "0"
    daily_pnl: DecimalText = "0"
    kind: Annotated[
        Literal["minute", "fill"],
        Meta(description="minute: the periodic point; fill: written after a fill batch."),
    ] = "minute"


class Equity(Answer):
    mode: ModeName
    points: Annotated[list[EquityPoint], Meta(description="Oldest first.")]
    total: Annotated[
        int, Meta(description="Points stored in the range; more than answered when thinned.")
    ] = 0
    step: Annotated[
        int,
        Meta(
            description="1, or every step-th stored point (and the newest) when the range holds"
            " more than the 10,000 points an answer carries."
        ),
    ] = 1
    since: Time | None = None


class Backup(Answer):
    backup: Annotated[str, Meta(description="The backup file's path.")]


class Document(Answer):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
