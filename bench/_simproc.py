"""The VALR simulator in a child process, driven over a pipe.

The real VALR is another machine; a simulator in the daemon's own process would share its
event loop and its core. ``SimProcess`` forks a child that runs ``heliosd.testing.start_sim``
(a funded account "0" and a trade-only key) and answers a few commands: CPU time used, fill
injection (a burst, or paced batches), resting orders placed through its own signed REST,
and the account's open-order count.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from decimal import Decimal
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import Any

import aiohttp

from heliosd.sim.probe import Probe
from heliosd.testing import SimHandle, start_sim

PAIR = "BTCZAR"
QUANTITY = Decimal("0.0001")
RESTING_PRICE = "600000"  # half the simulator's BTCZAR price: a bid that rests


def _child(conn: Connection) -> None:
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    handle = await start_sim(funded=Decimal(10) ** 10)
    sim = handle.sim
    conn.send({"rest": sim.rest_url, "ws": sim.ws_url, "key": handle.key,
               "secret": handle.secret})  # fmt: skip
    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession()
    probe = Probe(session, sim.rest_url, sim.ws_url, handle.key, handle.secret)
    try:
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            kind = cmd[0]
            if kind == "stop":
                break
            if kind == "cpu":
                conn.send(time.process_time())
            elif kind == "burst":
                t = time.monotonic_ns()
                ids = await sim.inject_fills(handle.account, PAIR, cmd[1], QUANTITY)
                conn.send([(t, ids)])
            elif kind == "paced":
                conn.send(await _paced(sim, handle.account, *cmd[1:]))
            elif kind == "rest":
                conn.send(await _place_resting(probe, cmd[1]))
            elif kind == "open":
                conn.send(len(sim.open_orders(handle.account)))
    finally:
        await session.close()
        await sim.stop()


async def _paced(sim: Any, account: str, n: int, batch: int, interval_s: float) -> list[Any]:
    batches = []
    start = time.monotonic()
    for i in range(0, n, batch):
        # Absolute schedule: a late batch does not push the others back.
        delay = start + (i // batch) * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.monotonic_ns()
        ids = await sim.inject_fills(account, PAIR, min(batch, n - i), QUANTITY)
        batches.append((t, ids))
        await asyncio.sleep(0)  # let the socket writers run
    return batches


async def _place_resting(probe: Probe, n: int) -> int:
    """Place ``n`` resting limit bids on the account, 20 at a time, through signed REST."""

    async def one(i: int) -> bool:
        reply = await probe.call("POST", "/v1/orders/limit", {
            "pair": PAIR, "side": "BUY", "quantity": str(QUANTITY), "price": RESTING_PRICE,
            "postOnly": True, "customerOrderId": f"bench-{time.monotonic_ns()}-{i}",
        })  # fmt: skip
        return reply.status in (200, 201, 202)

    placed = 0
    for start in range(0, n, 20):
        placed += sum(await asyncio.gather(*(one(i) for i in range(start, min(n, start + 20)))))
    return placed


class SimProcess:
    """``with SimProcess() as sim: sim.handle ...; sim.ask(("open",))``."""

    def __enter__(self) -> SimProcess:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("fork").Process(target=_child, args=(child,), daemon=True)
        self.proc.start()
        info = self.conn.recv()
        self.handle = SimHandle(SimpleNamespace(rest_url=info["rest"], ws_url=info["ws"]),
                                info["key"], info["secret"])  # fmt: skip
        return self

    def ask(self, cmd: tuple[Any, ...]) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def send(self, cmd: tuple[Any, ...]) -> None:
        self.conn.send(cmd)

    def recv(self) -> Any:
        return self.conn.recv()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
