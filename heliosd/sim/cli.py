"""Running the simulator as a process: ``heliosd sim --port N`` / ``python -m heliosd.sim``.

The heliosd CLI (someone else's module) should call ``run_sim(argv)`` for its ``sim``
sub-command; ``serve_forever`` is the async core for callers that own a loop.

Without ``--api-key``/``--api-secret`` a key pair is derived from the seed (printed at
start-up) so a local demo works with no setup; it has View access and Trade on account
"0", which is funded with ``--fund`` amounts (default 1,000,000 ZAR).
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

from heliosd.sim.config import SimConfig
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
) -> None:
    """Run a simulator until cancelled. ``config`` overrides ``seed`` when given.

    Sets ``ready`` (if given) once the port is listening and the demo key exists.
    """
    cfg = config or SimConfig(seed=seed)
    key, secret = demo_credentials(cfg.seed)
    key, secret = api_key or key, api_secret or secret
    sim = Simulator(cfg)
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
    parser.add_argument("--fund", action="append", default=[], metavar="CUR=AMOUNT")
    parser.add_argument("--price-interval", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--price-csv", type=Path)
    parser.add_argument("--pairs", default="BTCZAR,ETHZAR")
    return parser


def run_sim(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program name), serve until interrupted; exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        funds = _funds(args.fund) if args.fund else None
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
            )
        )
    except KeyboardInterrupt:
        return 0
    except OSError as error:  # port in use, bad host
        print(f"heliosd sim: {error}", file=sys.stderr)
        return 1
    return 0
