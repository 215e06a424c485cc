"""The OpenAPI 3.1 document of the control API (served at ``GET /api/openapi.json``).

:data:`OPERATIONS` describes every route the app can serve; :func:`build_document` builds
the document for the routes an app actually registered and fails if one is undocumented, so
the document can neither miss a route nor describe one that is not served.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from heliosd import __version__ as _version
from heliosd.control import schema as sc

JSON = dict[str, Any]


def _ref(kind: type[Any] | str) -> JSON:
    name = kind if isinstance(kind, str) else kind.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> JSON:
    return _json(_ref(sc.Error), description)


def _schemas() -> JSON:
    """Every body's JSON Schema, generated from the Structs the API decodes and encodes."""
    _, components = msgspec.json.schema_components(
        (*sc.REQUESTS, *sc.ANSWERS), ref_template="#/components/schemas/{name}"
    )
    for name, extra in sc.EXTRA_SCHEMA.items():
        components[name].update(extra)
    return components


SCHEMAS: Final[JSON] = _schemas()

_LIMIT: Final = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}


def _mode_query(description: str) -> JSON:
    return {"name": "mode", "in": "query", "required": False, "description": description,
            "schema": {"enum": ["LIVE", "PAPER"]}}  # fmt: skip


_ORDER_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_NOTIFY: Final = {
    "name": "notify",
    "in": "query",
    "required": False,
    "description": "1 (or true): also send a test notification through every configured URL.",
    "schema": {"enum": ["0", "1", "true", "false"], "default": "0"},
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


_NO_ORDER: Final = {"404": _error("not_found: no such order.")}
_VENUE: Final = {
    "502": _error("exchange_auth: the venue refused the credentials."),
}

# (method, path template) -> OpenAPI operation object.
OPERATIONS: Final[dict[tuple[str, str], JSON]] = {
    ("GET", "/api/trading/mode"): _op(
        "Current trading mode, read from the database", _json(_ref(sc.Mode), "The mode.")
    ),
    ("POST", "/api/trading/mode"): _op(
        "Switch mode. PAPER->LIVE runs the gates and needs a confirmation token.",
        _json(_ref(sc.ModeSwitched), "Switched."),
        body=_ref(sc.ModeRequest),
        body_required=True,
        errors={
            "409": _error(
                "gate_rejected (details.gates), confirmation_required (details.confirm_token,"
                " expires_in, gates), invalid_confirm_token (also a token issued under an"
                " older epoch), halted (trading_state is not ACTIVE), mode_integrity, or"
                " state_changed (a stop, halt or resume committed while the gates ran; the"
                " mode stays PAPER)."
            ),
            **_VENUE,
        },
    ),
    ("GET", "/api/trading/mode/history"): _op(
        "Mode changes, newest first",
        _json(_ref(sc.History), "History rows."),
        params=[_LIMIT],
    ),
    ("GET", "/api/audit"): _op(
        "Audit rows (every change, attempt and refusal), newest first",
        _json(_ref(sc.Audit), "Audit rows."),
        params=[_LIMIT],
    ),
    ("POST", "/api/trading/emergency-stop"): _op(
        "Halt the engine, cancel all open orders, switch to PAPER and latch",
        _json(_ref(sc.EmergencyStop), "Stopped."),
        body=_ref(sc.ReasonRequest),
    ),
    ("POST", "/api/trading/resume"): _op(
        "Clear every latched breaker (a new epoch)",
        _json(_ref(sc.Resumed), "Resumed: cleared, epoch, and the Mode fields."),
        body=_ref(sc.RequiredReason),
        body_required=True,
        errors={"409": _error("halted: resume is blocked (details.blocked says why).")},
    ),
    ("POST", "/api/trading/halt"): _op(
        "Trip the operator's halt breaker: trading HALTED (nothing but cancels) until a resume",
        _json(_ref(sc.Halt), "Halted."),
        body=_ref(sc.RequiredReason),
        body_required=True,
    ),
    ("GET", "/api/autonomous-engine/status"): _op(
        "Engine status", _json(_ref(sc.Engine), "Status.")
    ),
    ("POST", "/api/autonomous-engine/start"): _op(
        "Start the engine",
        _json(_ref(sc.Engine), "Started (changed: false when it already ran)."),
        body=_ref(sc.Empty),
        errors={
            "404": _error("not_found: the configured strategy is not loaded."),
            "409": _error("halted: trading_state forbids it."),
        },
    ),
    ("POST", "/api/autonomous-engine/stop"): _op(
        "Stop the engine", _json(_ref(sc.Engine), "Stopped."), body=_ref(sc.Empty)
    ),
    ("GET", "/api/orders"): _op(
        "Orders, newest first",
        _json(_ref(sc.Orders), "Orders."),
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
        _json(_ref(sc.OrderAnswer), "Sent to the venue (it may still fail later)."),
        status="201",
        body=_ref(sc.OrderRequestBody),
        body_required=True,
        errors={
            "409": _error(
                "halted: only position-reducing orders pass; permit_revoked: the trading"
                " state changed after the order was checked, it was never sent (details.order)."
            ),
            "422": _error("risk_rejected, or exchange_rejected (details.order)."),
            **_VENUE,
        },
    ),
    ("GET", "/api/orders/{id}"): _op(
        "One order",
        _json(_ref(sc.OrderAnswer), "The order."),
        params=[_ORDER_ID],
        errors=_NO_ORDER,
    ),
    ("GET", "/api/orders/{id}/fills"): _op(
        "The order's stored fills, and for LIVE whether VALR's trade history has each",
        _json(_ref(sc.Fills), "Fills with venue confirmation."),
        params=[_ORDER_ID],
        errors={**_NO_ORDER, **_VENUE},
    ),
    ("GET", "/api/fills"): _op(
        "The newest stored fills of both modes (or one), newest first: the database only,"
        " never VALR (GET /api/orders/{id}/fills checks one order against VALR)",
        _json(_ref(sc.RecentFills), "Fills."),
        params=[
            _mode_query("LIVE or PAPER; both when omitted."),
            _LIMIT,
        ],
    ),
    ("DELETE", "/api/orders/{id}"): _op(
        "Cancel one order",
        _json(_ref(sc.Cancelled), "Cancel requested (cancelled: false when not open)."),
        params=[_ORDER_ID],
        errors={**_NO_ORDER, **_VENUE, "422": _error("exchange_rejected: VALR refused.")},
    ),
    ("GET", "/api/positions"): _op("Positions per mode", _json(_ref(sc.Positions), "Positions.")),
    ("POST", "/api/positions/close"): _op(
        "Close positions on the named account (LIVE or PAPER, whatever the current mode):"
        " market SELLs of at most the free holding, two steps like the LIVE switch",
        _json(
            _ref(sc.Closed),
            "Sent (orders), and what was not sold (remaining, with why);"
            " orders is empty and no token is needed when there is nothing to sell.",
        ),
        body=_ref(sc.CloseRequestBody),
        body_required=True,
        errors={
            "404": _error("not_found: no such pair is known."),
            "409": _error(
                "confirmation_required (details is a ClosePlan: confirm_token, expires_in, the"
                " orders it would send, remaining), invalid_confirm_token (unknown, used,"
                " expired, another caller's, another body's, or issued under an older epoch),"
                " or halted (trading_state is HALTED: nothing but cancels)."
            ),
            **_VENUE,
        },
    ),
    ("GET", "/api/pnl"): _op(
        "Realized/unrealized and daily P&L per mode", _json(_ref(sc.Pnl), "P&L figures.")
    ),
    ("GET", "/api/risk"): _op(
        "Limit use, drawdown and breakers", _json(_ref(sc.Risk), "Risk state.")
    ),
    ("GET", "/api/plugins"): _op(
        "Loaded plugins with their sources and sha256", _json(_ref(sc.Plugins), "Plugins.")
    ),
    ("GET", "/api/health"): _op(
        "Liveness of store, feeds and exchanges",
        _json(_ref(sc.Health), "Healthy."),
        errors={"503": _json(_ref(sc.Health), "Unhealthy; the body says what.")},
    ),
    ("GET", "/api/events"): _op(
        "Server-sent events of everything that happens",
        {
            "description": "`event: <type>` / `data: <json>` per event, in order, each once;"
            " a comment every 15 s. Fills and orders:"
            " at most 1,000 a second per reader; each run of missed events is one `dropped`"
            " event (with its count) in its place; `overflow` and the end for a reader that"
            " stops reading.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    ),
    ("GET", "/api/openapi.json"): _op("This document", _json(_ref(sc.Document), "OpenAPI 3.1.")),
    ("GET", "/api/doctor"): _op(
        "Is the daemon ready to go LIVE? Config, disk, VALR status, key permissions, clock"
        " skew, streams, notifications (opt-in), risk config, plugins, engine",
        _json(
            _ref(sc.Doctor),
            "Every check (200 even when some fail: ok is false then; a check that raised or"
            " timed out is fail).",
        ),
        params=[_NOTIFY],
    ),
    ("GET", "/api/equity"): _op(
        "The equity curve of one mode: a point about once a minute and after fill batches,"
        " oldest first, at most 10,000 (a longer range is thinned evenly, keeping the newest)",
        _json(_ref(sc.Equity), "Points."),
        params=[
            _mode_query("LIVE or PAPER; the current mode when omitted."),
            {
                "name": "since",
                "in": "query",
                "required": False,
                "description": "Only points at or after this instant (RFC 3339; without an"
                " offset it is UTC). Every retained point when omitted.",
                "schema": {"type": "string", "format": "date-time"},
            },
        ],
    ),
    ("GET", "/metrics"): _op(
        "Prometheus text exposition (format 0.0.4) of the daemon's state; names start heliosd_",
        {
            "description": "`# HELP`/`# TYPE` lines and samples, one per line.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    ),
    ("POST", "/api/backup"): _op(
        "Take an online backup of the database into <state_dir>/backups/",
        _json(_ref(sc.Backup), "Where the backup went."),
        body=_ref(sc.Empty),
    ),
}

# Answers any route can give: the listener's refusals, a backend error the route does not
# name (a venue that is down, a daemon shutting down) and the internal error.
_ERRORS_FOR_ALL: Final = {
    "401": _error("unauthorized: TCP listener only, missing or wrong bearer token."),
    "403": _error("forbidden: the caller's uid is not allowed on the control socket."),
    "500": _error("internal: logged by the daemon, never detailed here."),
    "503": _error("exchange_unavailable (retry later; details.retry_after) or shutting_down."),
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
        # A route's own description of a status wins (GET /api/health's 503 is its body).
        full = {**op, "responses": {**_ERRORS_FOR_ALL, **op["responses"]}}
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
