"""The account risk model: one owner of what the limits, monitors, breakers, stops and the
risk/P&L/positions views see of an account.

* :mod:`heliosd.risk.snapshot` -- the frozen shapes everyone reads (:class:`RiskSnapshot`).
* :mod:`heliosd.risk.account` -- :class:`AccountRisk`, one per mode: holdings of every asset,
  reserved exposure of open and in-flight orders, equity, and the snapshot.
* :mod:`heliosd.risk.prices` -- what one unit of an asset is worth now, and how old that is
  (trade stream, REST market summary, cross rate, last fill), with the dust rule.
* :mod:`heliosd.risk.flows` and :mod:`heliosd.risk.marks` -- deposits, withdrawals and
  transfers, and the baselines they move (start-of-day equity, high-water mark).

Nothing else keeps its own copy of these figures: readers take a snapshot.
"""
