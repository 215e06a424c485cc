"""The account risk model: one owner of what the limits, monitors, breakers, stops and the
risk/P&L/positions views see of an account.

* :mod:`heliosd.risk.snapshot` -- the frozen shapes everyone reads (:class:`RiskSnapshot`).
* :mod:`heliosd.risk.account` -- :class:`AccountRisk`, one per mode: holdings of every asset,
  reserved exposure of open and in-flight orders, equity, and the snapshot.
* :mod:`heliosd.risk.prices` -- what one unit of an asset is worth now, and how old that is
  (trade stream, REST market summary, cross rate, last fill), with the dust rule;
  :mod:`heliosd.risk.assessment` values every holding with it, and
  :mod:`heliosd.risk.fresh_prices` is the rule that refuses a LIVE BUY priced stale.
* :mod:`heliosd.risk.flows` and :mod:`heliosd.risk.marks` -- deposits, withdrawals and
  transfers, and the baselines they move (start-of-day equity, high-water mark).

Nothing else keeps its own copy of these figures: readers take a snapshot.

The safety beside it: :mod:`~heliosd.risk.state` (ACTIVE / REDUCING / HALTED and the epoch),
:mod:`~heliosd.risk.breakers`, :mod:`~heliosd.risk.mode` (the LIVE switch),
:mod:`~heliosd.risk.stops` with :mod:`~heliosd.risk.halts` and
:mod:`~heliosd.risk.stop_followup`, and :mod:`~heliosd.risk.runner` with
:mod:`~heliosd.risk.runner_prices` (the monitor passes). docs/internals.md maps them all.
"""
