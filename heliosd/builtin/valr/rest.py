"""Signed REST transport to VALR over one aiohttp session.

Contract:

* The body is serialised once (compact JSON) and those exact bytes are both signed and sent.
* The signed path includes the query string exactly as it goes on the wire: we build it
  ourselves and tell aiohttp not to re-encode it.
* ``Content-Type: application/json`` goes on every request (VALR answers 403 without it).
* Requests are signed with *server* time: local time plus the offset measured from
  ``/v1/public/time`` (at start, periodically by the client, and after **any 401** on a
  signed request). VALR's answer to a stale timestamp is undocumented, so nothing here reads
  an error code or text: after a 401 the offset is measured again, and only if it moved
  (by more than :data:`RESIGN_TOLERANCE_S` from the one the request was signed with) is
  the request re-signed and sent once more. [INF: VALR authenticates a request before it
  reaches the matching engine, so a 401 was not executed; the simulator models it so.]
* Every failure leaves as a :mod:`heliosd.core.errors` type; messages never carry the key, the
  secret, a signature or a header dict.

Only :meth:`ValrRest.get` retries (reads are idempotent). :meth:`ValrRest.request` makes one
attempt; what a write may retry is the caller's decision, helped by :class:`NotExecuted`,
which marks failures where VALR certainly did not act on the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yarl

from heliosd.builtin.valr import parse
from heliosd.builtin.valr.retry import RetryPolicy, read_retrying
from heliosd.builtin.valr.signing import auth_headers
from heliosd.core.config import Secret
from heliosd.core.errors import AuthError, ExchangeRejected, TransientError

log = logging.getLogger(__name__)

NOT_CONFIGURED = "VALR credentials are not configured"

# -11252 bad signature, -11272 IP not whitelisted (VALR's error codes): credential problems
# whatever HTTP status carries them.
AUTH_CODES = frozenset({-11252, -11272})
# A 401 whose re-measured clock offset moved by more than this (seconds) from the offset the
# request was signed with is re-signed and sent once more; otherwise the clock was not the
# cause and the AuthError stands.
RESIGN_TOLERANCE_S = 0.5

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class NotExecuted(TransientError):
    """VALR certainly did not act on the request (refused connection, 429): safe to resend."""


class RateLimited(NotExecuted):
    """HTTP 429. VALR's limiter answers before the request reaches the matching engine."""


def path_segment(value: str) -> str:
    """Percent-encode one path segment (customer order ids are [0-9A-Za-z-] anyway)."""
    return quote(value, safe="")


def with_query(path: str, query: Sequence[tuple[str, str]] | None) -> str:
    return f"{path}?{urlencode(query)}" if query else path


class ValrRest:
    """One signed HTTP session to VALR. Create inside a running loop; ``close()`` when done."""

    def __init__(
        self,
        rest_url: str,
        *,
        api_key: Secret | None = None,
        api_secret: Secret | None = None,
        subaccount_id: str | None = None,
        timeout_s: float = 10.0,
        read_policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = rest_url.rstrip("/")
        self._key = api_key
        self._secret = api_secret
        self._subaccount = subaccount_id or ""
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._read_policy = read_policy or RetryPolicy()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._offset_s: float | None = None  # server time - local time
        self._sync_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def has_credentials(self) -> bool:
        return self._key is not None and self._secret is not None

    def _session_or_open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ clock

    @property
    def clock_offset_s(self) -> float | None:
        """Server time minus local time in seconds, or None before the first sync."""
        return self._offset_s

    def server_now_ms(self) -> int:
        return round((self._clock() + (self._offset_s or 0.0)) * 1000)

    async def sync_time(self) -> datetime:
        """Measure the server-time offset (midpoint of the round trip); return server time."""
        async with self._sync_lock:
            before = self._clock()
            payload = await self._with_retries("GET", "/v1/public/time", None, None, False)
            after = self._clock()
            try:
                server = parse.server_time(parse.obj(payload, "time"))
            except parse.ParseError as exc:
                raise TransientError(f"VALR sent an unreadable server time: {exc}") from None
            self._offset_s = server.timestamp() - (before + after) / 2
            return server

    # ------------------------------------------------------------------ requests

    def signed_headers(self, verb: str, path_with_query: str, body: str = "") -> dict[str, str]:
        """The auth headers for one request, signed with server time (also used by the WS)."""
        if self._key is None or self._secret is None:
            raise AuthError(NOT_CONFIGURED)
        return auth_headers(
            self._key.reveal(),
            self._secret.reveal(),
            self.server_now_ms(),
            verb,
            path_with_query,
            body,
            self._subaccount,
        )

    async def get(
        self, path: str, *, query: Sequence[tuple[str, str]] | None = None, auth: bool = True
    ) -> Any:
        """GET with the read retry policy (transient errors, ``retry_after`` honoured)."""
        return await self._with_retries("GET", path, query, None, auth)

    async def request(
        self,
        verb: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        auth: bool = True,
        gate: Callable[[], None] | None = None,
        remeasure: Callable[[Awaitable[datetime]], Awaitable[datetime]] | None = None,
    ) -> Any:
        """One attempt (plus one re-send after a 401 that a clock re-measurement explains).
        Returns the decoded JSON answer, or None for an empty body.

        ``gate`` is called immediately before each send goes on the wire, with no await in
        between (the send-permit check); whatever it raises stops that send. ``remeasure``,
        when given, is handed the clock re-measurement after a 401 and awaits
        it on the caller's terms (a send permit makes it revocable: the measurement retries
        for up to the read policy's budget, and a stop must not wait for it)."""
        if auth and self._offset_s is None:
            await self.sync_time()
        used = self._offset_s  # _send signs before its first await: this is its offset
        try:
            return await self._send(verb, path, query, body, auth, gate)
        except AuthError as exc:
            if not auth or exc.details.get("status") != 401:
                raise
            if remeasure is None:
                await self.sync_time()
            else:
                await remeasure(self.sync_time())
            moved = abs((self._offset_s or 0.0) - (used or 0.0))
            if moved <= RESIGN_TOLERANCE_S:
                raise
            log.warning(
                "VALR answered 401 and its clock moved %.3f s from the offset we signed with;"
                " re-signing once with the corrected clock",
                moved,
            )
        return await self._send(verb, path, query, body, auth, gate)

    async def _with_retries(
        self,
        verb: str,
        path: str,
        query: Sequence[tuple[str, str]] | None,
        body: Mapping[str, Any] | None,
        auth: bool,
    ) -> Any:
        async for attempt in read_retrying(self._read_policy):
            with attempt:
                if auth:
                    return await self.request(verb, path, query=query, body=body)
                return await self._send(verb, path, query, body, auth)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send(
        self,
        verb: str,
        path: str,
        query: Sequence[tuple[str, str]] | None,
        body: Mapping[str, Any] | None,
        auth: bool,
        gate: Callable[[], None] | None = None,
    ) -> Any:
        target = with_query(path, query)
        text = _dumps(body) if body is not None else ""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers.update(self.signed_headers(verb, target, text))
        url = yarl.URL(self._base + target, encoded=True)
        what = f"{verb} {path}"
        if gate is not None:
            gate()  # last before the request is handed to aiohttp: no await in between
        try:
            async with self._session_or_open().request(
                verb, url, data=text.encode() if body is not None else None, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except aiohttp.ClientConnectorError as exc:
            raise NotExecuted(f"cannot connect to VALR ({what}): {exc.os_error}") from None
        except TimeoutError:
            raise TransientError(f"VALR did not answer in time ({what})") from None
        except aiohttp.ClientError as exc:
            raise TransientError(
                f"connection to VALR failed ({what}): {type(exc).__name__}"
            ) from None
        return self._answer(status, raw, retry_after, what)

    # ------------------------------------------------------------------ answers

    def _answer(self, status: int, raw: bytes, retry_after: str | None, what: str) -> Any:
        if 200 <= status < 300:
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise TransientError(f"VALR sent unreadable JSON ({what})") from None
        if status == 429:
            # VALR's 429 body is HTML, not JSON; only the header matters.
            raise RateLimited(
                f"VALR rate limit exceeded ({what})", retry_after=self._retry_after(retry_after)
            )
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        code = body.get("code") if isinstance(body, dict) else None
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        message = body.get("message") if isinstance(body, dict) else None
        message = parse.venue_text(message) if isinstance(message, str) and message else None
        details: dict[str, Any] = {"status": status, "venue_code": code}
        if isinstance(body, dict) and isinstance(body.get("orderId"), str):
            details["order_id"] = body["orderId"]
        if status >= 500:
            raise TransientError(
                f"VALR server error {status} ({what}){': ' + message if message else ''}",
                details=details,
            )
        if code in AUTH_CODES or status in (401, 403):
            reason = message or ("unauthorized" if status == 401 else "forbidden")
            raise AuthError(f"VALR refused the request ({what}): {reason}", details=details)
        raise ExchangeRejected(message or f"HTTP {status}", venue_code=code, details=details)

    def _retry_after(self, header: str | None) -> float:
        """``Retry-After`` (seconds or HTTP date); without it, the seconds left until the next
        wall-clock minute (VALR's budget is a fixed per-minute window)."""
        if header:
            try:
                return max(float(header), 0.0)
            except ValueError:
                pass
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(when.timestamp() - self.server_now_ms() / 1000, 0.0)
        now = self.server_now_ms() / 1000
        return max(math.ceil(now / 60) * 60 - now, 0.1)
