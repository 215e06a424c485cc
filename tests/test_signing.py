"""VALR request signing pinned to the published test vectors (VALR's API docs, authentication)."""

from __future__ import annotations

import pytest

from heliosd.builtin.valr.signing import (
    HEADER_API_KEY,
    HEADER_SIGNATURE,
    HEADER_SUBACCOUNT,
    HEADER_TIMESTAMP,
    auth_headers,
    sign_request,
    signing_string,
)

OFFICIAL_SECRET = "4961b74efac86b25cce8fbe4c9811c4c7a787b7a5996660afcc2e287ad864363"
OFFICIAL_KEY = "b9fb68df5485639d03c3171cf6e49b89e52fd78d5c313819b9c592b59c689f33"

# (secret, timestamp, verb, path, body, subaccount, expected)
VECTORS = [
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "GET", "/v1/account/balances", "", "",
        "9d52c181ed69460b49307b7891f04658e938b21181173844b5018b2fe783a6d4"
        "c62b8e67a03de4d099e7437ebfabe12c56233b73c6a0cc0f7ae87e05f6289928",
        id="official-1-get-balances",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558017528946, "POST", "/v1/orders/market",
        '{"customerOrderId":"ORDER-000001","pair":"BTCUSDC","side":"BUY","quoteAmount":"80000"}',
        "",
        "09f536e3dfdad58443f16010a97a0a21ad27486b7b8d6d4103170d885410ed77"
        "f037f1fa628474190d4f5c08ca12c1acc850901f1c2e75c6d906ec3b32b008d0",
        id="official-2-post-market",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558017528946, "POST", "/v1/orders/market",
        '{"customerOrderId": "ORDER-000001", "pair": "BTCZAR", "side": "BUY", '
        '"quoteAmount": "80000"}',
        "",
        "c34624540dae2c84a22adeea129424762b007b4bc0bf9c1ca226ea339184115f"
        "b89aaadfbfe534103e2c248d7ba7d9a7dc0670311f0f5a97a66717a582cada6f",
        id="valrpy-spaced-body",
    ),
    pytest.param(
        "superdupersecret", 1577572690093, "GET", "/v1/account/balances", "", "",
        "647d276537b952fe37f349422a4a60a76ecc2e3fad509a523b03dccd1a940525"
        "f8ff06314ad1adc5625000223c514637cd9682ee89ffc285b7493e7c64e746aa",
        id="vp-get-balances",
    ),
    pytest.param(
        "superdupersecret", 1577572690093, "GET", "/v1/account/balances", "",
        "909461317243875555",
        "3dc9ed14dbb13f9c529bd75241686523ca1e77fcbe0184ca35fe8d5329692e5e"
        "26a3b3d7ff339dce6e829d3b1c93ef9e187cf696c07ef12517198950ea68af0f",
        id="vp-subaccount",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "GET", "/v1/account/balances", "",
        "1234567890123456789",
        "5ffc09f3371a729a3ad3cda863cbf948326c173ddbf10f0cc83794012e75ece6"
        "efbcb92cc3cf937796d22636f1adf37d93d53399f386a0d49e2f76f13990c655",
        id="computed-subaccount",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "GET", "/v1/account/balances?excludeZeroBalances=true",
        "", "",
        "b252adbf9ebb62f1a9043d15bee8a0f66fc77f139ca5a406c08a7ae56b626a17"
        "531aafbbd4899db44286f81784b366a42807b3875433702bb8a5b51df58720f5",
        id="computed-query-string",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "GET", "/ws/account", "", "",
        "7c8893b201ee0a38e4fbc0e15aa30a5bab18a9e6c1e9c4f1c50ab7d1403bd8e1"
        "923d068f21be6b2a2717c43abb014a41ef762a113bb6d323393637dae9ac02fb",
        id="computed-ws-account",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "GET", "/ws/trade", "", "",
        "819a2650ba597a17da05cd5fb4a41b914de46abed43e267c1d905f4414c8fa2b"
        "45a8a94080b71ff19f16e845b29ae2869e9edb51afba6610dc5508db37494568",
        id="computed-ws-trade",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "DELETE", "/v1/orders/order",
        '{"orderId":"e5886f2d-191b-4330-a221-c7b41b0bc553","pair":"BTCZAR"}', "",
        "434ff8d25e6b1ec5a7692b4e85dd66e250a26cf43aa92d4f5517e08f87fef675"
        "f289339bee69885e444870fc786aa459b7c20995c7e39f56ed3c2ff82e4e1629",
        id="computed-delete-body",
    ),
    pytest.param(
        OFFICIAL_SECRET, 1558014486185, "POST", "/v1/orders/limit",
        '{"side":"BUY","quantity":"0.001","price":"500000","pair":"BTCZAR","postOnly":true,'
        '"customerOrderId":"abc-1","timeInForce":"GTC"}',
        "",
        "cbcfc38876e0b35aebbf3d0d92d37676a2d9afd9b96932b470256df5ec682571"
        "30f1cf272373ebb22f930cefa49b1a351df20dedf801e0e80d6689bdb9db5a5b",
        id="computed-post-limit",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("secret", "ts", "verb", "path", "body", "sub", "expected"), VECTORS)
def test_vectors_bit_for_bit(
    secret: str, ts: int, verb: str, path: str, body: str, sub: str, expected: str
) -> None:
    assert sign_request(secret, ts, verb, path, body, sub) == expected
    # The timestamp may be given as the header string too.
    assert sign_request(secret, str(ts), verb, path, body, sub) == expected


def test_verb_is_upper_cased() -> None:
    upper = sign_request(OFFICIAL_SECRET, 1558014486185, "GET", "/v1/account/balances")
    assert sign_request(OFFICIAL_SECRET, 1558014486185, "get", "/v1/account/balances") == upper


def test_signature_is_lower_hex_sha512() -> None:
    sig = sign_request("s", 1, "GET", "/")
    assert len(sig) == 128
    assert sig == sig.lower()
    int(sig, 16)


def test_signing_string_order() -> None:
    assert signing_string(12, "post", "/p?q=1", "{}", "9") == "12POST/p?q=1{}9"


def test_body_bytes_matter() -> None:
    compact = sign_request("s", 1, "POST", "/v1/orders/limit", '{"a":"1"}')
    spaced = sign_request("s", 1, "POST", "/v1/orders/limit", '{"a": "1"}')
    assert compact != spaced


def test_auth_headers_without_subaccount() -> None:
    headers = auth_headers(
        OFFICIAL_KEY, OFFICIAL_SECRET, 1558014486185, "GET", "/v1/account/balances"
    )
    assert headers == {
        HEADER_API_KEY: OFFICIAL_KEY,
        HEADER_SIGNATURE: (
            "9d52c181ed69460b49307b7891f04658e938b21181173844b5018b2fe783a6d4"
            "c62b8e67a03de4d099e7437ebfabe12c56233b73c6a0cc0f7ae87e05f6289928"
        ),
        HEADER_TIMESTAMP: "1558014486185",
    }
    assert HEADER_SUBACCOUNT not in headers


def test_auth_headers_with_subaccount_signs_it() -> None:
    headers = auth_headers(
        OFFICIAL_KEY, OFFICIAL_SECRET, 1558014486185, "GET", "/v1/account/balances",
        subaccount_id="1234567890123456789",
    )  # fmt: skip
    assert headers[HEADER_SUBACCOUNT] == "1234567890123456789"
    assert headers[HEADER_SIGNATURE].startswith("5ffc09f3371a729a")
    assert headers["X-VALR-API-KEY"] == OFFICIAL_KEY
    assert headers["X-VALR-TIMESTAMP"] == "1558014486185"


def test_secret_is_utf8_not_hex_decoded() -> None:
    import hashlib
    import hmac

    raw = hmac.new(b"abcd", b"1GET/", hashlib.sha512).hexdigest()
    assert sign_request("abcd", 1, "GET", "/") == raw
