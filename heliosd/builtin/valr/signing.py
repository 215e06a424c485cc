"""VALR request signing (HMAC-SHA512, as VALR's API docs specify).

The signature is the lower-case hex HMAC-SHA512 of::

    timestamp + VERB + path_with_query + body + subaccount_id

keyed with the API secret taken as raw UTF-8 bytes (never hex- or base64-decoded).

* ``timestamp`` is the decimal millisecond timestamp, the same string sent in
  ``X-VALR-TIMESTAMP``.
* ``path_with_query`` excludes scheme and host but includes the query string exactly as it
  goes on the wire (signing the full URL, or a re-encoded query, gives -11252).
* ``body`` is the exact string that is sent: serialise once, sign and send the same bytes.
* ``subaccount_id`` is appended only when impersonating a subaccount.

Both the client and the simulator use this module, so a disagreement about the signing
string cannot hide: the simulator's tests pin it to VALR's published test vectors.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "HEADER_API_KEY",
    "HEADER_SIGNATURE",
    "HEADER_SUBACCOUNT",
    "HEADER_TIMESTAMP",
    "auth_headers",
    "sign_request",
    "signing_string",
]

HEADER_API_KEY = "X-VALR-API-KEY"
HEADER_SIGNATURE = "X-VALR-SIGNATURE"
HEADER_TIMESTAMP = "X-VALR-TIMESTAMP"
HEADER_SUBACCOUNT = "X-VALR-SUB-ACCOUNT-ID"


def signing_string(
    timestamp_ms: int | str,
    verb: str,
    path_with_query: str,
    body: str = "",
    subaccount_id: str = "",
) -> str:
    """Return the exact text that is HMAC'd (useful when debugging a -11252)."""
    return f"{timestamp_ms}{verb.upper()}{path_with_query}{body}{subaccount_id}"


def sign_request(
    secret: str,
    timestamp_ms: int | str,
    verb: str,
    path_with_query: str,
    body: str = "",
    subaccount_id: str = "",
) -> str:
    """Return the lower-case hex HMAC-SHA512 signature VALR expects."""
    message = signing_string(timestamp_ms, verb, path_with_query, body, subaccount_id)
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha512).hexdigest()


def auth_headers(
    api_key: str,
    secret: str,
    timestamp_ms: int | str,
    verb: str,
    path: str,
    body: str = "",
    subaccount_id: str = "",
) -> dict[str, str]:
    """Return the authentication headers for one request.

    ``path`` must include the query string. ``X-VALR-SUB-ACCOUNT-ID`` is present only when
    ``subaccount_id`` is set, and the id is then part of the signature too.
    """
    headers = {
        HEADER_API_KEY: api_key,
        HEADER_SIGNATURE: sign_request(secret, timestamp_ms, verb, path, body, subaccount_id),
        HEADER_TIMESTAMP: str(timestamp_ms),
    }
    if subaccount_id:
        headers[HEADER_SUBACCOUNT] = subaccount_id
    return headers
