"""Request authentication, checked the way VALR does (its API docs: authentication), and strictly.

Order of checks, first failure wins (statuses and codes: ``heliosd.sim.errors``):

1. ``X-VALR-API-KEY`` absent -> 403 -11250.
2. Key unknown -> 401 -11251 ``API-key is invalid``.
3. ``X-VALR-TIMESTAMP`` absent, not an integer of milliseconds, or more than
   ``timestamp_window_ms`` (default 60 000) away from the sim's clock in either direction
   -> 401 -11253 (or, with the ``stale_timestamp_plain`` fault, a bare 401 "Unauthorized").
   VALR's own window and answer are undocumented. The sim's clock is the machine's plus the
   ``clock_offset_ms`` fault.
4. ``X-VALR-SIGNATURE`` absent or not exactly the lower-case hex HMAC-SHA512 of
   ``timestamp + METHOD + raw path with query + raw body + sub-account id`` -> 401 -11252.
   The path is the request target exactly as received (no re-encoding) and the body is the
   exact bytes received, so a client that signs something other than what it sends fails.
5. ``X-VALR-SUB-ACCOUNT-ID`` sent with a subaccount's own key, or naming an account the
   sim does not know -> 401 -11255.
6. A missing permission ("View access" for everything, "Trade" to place or cancel) -> 401
   -11254 (VALR answers 401 to other authorisation failures, e.g. primary-only routes).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from heliosd.builtin.valr.signing import (
    HEADER_API_KEY,
    HEADER_SIGNATURE,
    HEADER_SUBACCOUNT,
    HEADER_TIMESTAMP,
    sign_request,
)
from heliosd.sim.accounts import ApiKey
from heliosd.sim.errors import (
    bad_timestamp,
    invalid_signature,
    invalid_subaccount,
    missing_api_key,
    missing_permission,
    unauthorized,
    unknown_api_key,
)

VIEW = "View access"
TRADE = "Trade"


@dataclass(frozen=True, slots=True)
class AuthContext:
    key: ApiKey
    account_id: str  # the account acted on (the impersonated subaccount, if any)


def now_ms(offset_ms: int = 0) -> int:
    """The simulator's clock in ms: the machine's plus the ``clock_offset_ms`` fault."""
    return time.time_ns() // 1_000_000 + offset_ms


def authenticate(
    headers: Mapping[str, str],
    method: str,
    raw_path: str,
    body: str,
    keys: Mapping[str, ApiKey],
    known_accounts: Mapping[str, object],
    window_ms: int,
    *,
    require: tuple[str, ...] = (VIEW,),
    offset_ms: int = 0,
    plain_stale: bool = False,
) -> AuthContext:
    """Return who is calling, or raise ``ApiError``. ``headers`` is case-insensitive."""
    api_key = headers.get(HEADER_API_KEY)
    if not api_key:
        raise missing_api_key()
    key = keys.get(api_key)
    if key is None:
        raise unknown_api_key()
    raw_ts = headers.get(HEADER_TIMESTAMP, "")
    if not (raw_ts.isascii() and raw_ts.isdigit()) or (
        abs(now_ms(offset_ms) - int(raw_ts)) > window_ms
    ):
        raise unauthorized() if plain_stale else bad_timestamp()
    subaccount = headers.get(HEADER_SUBACCOUNT, "")
    expected = sign_request(key.secret, raw_ts, method, raw_path, body, subaccount)
    given = headers.get(HEADER_SIGNATURE, "")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii")):
        raise invalid_signature()
    account_id = key.account_id
    if subaccount:
        if key.is_sub_account or subaccount not in known_accounts:
            raise invalid_subaccount()
        account_id = subaccount
    for permission in require:
        if permission not in key.permissions:
            raise missing_permission(permission)
    return AuthContext(key, account_id)
