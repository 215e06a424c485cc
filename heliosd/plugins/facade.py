"""What ``heliosd_startup`` and ``heliosd_shutdown`` hand a plugin: :class:`DaemonView`, the
running system's parts a plugin may look at, instead of the whole service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from heliosd.core.types import Mode

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.risk.breakers import Breakers
    from heliosd.risk.ledger import Ledger
    from heliosd.store import Store
    from heliosd.trading.marketdata import MarketData
    from heliosd.trading.router import ExecutionRouter


@dataclass(frozen=True, slots=True, eq=False)
class DaemonView:
    """The running daemon, as the lifecycle hooks see it (one object for both hooks).

    - ``settings``: the running settings (a plugin's own section: ``settings.plugins[name]``);
    - ``store``: the database (:class:`heliosd.store.Store`; ``mode_state()`` is the mode row);
    - ``market``: the market data (``mark(pair)``, ``quote(pair)``, ``pairs()``);
    - ``ledgers``: each mode's ledger (``ledgers[Mode.PAPER].peek(now)``);
    - ``router``: the execution router every order goes through (its risk rules included);
    - ``breakers``: the breakers (``states()``, ``halt_reason()``).

    Look, do not drive: orders go through the control API or a strategy, never from a hook.
    """

    settings: Settings
    store: Store
    market: MarketData
    ledgers: Mapping[Mode, Ledger]
    router: ExecutionRouter
    breakers: Breakers

    @property
    def mode(self) -> Mode:
        """The trading mode now (LIVE or PAPER), as the mode row says."""
        return self.store.mode_state().mode
