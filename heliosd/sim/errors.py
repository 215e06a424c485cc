"""The simulator's error answers: every status, code and message in one table.

Codes marked *VALR* are in VALR's API documentation (error codes). Codes marked *sim* are
choices for cases VALR does not document; they are negative like VALR's, and chosen not to
collide with any code in the catalogue.

=====  ======  =========================================================  ==========
HTTP   code    message                                                    source
=====  ======  =========================================================  ==========
403    -11250  ``API key is required`` (no X-VALR-API-KEY)                 sim (403: VALR)
401    -11251  ``API-key is invalid`` (unknown key)                        sim (text: ALUNA)
401    -11252  ``Request has an invalid signature``                        VALR
401    -11253  ``Request timestamp is outside the allowed window``         sim
401    -11254  ``API key does not have the required permission: <perm>``   sim
401    -11255  ``Invalid sub-account id``                                  sim
403    -11     ``Content-Type must be application/json``                   sim (403: VALR)
400    -113    ``Invalid JSON payload``                                    VALR
400    -11     ``Invalid Request, please check your request and try ...``  VALR
400    -11     ``Price must be a multiple of the tick size <tick>``        sim
400    -11     ``Maximum order size exceeded . Maximum amount: ...``       sim
400    -21     ``Unsupported Currency Pair``                               VALR
400    -12007  ``Minimum order size not met . Minimum amount: ...``        VALR
400    -11502  ``Duplicate customer order id's are not allowed``           VALR text
400    -1      ``Invalid Order. `` (unknown order, trailing space)          VALR
400    -6      ``Insufficient Balance`` (v2 body also has ``orderId``)      VALR
400    -12011  post-only would have matched (v2)                          sim
400    -12012  FOK could not be filled completely (v2)                    sim
400    -12013  self-trade prevented (v2)                                  sim
400    -12014  no liquidity for a market order (v2)                       sim
429    —       HTML body, ``x-valr-ratelimited: true``, ``Retry-After``   VALR
503    —       ``{"code":-503,"message":"Exchange is in read-only mode"}``  sim
=====  ======  =========================================================  ==========
"""

from __future__ import annotations

from typing import Any

GENERIC_INVALID = "Invalid Request, please check your request and try again"
INVALID_ORDER = "Invalid Order. "  # VALR's text, trailing space included

# failedReason texts. The first two are VALR's observed strings; the rest are the sim's
# (VALR documents the causes but not the words).
REASON_INSUFFICIENT_BALANCE = "Insufficient Balance"
REASON_SELF_TRADE = (
    "We did not execute this order since it would have matched with your own order on the Exchange"
)
REASON_POST_ONLY = "Post only cancelled as it would have been filled"
REASON_FOK = "Order cancelled as it could not be filled completely"
REASON_NO_LIQUIDITY = "Order cancelled due to insufficient liquidity"

# Sync (v2) failure codes for each failedReason.
FAILURE_CODES: dict[str, int] = {
    REASON_INSUFFICIENT_BALANCE: -6,
    REASON_POST_ONLY: -12011,
    REASON_FOK: -12012,
    REASON_SELF_TRADE: -12013,
    REASON_NO_LIQUIDITY: -12014,
}

FAILED_CANCEL_MESSAGE = "An error occurred while cancelling your order."


class ApiError(Exception):
    """An error answer: HTTP status plus VALR's ``{"code","message"}`` body."""

    def __init__(
        self, status: int, code: int | None, message: str, *, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        # v2 order errors put orderId first (PM example order), then code and message.
        if self.code is None:
            return {**self.extra, "message": self.message}
        return {**self.extra, "code": self.code, "message": self.message}


def invalid_request(message: str = GENERIC_INVALID) -> ApiError:
    return ApiError(400, -11, message)


def unsupported_pair() -> ApiError:
    return ApiError(400, -21, "Unsupported Currency Pair")


def invalid_order() -> ApiError:
    return ApiError(400, -1, INVALID_ORDER)


def invalid_json() -> ApiError:
    return ApiError(400, -113, "Invalid JSON payload")


def duplicate_customer_order_id() -> ApiError:
    return ApiError(400, -11502, "Duplicate customer order id's are not allowed")


def missing_api_key() -> ApiError:
    return ApiError(403, -11250, "API key is required")


def unknown_api_key() -> ApiError:
    return ApiError(401, -11251, "API-key is invalid")


def invalid_signature() -> ApiError:
    return ApiError(401, -11252, "Request has an invalid signature")


def bad_timestamp() -> ApiError:
    return ApiError(401, -11253, "Request timestamp is outside the allowed window")


def unauthorized() -> ApiError:
    """A bare 401 without a code (a text a client library saw from VALR; codes unknown)."""
    return ApiError(401, None, "Unauthorized")


def missing_permission(permission: str) -> ApiError:
    return ApiError(401, -11254, f"API key does not have the required permission: {permission}")


def invalid_subaccount() -> ApiError:
    return ApiError(401, -11255, "Invalid sub-account id")


def wrong_content_type() -> ApiError:
    return ApiError(403, -11, "Content-Type must be application/json")


def read_only() -> ApiError:
    return ApiError(503, -503, "Exchange is in read-only mode")
