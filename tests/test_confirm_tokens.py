"""The one confirmation-token mechanism (a LIVE switch's and a close's): single use, expires,
bound to the caller, the epoch and the exact request. A real ConfirmTokens with a clock the
test moves."""

from __future__ import annotations

from heliosd.control.backend import Actor
from heliosd.control.confirm import ConfirmTokens

ALICE = Actor(1000, "alice")
BOB = Actor(1001, "bob")


def test_single_use_expiry_and_what_a_token_is_bound_to() -> None:
    now = [100.0]
    tokens = ConfirmTokens(60.0, clock=lambda: now[0])
    text = tokens.issue(ALICE, 7, binding="close LIVE BTCZAR", payload=["sell"])
    token = tokens.take(text)
    assert token is not None and token.payload == ["sell"]
    assert token.problem(ALICE, "close LIVE BTCZAR", 7) is None
    assert tokens.take(text) is None  # single use
    assert token.problem(BOB, "close LIVE BTCZAR", 7) == "it was issued to someone else"
    assert token.problem(ALICE, "close LIVE all", 7) == "it was issued for a different request"
    assert "epoch 7 -> 8" in (token.problem(ALICE, "close LIVE BTCZAR", 8) or "")

    late = tokens.issue(ALICE, 7, binding="b")
    now[0] += 59.9
    kept = tokens.issue(ALICE, 7, binding="b")
    now[0] += 0.1  # the first one's 60 s are over
    assert tokens.take(late) is None
    assert tokens.take(kept) is not None
    assert tokens.take("not a token") is None
