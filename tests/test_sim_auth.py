"""The simulator authenticates like VALR: signature over the exact bytes, timestamps,
keys, permissions, sub-accounts, Content-Type and JSON errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from heliosd.builtin.valr.signing import sign_request
from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import PROBE_KEY, PROBE_SECRET, Probe, compact, probed_simulator

LIMIT = {"side": "BUY", "quantity": "0.001", "price": "900000", "pair": "BTCZAR"}


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None, timestamp_window_ms=5000)) as e:
        yield e


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_signed_request_is_accepted(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    reply = await probe.get("/v1/account/api-keys/current")
    assert reply.status == 200
    assert reply.json()["permissions"] == ["View access", "Trade"]


async def test_query_string_is_part_of_the_signature(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    path = "/v1/account/balances?excludeZeroBalances=true"
    assert (await probe.get(path)).status == 200
    # Signing the path without its query string is VALR's classic -11252.
    headers = probe.headers("GET", "/v1/account/balances")
    reply = await probe.raw("GET", path, headers=headers)
    assert reply.status == 401
    assert reply.json() == {"code": -11252, "message": "Request has an invalid signature"}


async def test_full_url_signed_is_rejected(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    path = "/v1/account/balances"
    headers = probe.headers("GET", probe.rest_url + path)
    reply = await probe.raw("GET", path, headers=headers)
    assert (reply.status, reply.json()["code"]) == (401, -11252)


async def test_body_must_be_the_signed_bytes(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    signed = compact(LIMIT)
    sent = signed.replace(",", ", ")  # same JSON, different bytes
    headers = probe.headers("POST", "/v2/orders/limit", signed)
    reply = await probe.raw("POST", "/v2/orders/limit", sent, headers=headers)
    assert (reply.status, reply.json()["code"]) == (401, -11252)
    assert sim.orders_received("0") == []  # never reached the order handler


async def test_wrong_secret_and_upper_case_hex_are_invalid(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    ts = now_ms()
    path = "/v1/account/balances"
    for signature in (
        sign_request("wrong-secret", ts, "GET", path),
        sign_request(PROBE_SECRET, ts, "GET", path).upper(),
        "",
    ):
        headers = {
            "X-VALR-API-KEY": PROBE_KEY,
            "X-VALR-SIGNATURE": signature,
            "X-VALR-TIMESTAMP": str(ts),
        }
        reply = await probe.raw("GET", path, headers=headers)
        assert (reply.status, reply.json()["code"]) == (401, -11252)


@pytest.mark.parametrize("offset_ms", [-6000, 6000])
async def test_timestamp_outside_window(env: tuple[Simulator, Probe], offset_ms: int) -> None:
    _, probe = env
    reply = await probe.call("GET", "/v1/account/balances", ts=now_ms() + offset_ms)
    assert reply.status == 401
    assert reply.json() == {
        "code": -11253,
        "message": "Request timestamp is outside the allowed window",
    }


async def test_timestamp_inside_window(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    reply = await probe.call("GET", "/v1/account/balances", ts=now_ms() - 4000)
    assert reply.status == 200


async def test_timestamp_must_be_integer_ms(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    for ts in ("", "abc", "1.5e12", str(now_ms() / 1000)):
        headers = {
            "X-VALR-API-KEY": PROBE_KEY,
            "X-VALR-SIGNATURE": sign_request(PROBE_SECRET, ts, "GET", "/v1/account/balances"),
            "X-VALR-TIMESTAMP": ts,
        }
        reply = await probe.raw("GET", "/v1/account/balances", headers=headers)
        assert (reply.status, reply.json()["code"]) == (401, -11253), ts


async def test_missing_key_is_403(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    reply = await probe.raw("GET", "/v1/account/balances")
    assert reply.status == 403
    assert reply.json() == {"code": -11250, "message": "API key is required"}


async def test_unknown_key_is_401(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    stranger = Probe(probe.session, sim.rest_url, sim.ws_url, "f" * 64, "e" * 64)
    reply = await stranger.get("/v1/account/balances")
    assert reply.status == 401
    assert reply.json() == {"code": -11251, "message": "API-key is invalid"}


async def test_public_routes_need_no_key(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    assert (await probe.public("/v1/public/time")).status == 200
    # ... but the authenticated twin of the order book does.
    assert (await probe.public("/v1/marketdata/BTCZAR/orderbook")).status == 403
    assert (await probe.get("/v1/marketdata/BTCZAR/orderbook")).status == 200


async def test_trade_permission_required_to_place_and_cancel(
    env: tuple[Simulator, Probe],
) -> None:
    sim, probe = env
    sim.add_api_key("c" * 64, "d" * 64, permissions=("View access",))
    viewer = Probe(probe.session, sim.rest_url, sim.ws_url, "c" * 64, "d" * 64)
    assert (await viewer.get("/v1/account/balances")).status == 200
    for verb, path, body in (
        ("POST", "/v1/orders/limit", LIMIT),
        ("POST", "/v2/orders/limit", LIMIT),
        ("DELETE", "/v2/orders/order", {"orderId": "x", "pair": "BTCZAR"}),
        ("DELETE", "/v1/orders", None),
    ):
        reply = await viewer.call(verb, path, body)
        assert reply.status == 401, path
        assert reply.json()["code"] == -11254
    assert sim.orders_received("0") == []


async def test_view_permission_required_for_reads(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.add_api_key("c" * 64, "d" * 64, permissions=("Trade",))
    trader = Probe(probe.session, sim.rest_url, sim.ws_url, "c" * 64, "d" * 64)
    reply = await trader.get("/v1/account/balances")
    assert (reply.status, reply.json()["code"]) == (401, -11254)


async def test_writes_without_json_content_type_are_403(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    body = compact(LIMIT)
    headers = probe.headers("POST", "/v2/orders/limit", body)
    for content_type in (None, "text/plain"):
        reply = await probe.raw(
            "POST", "/v2/orders/limit", body, headers=headers, content_type=content_type
        )
        assert reply.status == 403
        assert reply.json()["code"] == -11
    headers = probe.headers("DELETE", "/v1/orders")
    reply = await probe.raw("DELETE", "/v1/orders", headers=headers, content_type=None)
    assert reply.status == 403
    assert sim.orders_received("0") == []


async def test_invalid_json_is_400_113(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    body = '{"side":"BUY",'
    headers = probe.headers("POST", "/v2/orders/limit", body)
    reply = await probe.raw("POST", "/v2/orders/limit", body, headers=headers)
    assert reply.status == 400
    assert reply.json() == {"code": -113, "message": "Invalid JSON payload"}


async def test_subaccount_impersonation_is_signed_and_scoped(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sub = "1234567890123456789"
    sim.add_account(sub)
    sim.fund(sub, "ZAR", Decimal("55"))
    impersonating = Probe(probe.session, sim.rest_url, sim.ws_url, PROBE_KEY, PROBE_SECRET, sub)
    reply = await impersonating.get("/v1/account/balances?excludeZeroBalances=true")
    assert reply.status == 200
    assert [(r["currency"], r["available"]) for r in reply.json()] == [("ZAR", "55")]
    # The id is part of the signature: a header the signature does not cover fails.
    headers = probe.headers("GET", "/v1/account/balances")
    headers["X-VALR-SUB-ACCOUNT-ID"] = sub
    reply = await probe.raw("GET", "/v1/account/balances", headers=headers)
    assert (reply.status, reply.json()["code"]) == (401, -11252)


async def test_subaccount_key_cannot_impersonate(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.add_account("42")
    sim.add_api_key("9" * 64, "8" * 64, account_id="42")
    own = Probe(probe.session, sim.rest_url, sim.ws_url, "9" * 64, "8" * 64)
    info = (await own.get("/v1/account/api-keys/current")).json()
    assert info["isSubAccount"] is True
    scoped = Probe(probe.session, sim.rest_url, sim.ws_url, "9" * 64, "8" * 64, "0")
    reply = await scoped.get("/v1/account/balances")
    assert (reply.status, reply.json()["code"]) == (401, -11255)
    unknown = Probe(probe.session, sim.rest_url, sim.ws_url, PROBE_KEY, PROBE_SECRET, "777")
    reply = await unknown.get("/v1/account/balances")
    assert (reply.status, reply.json()["code"]) == (401, -11255)
