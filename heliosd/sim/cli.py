"""Running the simulator as a process: ``heliosd sim --port N`` / ``python -m heliosd.sim``.

One code path: ``heliosd sim ARGS`` (and ``make sim``) hands ARGS to :func:`run_sim`, as
``python -m heliosd.sim ARGS`` does, so both take the same flags, provision the same funded
key and print it. ``serve_forever`` is the async core for callers that own a loop.

Without ``--api-key``/``--api-secret`` a key pair is derived from the seed (printed at
start-up) so a local demo works with no setup; it has View access and Trade on account
"0", which is funded with ``--fund`` amounts (default 1,000,000 ZAR).

Faults at start (all of them, and more, can be changed while running through
``POST /sim/faults``; see ``heliosd.sim.admin``): ``--read-only``, ``--http-429-rate``,
``--http-5xx-rate``, ``--retry-after``, ``--delay PREFIX=SECONDS`` (repeatable),
``--drop-ws-every SECONDS``, ``--drop-account-message TYPE=N`` (repeatable),
``--view-lag SECONDS``, ``--v1-cancel-status 200|202``, ``--clock-offset-ms MS``,
``--stale-timestamp-plain``, ``--maker-rebate-bps N`` (maker fills earn N basis points as
VALR's ``makerReward``), ``--maker-reward-shape reward|both|fee``,
``--no-trade-authenticated``, ``--no-account-authenticated``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from heliosd.sim.config import (
    MAKER_REWARD_SHAPES,
    MAX_MAKER_REBATE_BPS,
    FaultConfig,
    RouteDelay,
    SimConfig,
)
from heliosd.sim.simulator import Simulator

log = logging.getLogger("heliosd.sim")

DEFAULT_FUNDS = {"ZAR": Decimal("1000000")}


def demo_credentials(seed: int) -> tuple[str, str]:
    """Deterministic 64-hex-character key and secret for a seed (VALR's key format)."""
    key = hashlib.sha256(f"heliosd-sim-key-{seed}".encode()).hexdigest()
    secret = hashlib.sha256(f"heliosd-sim-secret-{seed}".encode()).hexdigest()
    return key, secret


async def serve_forever(
    port: int,
    host: str = "127.0.0.1",
    seed: int = 1,
    *,
    config: SimConfig | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    funds: dict[str, Decimal] | None = None,
    ready: asyncio.Event | None = None,
    faults: FaultConfig | None = None,
) -> None:
    """Run a simulator until cancelled. ``config`` overrides ``seed`` when given.

    Sets ``ready`` (if given) once the port is listening and the demo key exists.
    """
    cfg = config or SimConfig(seed=seed)
    key, secret = demo_credentials(cfg.seed)
    key, secret = api_key or key, api_secret or secret
    sim = Simulator(cfg, faults)
    await sim.start(host=host, port=port)
    try:
        sim.add_api_key(key, secret, label="heliosd-sim")
        for currency, amount in (DEFAULT_FUNDS if funds is None else funds).items():
            sim.fund("0", currency, amount)
        print(
            f"VALR simulator on {sim.rest_url} (WebSockets {sim.ws_url}/ws/account, /ws/trade)\n"
            f"  api key    {key}\n  api secret {secret}",
            file=sys.stderr,
            flush=True,
        )
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def _funds(values: Sequence[str]) -> dict[str, Decimal]:
    funds: dict[str, Decimal] = {}
    for item in values:
        currency, _, amount = item.partition("=")
        try:
            funds[currency.strip().upper()] = Decimal(amount)
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"--fund expects CUR=AMOUNT, got {item!r}") from None
    return funds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heliosd sim", description="Local VALR simulator")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--api-key")
    parser.add_argument("--api-secret")
    parser.add_argument("--fund", action="append", default=[], metavar="CUR=AMOUNT",
                        help="fund account 0 (repeatable; default ZAR=1000000)")  # fmt: skip
    parser.add_argument("--price-interval", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--price-csv", type=Path)
    parser.add_argument("--pairs", default="BTCZAR,ETHZAR")
    faults = parser.add_argument_group("faults (also at runtime: POST /sim/faults)")
    faults.add_argument("--read-only", action="store_true", help="start in maintenance mode")
    faults.add_argument("--http-429-rate", type=_fraction, default=0.0, metavar="FRACTION")
    faults.add_argument("--http-5xx-rate", type=_fraction, default=0.0, metavar="FRACTION")
    faults.add_argument("--retry-after", type=int, default=1, metavar="SECONDS")
    faults.add_argument(
        "--delay", action="append", default=[], metavar="PREFIX=SECONDS",
        help="hold requests on a route prefix before handling them (repeatable)",
    )  # fmt: skip
    faults.add_argument("--drop-ws-every", type=float, metavar="SECONDS")
    faults.add_argument(
        "--drop-account-message", action="append", default=[], metavar="TYPE=N",
        help="drop the next N account-stream messages of TYPE, e.g. NEW_ACCOUNT_TRADE=1",
    )  # fmt: skip
    faults.add_argument("--view-lag", type=float, default=0.0, metavar="SECONDS",
                        help="order and trade views omit what is younger than this")  # fmt: skip
    faults.add_argument("--v1-cancel-status", type=int, choices=(200, 202), default=202)
    faults.add_argument("--clock-offset-ms", type=int, default=0, metavar="MS",
                        help="simulator clock ahead by MS (negative: behind)")  # fmt: skip
    faults.add_argument("--stale-timestamp-plain", action="store_true",
                        help="answer a stale timestamp with a bare 401 Unauthorized")  # fmt: skip
    faults.add_argument("--maker-rebate-bps", type=_rebate_bps, default=0, metavar="N",
                        help="maker fills earn N basis points (makerReward), 0 to 100")  # fmt: skip
    faults.add_argument("--maker-reward-shape", choices=MAKER_REWARD_SHAPES, default="reward",
                        help="how a rebate is written on trades (default: reward)")  # fmt: skip
    faults.add_argument("--no-trade-authenticated", action="store_true",
                        help="send no AUTHENTICATED on a signed /ws/trade connection")  # fmt: skip
    faults.add_argument("--no-account-authenticated", action="store_true",
                        help="send no AUTHENTICATED on /ws/account")  # fmt: skip
    return parser


def _rebate_bps(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_MAKER_REBATE_BPS:
        raise argparse.ArgumentTypeError(
            f"expected whole basis points from 0 to {MAX_MAKER_REBATE_BPS}, got {text!r}"
        )
    return int(text)


def _drops(values: Sequence[str]) -> dict[str, int]:
    drops: dict[str, int] = {}
    for item in values:
        kind, _, count = item.partition("=")
        if not kind or not (count or "1").isdigit():
            raise argparse.ArgumentTypeError(f"--drop-account-message expects TYPE=N, got {item!r}")
        drops[kind] = int(count or "1")
    return drops


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _delays(values: Sequence[str]) -> list[RouteDelay]:
    delays = []
    for item in values:
        prefix, _, seconds = item.rpartition("=")
        try:
            delay = float(seconds)
        except ValueError:
            delay = -1.0
        if not prefix.startswith("/") or delay < 0:
            raise argparse.ArgumentTypeError(f"--delay expects /PREFIX=SECONDS, got {item!r}")
        delays.append(RouteDelay(prefix, delay))
    return delays


def run_sim(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program name), serve until interrupted; exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        funds = _funds(args.fund) if args.fund else None
        faults = FaultConfig(
            read_only=args.read_only,
            http_429_rate=args.http_429_rate,
            http_5xx_rate=args.http_5xx_rate,
            retry_after_s=max(args.retry_after, 1),
            drop_ws_every_s=args.drop_ws_every,
            route_delays=_delays(args.delay),
            drop_account_messages=_drops(args.drop_account_message),
            view_lag_s=max(args.view_lag, 0.0),
            v1_cancel_status=args.v1_cancel_status,
            clock_offset_ms=args.clock_offset_ms,
            stale_timestamp_plain=args.stale_timestamp_plain,
            maker_rebate_bps=args.maker_rebate_bps,
            maker_reward_shape=args.maker_reward_shape,
            no_trade_authenticated=args.no_trade_authenticated,
            no_account_authenticated=args.no_account_authenticated,
        )
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    config = SimConfig(
        seed=args.seed,
        pairs=tuple(p.strip() for p in args.pairs.split(",") if p.strip()),
        price_interval_s=args.price_interval,
        price_csv=args.price_csv,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(
            serve_forever(
                args.port,
                args.host,
                config=config,
                api_key=args.api_key,
                api_secret=args.api_secret,
                funds=funds,
                faults=faults,
            )
        )
    except KeyboardInterrupt:
        return 0
    except OSError as error:  # port in use, bad host
        print(f"heliosd sim: {error}", file=sys.stderr)
        return 1
    return 0
