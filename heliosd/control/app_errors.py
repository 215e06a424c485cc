"""Errors of the control API: the refusals raised before the backend is called, the table
from a HeliosError to its HTTP status and code, and the middleware that answers them.

Every error is ``{"error": code, "message": sentence, "details": {...}}`` and never carries a
traceback or a secret; a refused field is ``details.field``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from heliosd.control.app_json import json_error
from heliosd.core.errors import (
    AuthError,
    ConfirmationRequired,
    ExchangeRejected,
    GateRejected,
    HaltedError,
    HeliosError,
    InvalidConfirmToken,
    ModeIntegrityError,
    NotFoundError,
    OutcomeUnknownError,
    PermitRevoked,
    RiskRejected,
    StateChanged,
    TransientError,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- errors in


class BadRequest(Exception):
    """A request the API refuses before calling the backend (400, ``bad_request``)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NoIdentity(Exception):
    """A request without an Actor: the app was served without ControlServer."""


# (exception type, HTTP status, error code), first match wins: subclasses before bases.
ERROR_MAP: Final[tuple[tuple[type[HeliosError], int, str], ...]] = (
    (GateRejected, 409, "gate_rejected"),
    (ConfirmationRequired, 409, "confirmation_required"),
    (InvalidConfirmToken, 409, "invalid_confirm_token"),
    (ModeIntegrityError, 409, "mode_integrity"),
    (StateChanged, 409, "state_changed"),
    (PermitRevoked, 409, "permit_revoked"),
    (RiskRejected, 422, "risk_rejected"),
    (ExchangeRejected, 422, "exchange_rejected"),
    (HaltedError, 409, "halted"),
    (NotFoundError, 404, "not_found"),
    (AuthError, 502, "exchange_auth"),
    (OutcomeUnknownError, 503, "exchange_unavailable"),
    (TransientError, 503, "exchange_unavailable"),
)

_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _helios_error_response(exc: HeliosError, request: web.Request) -> web.Response:
    for kind, status, code in ERROR_MAP:
        if isinstance(exc, kind):
            headers: dict[str, str] = {}
            details = dict(exc.details)
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                details.setdefault("retry_after", exc.retry_after)
                headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return json_error(status, code, exc.message, details, headers)
    # A HeliosError the table does not name (ConfigError, ...) is still a bug here.
    return _internal(request, exc)


def _internal(request: web.Request, exc: BaseException) -> web.Response:
    # The traceback goes to the log only; the caller learns nothing about internals.
    log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, "internal", "internal error; see the daemon log")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn everything a handler raises into the JSON error shape."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(400, "bad_request", exc.message, exc.details)
    except NoIdentity:
        return json_error(403, "forbidden", "the caller could not be identified")
    except HeliosError as exc:
        return _helios_error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = {
            404: f"no such route: {request.path}",
            405: f"method {request.method} not allowed on {request.path}",
            413: f"request body too large (limit {MAX_BODY_BYTES} bytes)",
        }.get(exc.status, exc.reason)
        details: dict[str, Any] = {}
        if exc.status == 405 and headers:
            details["allowed"] = sorted(headers["Allow"].split(","))
        return json_error(exc.status, code, message, details, headers)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return _internal(request, exc)
