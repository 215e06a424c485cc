"""The small vocabulary of exceptions the core acts on.

Plugins translate whatever their venue or library raises into one of these, and the core
decides: retry (transient), disable and notify (auth), record as a business outcome
(rejected), exit 78 (config). Messages never contain secrets.
"""

from __future__ import annotations

from typing import Any


class HeliosError(Exception):
    """Base of every error the core knows."""

    code = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(HeliosError):
    """The configuration is invalid. The daemon exits with status 78 (EX_CONFIG)."""

    code = "config_error"

    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        where = " ".join(p for p in (source and f"{source}:", key and f"[{key}]") if p)
        super().__init__(f"{where} {message}".strip(), details={"key": key, "source": source})
        self.key = key
        self.source = source


class TransientError(HeliosError):
    """Worth retrying later: network errors, timeouts, 5xx, 429."""

    code = "transient"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class OutcomeUnknownError(TransientError):
    """A write whose outcome is unknown (timeout after sending): look it up, never resend."""

    code = "outcome_unknown"


class AuthError(HeliosError):
    """Credentials are missing, wrong, or lack a permission. Never retried."""

    code = "auth"


class ExchangeRejected(HeliosError):
    """The venue refused a request (insufficient balance, below minimum, ...).

    A business outcome: stored with the order and returned to the caller, not logged as an
    error. ``message`` is the venue's own text.
    """

    code = "exchange_rejected"

    def __init__(
        self, message: str, *, venue_code: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.venue_code = venue_code


class NotFoundError(HeliosError):
    code = "not_found"


class RiskRejected(HeliosError):
    """A risk rule refused an order."""

    code = "risk_rejected"


class GateRejected(HeliosError):
    """One or more safety gates refused a switch to LIVE."""

    code = "gate_rejected"


class ConfirmationRequired(HeliosError):
    code = "confirmation_required"


class InvalidConfirmToken(HeliosError):
    code = "invalid_confirm_token"


class HaltedError(HeliosError):
    """Trading is halted by a latched stop; only position-reducing orders pass."""

    code = "halted"


class ModeIntegrityError(HeliosError):
    """The stored mode is LIVE without a gated, confirmed switch in the history."""

    code = "mode_integrity"


class PermitRevoked(HeliosError):
    """An order's send permit was revoked before it reached the wire: a stop, a halt, a
    resume or a mode switch changed the trading state (the epoch) since the order was
    checked. The order was **never sent**; the router stores it REJECTED with this reason."""

    code = "permit_revoked"


class StateChanged(HeliosError):
    """A transition that was checked under one epoch found another when it came to commit
    (an emergency stop landed while a LIVE switch ran its gates). Nothing was changed."""

    code = "state_changed"
