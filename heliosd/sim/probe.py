"""A deliberately low-level signed client for testing the simulator itself.

Not heliosd's VALR client: it exposes the raw protocol (exact bodies, headers, statuses,
timestamps) so tests can send the malformed requests a real client never would. It signs
with ``heliosd.builtin.valr.signing`` exactly like the real client must.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection
from yarl import URL

from heliosd.builtin.valr.signing import auth_headers
from heliosd.sim.config import SimConfig
from heliosd.sim.simulator import Simulator

PROBE_KEY = "a1" * 32
PROBE_SECRET = "b2" * 32


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def compact(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


class Probe:
    """Signed REST and WebSocket access to one simulator as one API key."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        rest_url: str,
        ws_url: str,
        api_key: str,
        secret: str,
        subaccount_id: str = "",
    ) -> None:
        self.session = session
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.api_key = api_key
        self.secret = secret
        self.subaccount_id = subaccount_id

    def headers(
        self, verb: str, path: str, body: str = "", ts: int | None = None
    ) -> dict[str, str]:
        stamp = time.time_ns() // 1_000_000 if ts is None else ts
        return auth_headers(self.api_key, self.secret, stamp, verb, path, body, self.subaccount_id)

    async def raw(
        self,
        verb: str,
        path: str,
        body: str = "",
        *,
        headers: dict[str, str] | None = None,
        content_type: str | None = "application/json",
    ) -> Reply:
        """Send exactly ``body`` to ``path`` (which includes any query) with ``headers``."""
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        url = self.rest_url + path
        async with self.session.request(
            verb, URL(url, encoded=True), data=body.encode(), headers=hdrs
        ) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.text())

    async def call(
        self, verb: str, path: str, payload: Any = None, *, ts: int | None = None
    ) -> Reply:
        """A correctly signed request; ``payload`` is serialised once, compactly."""
        body = "" if payload is None else compact(payload)
        return await self.raw(verb, path, body, headers=self.headers(verb, path, body, ts))

    async def get(self, path: str) -> Reply:
        return await self.call("GET", path)

    async def public(self, path: str) -> Reply:
        return await self.raw("GET", path, content_type=None)

    async def connect(self, stream: str = "account", *, signed: bool = True) -> ClientConnection:
        """Open ``/ws/account`` or ``/ws/trade`` (signed over GET + the path)."""
        path = f"/ws/{stream}"
        hdrs = self.headers("GET", path) if signed else {}
        # No receive backpressure: a test that stops reading must still be able to close.
        return await websockets.connect(self.ws_url + path, additional_headers=hdrs, max_queue=None)


async def recv_json(ws: ClientConnection, timeout: float = 2.0) -> dict[str, Any]:
    """The next message, parsed (fails the test on timeout or non-JSON)."""
    message = await asyncio.wait_for(ws.recv(), timeout)
    parsed = json.loads(message)
    assert isinstance(parsed, dict), parsed
    return parsed


async def recv_until(
    ws: ClientConnection,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 3.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read until ``predicate`` holds; return that message and everything read before it."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        message = await recv_json(ws, max(left, 0.001))
        if predicate(message):
            return message, seen
        seen.append(message)


async def drain(ws: ClientConnection, quiet: float = 0.2) -> list[dict[str, Any]]:
    """Everything that arrives until the socket has been quiet for ``quiet`` seconds."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            out.append(await recv_json(ws, quiet))
        except TimeoutError:
            return out


@asynccontextmanager
async def probed_simulator(
    config: SimConfig | None = None,
    *,
    permissions: tuple[str, ...] = ("View access", "Trade"),
) -> AsyncIterator[tuple[Simulator, Probe]]:
    """A started simulator with one key on account "0", and a probe signed with it."""
    sim = Simulator(config or SimConfig(price_interval_s=None))
    await sim.start()
    sim.add_api_key(PROBE_KEY, PROBE_SECRET, permissions)
    try:
        async with aiohttp.ClientSession() as session:
            yield sim, Probe(session, sim.rest_url, sim.ws_url, PROBE_KEY, PROBE_SECRET)
    finally:
        await sim.stop()
