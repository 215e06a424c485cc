"""The OpenAPI 3.1 document of the control API (served at ``GET /api/openapi.json``).

:data:`OPERATIONS` describes every route the app can serve; :func:`build_document` builds
the document for the routes an app actually registered and fails if one is undocumented, so
the document can neither miss a route nor describe one that is not served.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from heliosd import __version__ as _version

JSON = dict[str, Any]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> JSON:
    return _json(_ref("Error"), description)


_STR: Final = {"type": "string"}
_DEC: Final = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "examples": ["0.01"]}
_NULLABLE_STR: Final = {"type": ["string", "null"]}
_OBJ: Final = {"type": "object", "additionalProperties": True}

_TRADING_STATE: Final = {
    "enum": ["ACTIVE", "REDUCING", "HALTED"],
    "description": "ACTIVE: the limits apply. REDUCING: only orders that reduce a holding"
    " pass. HALTED: nothing but cancels.",
}
_EPOCH: Final = {
    "type": "integer",
    "description": "+1 on every stop, halt, resume and mode switch; persisted.",
}

SCHEMAS: Final[JSON] = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "details"],
        "properties": {
            "error": {
                "type": "string",
                "examples": ["bad_request", "gate_rejected", "confirmation_required"],
            },
            "message": {"type": "string", "description": "A sentence for a human."},
            "details": _OBJ,
        },
    },
    "Mode": {
        "type": "object",
        "required": [
            "mode",
            "updated_at",
            "updated_by",
            "halted",
            "halt_reason",
            "trading_state",
            "state_reason",
            "epoch",
        ],
        "properties": {
            "mode": {"enum": ["PAPER", "LIVE"]},
            "updated_at": _STR,
            "updated_by": _STR,
            "halted": {
                "type": "boolean",
                "description": "True while trading_state is REDUCING or HALTED.",
            },
            "halt_reason": _NULLABLE_STR,
            "trading_state": _TRADING_STATE,
            "state_reason": {"type": "string", "description": "Empty when ACTIVE."},
            "epoch": _EPOCH,
        },
    },
    "ModeRequest": {
        "type": "object",
        "required": ["mode"],
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": ["PAPER", "LIVE"], "description": "Case-insensitive."},
            "confirm_token": {
                "type": ["string", "null"],
                "description": "From the confirmation_required answer; single use, 60 s.",
            },
            "reason": {"type": "string", "maxLength": 1000},
        },
    },
    "Gate": {
        "type": "object",
        "required": ["name", "ok", "reason"],
        "properties": {"name": _STR, "ok": {"type": "boolean"}, "reason": _STR},
    },
    "Reason": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string", "maxLength": 1000}},
    },
    "RequiredReason": {
        "type": "object",
        "required": ["reason"],
        "additionalProperties": False,
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
    },
    "Empty": {"type": "object", "additionalProperties": False, "properties": {}},
    "HistoryRow": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "old_mode": _NULLABLE_STR,
            "new_mode": _STR,
            "changed_at": _STR,
            "changed_by": _STR,
            "reason": _STR,
        },
    },
    "EmergencyStop": {
        "type": "object",
        "properties": {
            "halted": {"type": "boolean"},
            "mode": {"enum": ["PAPER"]},
            "trading_state": _TRADING_STATE,
            "epoch": {**_EPOCH, "description": "The epoch the stop's latch committed."},
            "cancelled_orders": {"type": "integer"},
            "remaining_open_orders": {
                "type": ["integer", "null"],
                "description": "Orders still open at the venues after the verification;"
                " null when the LIVE venue could not be checked.",
            },
            "remaining": {"type": "array", "items": _ref("RemainingOrder")},
            "unresolved_placements": {
                "type": "array",
                "items": _STR,
                "description": "customerOrderIds still on the wire when the settle bound"
                " ran out; a follow-up cancels again once they answer.",
            },
            "reason": _STR,
            "notes": {"type": "array", "items": _STR},
        },
    },
    "RemainingOrder": {
        "type": "object",
        "properties": {
            "mode": {"enum": ["PAPER", "LIVE"]},
            "pair": _STR,
            "side": {"enum": ["BUY", "SELL"]},
            "exchange_order_id": _STR,
            "customer_order_id": _NULLABLE_STR,
        },
    },
    "Halt": {
        "type": "object",
        "properties": {
            "halted": {"type": "boolean"},
            "breaker": {"enum": ["halt"]},
            "reason": _STR,
            "trading_state": _TRADING_STATE,
            "state_reason": _STR,
            "epoch": _EPOCH,
        },
    },
    "Verdict": {
        "type": "object",
        "properties": {
            "rule": _STR,
            "action": {"enum": ["accept", "cap", "reject"]},
            "reason": _STR,
        },
    },
    "Order": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "customer_order_id": _STR,
            "exchange_order_id": _NULLABLE_STR,
            "mode": {"enum": ["PAPER", "LIVE"]},
            "pair": _STR,
            "side": {"enum": ["BUY", "SELL"]},
            "type": {"enum": ["MARKET", "LIMIT"]},
            "requested_quantity": _DEC,
            "quantity": _DEC,
            "price": {"type": ["string", "null"]},
            "state": {
                "enum": [
                    "new",
                    "sent",
                    "placed",
                    "partially_filled",
                    "filled",
                    "cancelled",
                    "failed",
                    "rejected",
                ]
            },
            "reason": _STR,
            "verdicts": {"type": "array", "items": _ref("Verdict")},
            "filled_quantity": _DEC,
            "average_price": {"type": ["string", "null"]},
            "created_at": _STR,
            "updated_at": _STR,
        },
    },
    "OrderRequest": {
        "type": "object",
        "required": ["pair", "side", "type", "quantity"],
        "additionalProperties": False,
        "properties": {
            "pair": {"type": "string", "examples": ["BTCZAR"]},
            "side": {"enum": ["BUY", "SELL", "buy", "sell"]},
            "type": {"enum": ["MARKET", "LIMIT", "market", "limit"]},
            "quantity": {
                "type": ["string", "number"],
                "description": "Base currency; a positive decimal string (numbers accepted).",
            },
            "price": {
                "type": ["string", "number", "null"],
                "description": "Required for LIMIT, forbidden for MARKET.",
            },
            "reason": {"type": "string", "maxLength": 1000},
        },
    },
    "OrderAnswer": {
        "type": "object",
        "required": ["order"],
        "properties": {"order": _ref("Order")},
    },
    "Object": _OBJ,
}

_LIMIT: Final = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}
_ORDER_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_BAD: Final = {"400": _error("Malformed request; the message names the field.")}


def _op(
    summary: str,
    ok: JSON,
    *,
    status: str = "200",
    body: JSON | None = None,
    body_required: bool = False,
    params: list[JSON] | None = None,
    errors: dict[str, JSON] | None = None,
) -> JSON:
    op: JSON = {"summary": summary, "responses": {status: ok, **(errors or {})}}
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
        op["responses"].update(_BAD)
        op["responses"]["413"] = _error("Body larger than 64 KiB.")
    if params:
        op["parameters"] = params
        op["responses"].update(_BAD)
    return op


# (method, path template) -> OpenAPI operation object.
OPERATIONS: Final[dict[tuple[str, str], JSON]] = {
    ("GET", "/api/trading/mode"): _op(
        "Current trading mode, read from the database", _json(_ref("Mode"), "The mode.")
    ),
    ("POST", "/api/trading/mode"): _op(
        "Switch mode. PAPER->LIVE runs the gates and needs a confirmation token.",
        _json(_ref("Mode"), "Switched."),
        body=_ref("ModeRequest"),
        body_required=True,
        errors={
            "409": _error(
                "gate_rejected (details.gates), confirmation_required (details.confirm_token,"
                " expires_in, gates), invalid_confirm_token (also a token issued under an"
                " older epoch), halted (trading_state is not ACTIVE), or state_changed (a"
                " stop, halt or resume committed while the gates ran; the mode stays PAPER)."
            )
        },
    ),
    ("GET", "/api/trading/mode/history"): _op(
        "Mode changes, newest first",
        _json(
            {"type": "object", "properties": {"history": {"items": _ref("HistoryRow")}}},
            "History rows.",
        ),
        params=[_LIMIT],
    ),
    ("GET", "/api/audit"): _op(
        "Audit rows (every change, attempt and refusal), newest first",
        _json(_ref("Object"), "Audit rows."),
        params=[_LIMIT],
    ),
    ("POST", "/api/trading/emergency-stop"): _op(
        "Halt the engine, cancel all open orders, switch to PAPER and latch",
        _json(_ref("EmergencyStop"), "Stopped."),
        body=_ref("Reason"),
    ),
    ("POST", "/api/trading/resume"): _op(
        "Clear every latched breaker (a new epoch)",
        _json(_ref("Object"), "Resumed: cleared, epoch, and the Mode fields."),
        body=_ref("RequiredReason"),
        body_required=True,
        errors={"409": _error("halted: resume is blocked (details.blocked says why).")},
    ),
    ("POST", "/api/trading/halt"): _op(
        "Trip the operator's halt breaker: trading HALTED (nothing but cancels) until a resume",
        _json(_ref("Halt"), "Halted."),
        body=_ref("RequiredReason"),
        body_required=True,
    ),
    ("GET", "/api/autonomous-engine/status"): _op(
        "Engine status", _json(_ref("Object"), "Status.")
    ),
    ("POST", "/api/autonomous-engine/start"): _op(
        "Start the engine",
        _json(_ref("Object"), "Started."),
        body=_ref("Empty"),
        errors={"409": _error("halted: a latched stop forbids it.")},
    ),
    ("POST", "/api/autonomous-engine/stop"): _op(
        "Stop the engine", _json(_ref("Object"), "Stopped."), body=_ref("Empty")
    ),
    ("GET", "/api/orders"): _op(
        "Orders, newest first",
        _json({"type": "object", "properties": {"orders": {"items": _ref("Order")}}}, "Orders."),
        params=[
            {
                "name": "state",
                "in": "query",
                "required": False,
                "schema": {"enum": ["open", "all"], "default": "all"},
            },
            _LIMIT,
        ],
    ),
    ("POST", "/api/orders"): _op(
        "Place a manual order through the router and its risk rules",
        _json(_ref("OrderAnswer"), "Sent to the venue (it may still fail later)."),
        status="201",
        body=_ref("OrderRequest"),
        body_required=True,
        errors={
            "409": _error(
                "halted: only position-reducing orders pass; permit_revoked: the trading"
                " state changed after the order was checked, it was never sent (details.order)."
            ),
            "422": _error("risk_rejected, or exchange_rejected (details.order)."),
            "502": _error("exchange_auth: the venue refused the credentials."),
            "503": _error("exchange_unavailable: retry later."),
        },
    ),
    ("GET", "/api/orders/{id}"): _op(
        "One order",
        _json(_ref("OrderAnswer"), "The order."),
        params=[_ORDER_ID],
        errors={"404": _error("No such order.")},
    ),
    ("GET", "/api/orders/{id}/fills"): _op(
        "The order's stored fills, and for LIVE whether VALR's trade history has each",
        _json(_ref("Object"), "Fills with venue confirmation."),
        params=[_ORDER_ID],
        errors={
            "404": _error("No such order."),
            "502": _error("exchange_auth: the venue refused the credentials."),
            "503": _error("exchange_unavailable: the venue could not be asked."),
        },
    ),
    ("DELETE", "/api/orders/{id}"): _op(
        "Cancel one order",
        _json(_ref("Object"), "Cancel requested."),
        params=[_ORDER_ID],
        errors={"404": _error("No such order.")},
    ),
    ("GET", "/api/positions"): _op("Positions per mode", _json(_ref("Object"), "Positions.")),
    ("GET", "/api/pnl"): _op(
        "Realized/unrealized and daily P&L", _json(_ref("Object"), "P&L figures.")
    ),
    ("GET", "/api/risk"): _op(
        "Limit use, drawdown and breakers", _json(_ref("Object"), "Risk state.")
    ),
    ("GET", "/api/plugins"): _op(
        "Loaded plugins with their sources and sha256", _json(_ref("Object"), "Plugins.")
    ),
    ("GET", "/api/health"): _op(
        "Liveness of store, feeds and exchanges",
        _json(_ref("Object"), "Healthy."),
        errors={"503": _json(_ref("Object"), "Unhealthy; the body says what.")},
    ),
    ("GET", "/api/events"): _op(
        "Server-sent events of everything that happens",
        {
            "description": "`event: <type>` / `data: <json>` per event; a comment every 15 s.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    ),
    ("GET", "/api/openapi.json"): _op("This document", _json(_ref("Object"), "OpenAPI 3.1.")),
    ("POST", "/api/backup"): _op(
        "Take an online backup of the database into <state_dir>/backups/",
        _json(_ref("Object"), "Where the backup went."),
        body=_ref("Empty"),
    ),
}

_ERRORS_FOR_ALL: Final = {
    "401": _error("TCP listener only: missing or wrong bearer token."),
    "403": _error("The caller's uid is not allowed on the control socket."),
    "500": _error("internal: logged by the daemon, never detailed here."),
}


def build_document(routes: Iterable[tuple[str, str]]) -> JSON:
    """The OpenAPI document for exactly ``routes`` ((method, path template) pairs).

    Raises ValueError naming any route :data:`OPERATIONS` does not describe.
    """
    paths: dict[str, JSON] = {}
    missing: list[str] = []
    for method, path in routes:
        op = OPERATIONS.get((method, path))
        if op is None:
            missing.append(f"{method} {path}")
            continue
        full = {**op, "responses": {**op["responses"], **_ERRORS_FOR_ALL}}
        paths.setdefault(path, {})[method.lower()] = full
    if missing:
        raise ValueError(f"routes without an OpenAPI description: {', '.join(missing)}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "heliosd control API",
            "version": _version,
            "description": (
                "HTTP/1.1 + JSON on the daemon's Unix socket (identity from SO_PEERCRED), "
                "optionally on a loopback TCP listener with a bearer token. Errors are "
                '{"error", "message", "details"}.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
