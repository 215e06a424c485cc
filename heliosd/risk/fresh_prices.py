"""The ``fresh_prices`` risk rule (:class:`FreshPrices`): a LIVE order that adds to a holding
(a spot BUY) is refused when the quote it is priced at is older than ``risk.max_quote_age_s``.

:mod:`heliosd.risk.prices` registers it (an essential plugin).
"""

from __future__ import annotations

from heliosd.core.protocols import RiskContext
from heliosd.core.types import Mode, OrderIntent, Side, Verdict


class FreshPrices:
    """LIVE: an order that adds to a holding (a spot BUY) needs a fresh price.

    The order is priced at its pair's quote (the cap values it there), and, for a pair
    quoted in another currency than the reference (BTCUSDC), at that currency's quote too.
    Either older than ``risk.max_quote_age_s``, or missing, is a REJECT naming the pair and
    the age. SELLs always pass: they reduce a spot holding. PAPER is left to the paper
    exchange's own quote-age rule.
    """

    name = "fresh_prices"

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        if ctx.mode is not Mode.LIVE or intent.side is not Side.BUY:
            return _ACCEPT
        ref = ctx.settings.risk.reference_currency
        max_age = float(ctx.settings.risk.max_quote_age_s)
        pairs = [intent.pair]
        if ctx.pair is not None and ctx.pair.quote != ref:
            pairs.append(ctx.pair.quote + ref)
        for pair in pairs:
            quote = ctx.market.quote(pair)
            if quote is None:
                return Verdict.reject(self.name, f"no price for {pair}: a BUY needs a fresh one")
            age = (ctx.now - quote.at).total_seconds()
            if age > max_age:
                return Verdict.reject(
                    self.name,
                    f"{pair} price is {age:.1f} s old (limit {max_age:g} s): a BUY needs a"
                    " fresh price; the trade stream may be down",
                    {"pair": pair, "age_s": f"{age:.1f}"},
                )
        return _ACCEPT


_ACCEPT = Verdict.accept(FreshPrices.name)
