"""Signed REST transport: the bytes on the wire, the signatures, and error translation.

Two real servers on loopback: the VALR simulator (strict signature and timestamp checks) and
a small scripted aiohttp server that records exactly what arrived (raw path, body bytes,
headers) and answers what a test tells it to (for answers the simulator never gives).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from heliosd.builtin.valr.rest import NotExecuted, RateLimited, ValrRest
from heliosd.builtin.valr.retry import RetryPolicy
from heliosd.core.config import Secret
from heliosd.core.errors import AuthError, ExchangeRejected, TransientError
from heliosd.testing.contract import SIM_KEY, SIM_SECRET, funded_sim

# VALR's published secret and example key (its API docs, authentication).
PM_SECRET = "4961b74efac86b25cce8fbe4c9811c4c7a787b7a5996660afcc2e287ad864363"
PM_KEY = "b9fb68df5485639d03c3171cf6e49b89e52fd78d5c313819b9c592b59c689f33"
QUICK = RetryPolicy(max_attempts=4, max_total_s=5, base_delay_s=0.01, max_delay_s=0.02)


@dataclass
class Seen:
    method: str
    raw_path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Scripted:
    """Answers queued per path (default: 200 ``[]``); records every request."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    answers: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    server_time: float = 0.0
    delay_s: float = 0.0

    def answer(self, path: str, status: int, body: Any = None, **headers: str) -> None:
        self.answers.setdefault(path, []).append((status, body, headers))

    def hits(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.raw_path.split("?")[0] == path]


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    state = Scripted()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        state.seen.append(Seen(request.method, request.raw_path, body, dict(request.headers)))
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if request.path == "/v1/public/time" and not state.answers.get(request.path):
            when = state.server_time or time.time()
            iso = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
            return web.json_response({"epochTime": int(when), "time": iso})
        queue = state.answers.get(request.path)
        if queue:
            status, payload, headers = queue.pop(0)
        else:
            status, payload, headers = 200, [], {}
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return web.Response(status=status, text=text, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


def pm_rest(url: str, at_ms: int, **kw: Any) -> ValrRest:
    """A transport whose local clock stands still at ``at_ms`` (the vectors' timestamps)."""
    return ValrRest(
        url,
        api_key=Secret(PM_KEY),
        api_secret=Secret(PM_SECRET),
        clock=lambda: at_ms / 1000,
        read_policy=QUICK,
        **kw,
    )


# --------------------------------------------------------------------------- signing


async def test_official_get_vector_through_the_transport(scripted: Scripted) -> None:
    scripted.server_time = 1558014486.185
    rest = pm_rest(scripted.url, 1558014486185)
    try:
        await rest.request("GET", "/v1/account/balances")
    finally:
        await rest.close()
    (seen,) = scripted.hits("/v1/account/balances")
    assert seen.headers["X-VALR-TIMESTAMP"] == "1558014486185"
    assert seen.headers["X-VALR-API-KEY"] == PM_KEY
    assert seen.headers["X-VALR-SIGNATURE"] == (
        "9d52c181ed69460b49307b7891f04658e938b21181173844b5018b2fe783a6d4"
        "c62b8e67a03de4d099e7437ebfabe12c56233b73c6a0cc0f7ae87e05f6289928"
    )
    assert seen.headers["Content-Type"] == "application/json"  # even on a GET
    assert seen.body == b""
    assert "X-VALR-SUB-ACCOUNT-ID" not in seen.headers


async def test_official_post_vector_signs_exactly_the_bytes_sent(scripted: Scripted) -> None:
    scripted.server_time = 1558017528.946
    rest = pm_rest(scripted.url, 1558017528946)
    body = {
        "customerOrderId": "ORDER-000001",
        "pair": "BTCUSDC",
        "side": "BUY",
        "quoteAmount": "80000",
    }
    try:
        await rest.request("POST", "/v1/orders/market", body=body)
    finally:
        await rest.close()
    (seen,) = scripted.hits("/v1/orders/market")
    assert seen.body == (
        b'{"customerOrderId":"ORDER-000001","pair":"BTCUSDC","side":"BUY","quoteAmount":"80000"}'
    )
    assert seen.headers["X-VALR-SIGNATURE"] == (
        "09f536e3dfdad58443f16010a97a0a21ad27486b7b8d6d4103170d885410ed77"
        "f037f1fa628474190d4f5c08ca12c1acc850901f1c2e75c6d906ec3b32b008d0"
    )


async def test_query_string_is_signed_as_sent_and_subaccount_is_appended(
    scripted: Scripted,
) -> None:
    scripted.server_time = 1558014486.185
    plain = pm_rest(scripted.url, 1558014486185)
    sub = pm_rest(scripted.url, 1558014486185, subaccount_id="1234567890123456789")
    try:
        await plain.request("GET", "/v1/account/balances", query=[("excludeZeroBalances", "true")])
        await sub.request("GET", "/v1/account/balances")
    finally:
        await plain.close()
        await sub.close()
    with_query, with_sub = scripted.hits("/v1/account/balances")
    assert with_query.raw_path == "/v1/account/balances?excludeZeroBalances=true"
    assert with_query.headers["X-VALR-SIGNATURE"].startswith("b252adbf9ebb62f1a9043d15bee8a0f6")
    assert with_sub.headers["X-VALR-SUB-ACCOUNT-ID"] == "1234567890123456789"
    assert with_sub.headers["X-VALR-SIGNATURE"].startswith("5ffc09f3371a729a3ad3cda863cbf948")


async def test_signed_requests_use_server_time_offset(scripted: Scripted) -> None:
    # The local clock is 90 s behind VALR: outside the simulator's 60 s window unless the
    # offset measured from /v1/public/time is applied.
    scripted.server_time = time.time()
    rest = ValrRest(
        scripted.url, api_key=Secret("k"), api_secret=Secret("s"), clock=lambda: time.time() - 90
    )
    try:
        await rest.request("GET", "/v1/account/balances")
        assert rest.clock_offset_s is not None
        assert rest.clock_offset_s == pytest.approx(90, abs=1)
    finally:
        await rest.close()
    (seen,) = scripted.hits("/v1/account/balances")
    assert abs(int(seen.headers["X-VALR-TIMESTAMP"]) / 1000 - time.time()) < 2


# --------------------------------------------------------------------------- errors (simulator)


async def test_auth_failures_against_the_simulator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with funded_sim() as sim:
        sim.add_api_key("v" * 64, "w" * 64, permissions=("View access",))
        unknown = ValrRest(sim.rest_url, api_key=Secret("x" * 64), api_secret=Secret("y" * 64))
        wrong_secret = ValrRest(
            sim.rest_url, api_key=Secret(SIM_KEY), api_secret=Secret("not-the-secret")
        )
        view_only = ValrRest(sim.rest_url, api_key=Secret("v" * 64), api_secret=Secret("w" * 64))
        try:
            with pytest.raises(AuthError, match="API-key is invalid"):
                await unknown.get("/v1/account/balances")
            with pytest.raises(AuthError, match="invalid signature") as bad_sig:
                await wrong_secret.get("/v1/account/balances")
            with pytest.raises(AuthError, match="permission: Trade"):
                await view_only.request(
                    "POST",
                    "/v2/orders/limit",
                    body={"side": "BUY", "quantity": "0.001", "price": "1000", "pair": "BTCZAR"},
                )
        finally:
            for rest in (unknown, wrong_secret, view_only):
                await rest.close()
    assert bad_sig.value.details["venue_code"] == -11252
    texts = [str(bad_sig.value), *(r.getMessage() for r in caplog.records)]
    for secret in (SIM_KEY, "not-the-secret", "x" * 64, "w" * 64):
        assert not any(secret in t for t in texts)


async def test_business_errors_keep_valrs_message_and_code() -> None:
    async with funded_sim() as sim:
        rest = ValrRest(sim.rest_url, api_key=Secret(SIM_KEY), api_secret=Secret(SIM_SECRET))
        try:
            with pytest.raises(ExchangeRejected) as unknown_order:
                await rest.get("/v1/orders/BTCZAR/customerorderid/nope")
            with pytest.raises(ExchangeRejected) as too_small:
                await rest.request(
                    "POST",
                    "/v2/orders/limit",
                    body={
                        "side": "BUY",
                        "quantity": "0.00001",
                        "price": "900000",
                        "pair": "BTCZAR",
                        "customerOrderId": "tiny",
                    },
                )
        finally:
            await rest.close()
    assert unknown_order.value.message == "Invalid Order. "  # verbatim, trailing space too
    assert unknown_order.value.venue_code == -1
    assert too_small.value.venue_code == -12007
    assert too_small.value.message.startswith("Minimum order size not met")


async def test_429_retry_after_is_honoured_on_get() -> None:
    async with funded_sim() as sim:
        rest = ValrRest(
            sim.rest_url,
            api_key=Secret(SIM_KEY),
            api_secret=Secret(SIM_SECRET),
            read_policy=RetryPolicy(max_attempts=5, max_total_s=10),
        )
        try:
            await rest.sync_time()
            sim.faults.retry_after_s = 1
            sim.faults.http_429_rate = 1.0
            started = time.monotonic()
            task = asyncio.create_task(
                rest.get("/v1/account/balances", query=[("excludeZeroBalances", "true")])
            )
            await asyncio.sleep(0.3)
            sim.faults.http_429_rate = 0.0
            rows = await task
            elapsed = time.monotonic() - started
        finally:
            await rest.close()
    assert {r["currency"]: r["available"] for r in rows} == {"ZAR": "100000"}
    assert elapsed >= 0.95  # waited for Retry-After: 1, not the default backoff


# --------------------------------------------------------------------------- errors (scripted)


async def test_ip_whitelist_refusal_is_an_auth_error(scripted: Scripted) -> None:
    message = "The originating IP Address has not been whitelisted."
    scripted.answer("/v1/account/api-keys/current", 401, {"code": -11272, "message": message})
    rest = ValrRest(scripted.url, api_key=Secret("k"), api_secret=Secret("s"), read_policy=QUICK)
    try:
        with pytest.raises(AuthError, match="whitelisted") as caught:
            await rest.get("/v1/account/api-keys/current")
    finally:
        await rest.close()
    assert caught.value.details["venue_code"] == -11272
    assert len(scripted.hits("/v1/account/api-keys/current")) == 1  # never retried


async def test_a_401_the_clock_does_not_explain_is_not_resent(scripted: Scripted) -> None:
    """The simulator's -11253 "timestamp" text is not special: after a 401 the clock is
    measured again, and since it did not move, the request is not re-signed."""
    scripted.answer(
        "/v1/account/balances",
        401,
        {"code": -11253, "message": "Request timestamp is outside the allowed window"},
    )
    scripted.answer("/v1/account/balances", 200, [{"currency": "ZAR", "available": "1"}])
    rest = ValrRest(scripted.url, api_key=Secret("k"), api_secret=Secret("s"))
    try:
        with pytest.raises(AuthError):
            await rest.request("GET", "/v1/account/balances")
    finally:
        await rest.close()
    assert len(scripted.hits("/v1/public/time")) == 2  # at first use, and after the 401
    assert len(scripted.hits("/v1/account/balances")) == 1


async def test_429_without_retry_after_waits_for_the_next_minute(scripted: Scripted) -> None:
    scripted.answer("/v2/orders/limit", 429, "<html>Too Many Requests</html>")
    rest = ValrRest(scripted.url, api_key=Secret("k"), api_secret=Secret("s"))
    try:
        with pytest.raises(RateLimited) as caught:
            await rest.request("POST", "/v2/orders/limit", body={"pair": "BTCZAR"})
    finally:
        await rest.close()
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 60
    assert isinstance(caught.value, NotExecuted)


async def test_5xx_is_retried_on_get_but_not_on_post(scripted: Scripted) -> None:
    for _ in range(2):
        scripted.answer("/v1/orders/open", 503, {"code": -503, "message": "busy"})
    scripted.answer("/v2/orders/limit", 502, "<html>Bad Gateway</html>")
    rest = ValrRest(scripted.url, api_key=Secret("k"), api_secret=Secret("s"), read_policy=QUICK)
    try:
        assert await rest.get("/v1/orders/open") == []
        with pytest.raises(TransientError, match="502") as caught:
            await rest.request("POST", "/v2/orders/limit", body={"pair": "BTCZAR"})
    finally:
        await rest.close()
    assert len(scripted.hits("/v1/orders/open")) == 3
    assert len(scripted.hits("/v2/orders/limit")) == 1
    assert not isinstance(caught.value, NotExecuted)  # it may have happened


async def test_timeouts_and_refused_connections_are_transient(scripted: Scripted) -> None:
    scripted.server_time = time.time()
    slow = ValrRest(scripted.url, timeout_s=0.2, read_policy=RetryPolicy(max_attempts=1))
    scripted.delay_s = 0.5
    try:
        with pytest.raises(TransientError, match="in time"):
            await slow.get("/v1/public/pairs", auth=False)
    finally:
        await slow.close()
    refused = ValrRest("http://127.0.0.1:9", read_policy=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(NotExecuted, match="cannot connect"):
            await refused.get("/v1/public/pairs", auth=False)
    finally:
        await refused.close()


async def test_no_credentials_means_auth_error_before_any_request(scripted: Scripted) -> None:
    rest = ValrRest(scripted.url)
    try:
        with pytest.raises(AuthError, match="VALR credentials are not configured"):
            await rest.request("GET", "/v1/account/balances")
    finally:
        await rest.close()
    assert scripted.hits("/v1/account/balances") == []
