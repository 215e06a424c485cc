"""VALR's wire shapes: every JSON object the simulator sends, under one name.

Field names, order and types follow VALR's documented payloads (PM shapes): decimals are
strings, sides are lower case in responses, books use capitalised ``Asks``/``Bids``/
``LastChange``/``SequenceNumber``, times are ISO-8601 UTC with milliseconds. The fixtures in
``tests/fixtures/valr`` are captured from these functions and the sim's tests check the
two never drift apart.

The shapes are built in ``wire_public`` (market data, the trade stream), ``wire_account``
(key, balances, trades, fees) and ``wire_orders`` (order rows and events), on
``wire_format``'s values; this module re-exports them all.
"""

from __future__ import annotations

from heliosd.sim.wire_account import REFERENCE_CURRENCY as REFERENCE_CURRENCY
from heliosd.sim.wire_account import account_trade as account_trade
from heliosd.sim.wire_account import api_key_info as api_key_info
from heliosd.sim.wire_account import balance_row as balance_row
from heliosd.sim.wire_account import balance_update as balance_update
from heliosd.sim.wire_account import fee_fields as fee_fields
from heliosd.sim.wire_account import fees as fees
from heliosd.sim.wire_account import margin_status_v1 as margin_status_v1
from heliosd.sim.wire_account import new_account_history_record as new_account_history_record
from heliosd.sim.wire_account import new_account_trade as new_account_trade
from heliosd.sim.wire_format import Json as Json
from heliosd.sim.wire_format import currency_spec as currency_spec
from heliosd.sim.wire_format import dec as dec
from heliosd.sim.wire_format import dumps as dumps
from heliosd.sim.wire_format import iso as iso
from heliosd.sim.wire_format import iso_ns as iso_ns
from heliosd.sim.wire_orders import failed_cancel as failed_cancel
from heliosd.sim.wire_orders import open_order as open_order
from heliosd.sim.wire_orders import open_orders_update as open_orders_update
from heliosd.sim.wire_orders import order_processed as order_processed
from heliosd.sim.wire_orders import order_status as order_status
from heliosd.sim.wire_orders import order_status_update as order_status_update
from heliosd.sim.wire_orders import order_summary as order_summary
from heliosd.sim.wire_public import currency_info as currency_info
from heliosd.sim.wire_public import market_summary as market_summary
from heliosd.sim.wire_public import order_book as order_book
from heliosd.sim.wire_public import pair_info as pair_info
from heliosd.sim.wire_public import public_trade as public_trade
from heliosd.sim.wire_public import ws_market_summary as ws_market_summary
from heliosd.sim.wire_public import ws_new_trade as ws_new_trade
from heliosd.sim.wire_public import ws_order_book as ws_order_book
