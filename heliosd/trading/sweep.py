"""The periodic reconciliation of open orders.

Invariant: every order heliosd holds open in a mode is compared with the venue's open orders
at least every ``valr.reconcile_interval_s`` while the daemon runs, not only when the account
stream (re)connects. An order whose placement answer was lost and which the venue does not
list would otherwise stay ``sent`` for as long as the streams stay up. The comparison itself
(what a missing order becomes, the grace before "not known" means failed) is
``VenueSink``'s, the same as after a reconnect; this module only says when it runs.
"""

from __future__ import annotations

import asyncio
import logging

from heliosd.core.errors import HeliosError
from heliosd.trading.sink import VenueSink

log = logging.getLogger(__name__)


async def run(sink: VenueSink, interval_s: float) -> None:
    """Reconcile ``sink``'s open orders every ``interval_s`` until cancelled. A pass that
    fails (the venue unreachable, credentials missing) is logged and the next one tries
    again: the loop never ends on an error."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sink.reconcile_open_orders()
        except HeliosError as exc:
            log.warning("periodic reconciliation (%s): %s", sink.mode, exc.message)
        except Exception:
            log.exception("periodic reconciliation (%s) failed", sink.mode)
