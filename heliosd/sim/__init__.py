"""A protocol-faithful VALR exchange simulator (REST + WebSockets on one loopback port).

heliosd's VALR client is proven against this, so it is as strict as VALR where VALR is
documented (VALR's public API documentation) and states its own choice where VALR is not.

Public API::

    from heliosd.sim import Simulator, SimConfig, FaultConfig
    sim = Simulator(SimConfig(seed=1, price_interval_s=None))
    await sim.start(host="127.0.0.1", port=0)      # sim.rest_url, sim.ws_url
    sim.add_api_key(key, secret)                   # account "0", View access + Trade
    sim.fund("0", "ZAR", Decimal("100000"))
    sim.set_price("BTCZAR", Decimal("990000"))     # fills crossed resting orders
    sim.faults.http_429_rate = 0.5                 # any FaultConfig switch, any time
    sim.rate_limit("/v2/orders", count=1, retry_after_s=2)   # 429 for the next request
    sim.delay_route("/v2/orders", 1.5)             # held before the handler
    sim.drop_account_messages("NEW_ACCOUNT_TRADE") # lose the next fill notice
    sim.drop_account_sockets("0", "abort")         # cut the account socket now
    sim.order_log()                                # every placement that reached a handler
    sim.deposit("0", "ZAR", Decimal("500"))        # a ledger row + BALANCE_UPDATE
    await sim.inject_fills("0", "BTCZAR", 20_000)  # benchmarks
    await sim.stop()

    The same faults, the order-arrival log and money moves over HTTP under ``/sim/``
    (``heliosd.sim.admin``; docs/simulator.md).

    run_sim(argv) / serve_forever(port, ...)       # ``heliosd sim`` / ``python -m heliosd.sim``

Choices where VALR's documentation is silent (details in the named module):

* Timestamp window: ±``SimConfig.timestamp_window_ms`` (60 s) around the sim's clock
  (``auth``).
* Auth answers: no key 403 -11250; unknown key 401 -11251 "API-key is invalid"; bad
  signature 401 -11252 (VALR's text); bad/stale timestamp 401 -11253; missing permission
  ("View access" for all, "Trade" to place/cancel) 401 -11254; bad sub-account 401 -11255.
  A WebSocket upgrade that fails any of these gets HTTP 401 (``errors``, ``ws``).
* Writes without ``Content-Type: application/json`` 403 -11; invalid JSON 400 -113;
  validation 400 -11 (lower-case side, amounts that are JSON numbers, bad fields); price
  off the tick 400 -11 "Price must be a multiple of the tick size 1"; above the maximum
  400 -11; unknown pair 400 -21 (``validation``).
* Duplicate customerOrderId among open (or accepted, unprocessed v1) orders: 400 -11502
  synchronously on v1 and v2 (``rest_orders``).
* v1 places and cancels are processed after the 202 (``SimConfig.v1_processing_delay_s``);
  until then a lookup answers -1. v2 failure codes: -6 Insufficient Balance (VALR),
  -12011 post-only, -12012 FOK, -12013 self-trade, -12014 no liquidity (sim). Unknown order
  on v2 cancel: 400 -1. Summaries of live orders: 400 -1.
* Trade history ``limit`` above 100 and unknown ``beforeId`` are 400 -11.
* Fees: taker 0.1 %, maker 0 % (configurable), in VALR's fee currencies; quote amounts are
  exact Decimal products, never rounded; fees are rounded half-up to the currency's
  decimals (``matching``).
* Trade stream: ``{"type":"SUBSCRIBED"}`` / ``{"type":"UNSUBSCRIBED"}`` with no fields, a
  snapshot after each SUBSCRIBE, unauthenticated sockets closed with 1008 after
  ``unauth_timeout_s``; no permessage-deflate (``ws``).
* Server-side caching of public routes (30 s on VALR) is not simulated: data is always
  fresh.
"""

from heliosd.sim.cli import run_sim, serve_forever
from heliosd.sim.config import FaultConfig, PairSpec, SimConfig
from heliosd.sim.simulator import Simulator

__all__ = ["FaultConfig", "PairSpec", "SimConfig", "Simulator", "run_sim", "serve_forever"]
