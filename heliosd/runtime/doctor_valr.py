"""The doctor's checks that ask VALR: its status, the API key and its permissions, the
clock skew against its server time, and the trade and account streams.
"""

from __future__ import annotations

from typing import Any

from heliosd.builtin.gates import ClockSkew, VenueOnline, credentials_verdict
from heliosd.runtime.doctor_check import FAIL, OK, WARN, DoctorContext, Finding

# --------------------------------------------------------------------------- VALR


async def check_venue(ctx: DoctorContext) -> Finding:
    """The ``venue_online`` gate: VALR's ``/v1/public/status`` read now says online."""
    v = ctx.settings.valr
    result = await VenueOnline().check(ctx.gates)
    if result.ok:
        return Finding(OK, f"{v.label} at {v.rest_url} is online")
    if result.reason.startswith("cannot check"):
        fix = f"check that this machine reaches {v.rest_url} (DNS, firewall, proxy)"
    else:
        fix = f"wait until {v.label} is online again (maintenance): LIVE orders are refused"
    return Finding(FAIL, result.reason, fix)


async def check_credentials(ctx: DoctorContext) -> Finding:
    """The ``valr_credentials`` gate, and the key's permissions shown."""
    v = ctx.settings.valr
    if not v.has_credentials:
        return Finding(
            FAIL,
            "valr.api_key and valr.api_secret are not both set",
            "create a VALR API key with View access and Trade only; set both keys",
        )
    result, info = await credentials_verdict(ctx.gates)
    shown = ""
    if info is not None:
        names = ", ".join(sorted(info.permissions)) or "none"
        shown = f"key {info.label!r}, permissions: {names}"
    if result.ok:
        return Finding(OK, shown)
    detail = f"{result.reason} ({shown})" if shown else result.reason
    if info is None:
        fix = "check valr.api_key / valr.api_secret (a deleted or mistyped key fails here)"
    else:
        fix = (
            "create a VALR API key with View access and Trade only (never Withdraw or"
            " Transfer), set it in valr.api_key / valr.api_secret, and restart"
        )
    return Finding(FAIL, detail, fix)


async def check_clock(ctx: DoctorContext) -> Finding:
    """The ``clock_skew`` gate: VALR's server time against ours, measured now."""
    limit = float(ctx.settings.valr.max_clock_skew_s)
    result = await ClockSkew().check(ctx.gates)
    where = f"limit valr.max_clock_skew_s = {limit:g} s"
    if result.ok:
        skew = getattr(ctx.live, "clock_skew_ms", None)
        measured = f"{skew} ms" if isinstance(skew, int) else "within bounds"
        return Finding(OK, f"clock skew {measured} ({where})")
    return Finding(
        FAIL,
        f"{result.reason} ({where})",
        "synchronise this machine's clock (NTP: timedatectl set-ntp true; chronyc tracking)",
    )


# --------------------------------------------------------------------------- streams


def _stream(ctx: DoctorContext, name: str) -> tuple[bool, str, str]:
    return ctx.live_streams.get(name, (False, "never connected", ""))


def _since(since: str) -> str:
    return f" since {since}" if since else ""


async def check_trade_stream(ctx: DoctorContext) -> Finding:
    """Prices: the trade stream is up and has heard from VALR lately."""
    up, detail, since = _stream(ctx, "trade")
    url = ctx.settings.valr.ws_url
    if not up:
        return Finding(
            FAIL,
            f"trade stream down{_since(since)}: {detail}",
            f"check that this machine reaches {url}; the client reconnects by itself",
        )
    age_of: Any = getattr(ctx.live, "last_message_age_s", None)
    if not callable(age_of):
        return Finding(OK, f"trade stream up{_since(since)}")
    age: Any = age_of("trade")
    if not isinstance(age, int | float):
        return Finding(
            FAIL,
            f"trade stream up{_since(since)} but no message received yet",
            "wait a few seconds and ask again; if it stays silent, restart heliosd",
        )
    bound = float(ctx.settings.risk.max_quote_age_s)
    text = f"trade stream up{_since(since)}, last message {age:.1f} s ago"
    if age > bound:
        return Finding(
            WARN,
            f"{text} (over risk.max_quote_age_s = {bound:g} s)",
            "prices this old refuse LIVE orders; if it stays silent, restart heliosd",
        )
    return Finding(OK, text)


async def check_account_stream(ctx: DoctorContext) -> Finding:
    """Fills and balances: the account stream is up (it only runs with credentials)."""
    if not ctx.settings.valr.has_credentials:
        return Finding(
            FAIL,
            "account stream not running: no VALR credentials",
            "set valr.api_key and valr.api_secret",
        )
    up, detail, since = _stream(ctx, "account")
    if not up:
        return Finding(
            FAIL,
            f"account stream down{_since(since)}: {detail}",
            f"check the credentials and that this machine reaches {ctx.settings.valr.ws_url}",
        )
    return Finding(OK, f"account stream up{_since(since)}")
