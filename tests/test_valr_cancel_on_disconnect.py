"""VALR's dead-man's switch, through the real client and the simulator over WebSocket: armed
after every connect when configured, never while disconnected, off by default; the
simulator cancels the account's open orders when an armed socket drops."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.builtin.valr.streams import AccountStream
from heliosd.core.types import OrderType, PlaceRequest, Side
from heliosd.testing import SimHandle, eventually, start_daemon, wait_for, write_config
from heliosd.testing.contract import (
    SIM_KEY,
    SIM_SECRET,
    RecordingEvents,
    fast_valr_tuning,
    funded_sim,
    valr_on_sim,
)


def resting(cid: str) -> PlaceRequest:
    return PlaceRequest(cid, "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal(900000))


class ArmedWhenDown(RecordingEvents):
    """Records the client's armed flag at the moment each account disconnection is reported."""

    def __init__(self) -> None:
        super().__init__()
        self.client: Any = None
        self.armed_when_down: list[bool] = []

    async def on_connection(self, stream: str, up: bool, detail: str) -> None:
        if stream == "account" and not up and self.client is not None:
            self.armed_when_down.append(self.client.cancel_on_disconnect_armed)
        await super().on_connection(stream, up, detail)


@pytest.mark.parametrize("mode", ["close", "abort"])
async def test_armed_and_a_dropped_socket_cancels_resting_orders(mode: str) -> None:
    events = ArmedWhenDown()
    async with (
        funded_sim() as sim,
        valr_on_sim(
            sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning(),
            cancel_on_disconnect=True,
        ) as client,
    ):  # fmt: skip
        events.client = client
        await wait_for(lambda: client.cancel_on_disconnect_armed)
        assert sim.cancel_on_disconnect_sockets("0") == 1
        await client.place(resting("cod-1"))
        await client.place(resting("cod-2"))
        assert len(sim.open_orders("0")) == 2
        assert sim.drop_account_sockets("0", mode) == 1
        await wait_for(lambda: sim.open_orders("0") == [])
        assert sim.disconnect_cancels() == [("0", 2)]
        assert events.armed_when_down == [False]  # never reported armed while down
        # Re-armed on the new connection, so the next drop is covered too.
        await wait_for(lambda: client._account.connections == 2)
        await wait_for(lambda: client.cancel_on_disconnect_armed)
        assert sim.cancel_on_disconnect_sockets("0") == 1
        await client.place(resting("cod-3"))
        sim.drop_account_sockets("0", mode)
        await wait_for(lambda: sim.open_orders("0") == [])


async def test_off_by_default() -> None:
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as client,
    ):
        await client.place(resting("plain-1"))
        assert not client.cancel_on_disconnect_armed
        assert sim.cancel_on_disconnect_sockets("0") == 0
        sim.drop_account_sockets("0")
        await wait_for(lambda: client._account.connections == 2 and client._account.ready.is_set())
        assert [o["customerOrderId"] for o in sim.open_orders("0")] == ["plain-1"]
        assert not client.cancel_on_disconnect_armed
        assert sim.disconnect_cancels() == []


@pytest.mark.parametrize(
    ("message", "armed"),
    [
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": "true"}}, True),
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": True}}, True),
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE", "cancelOnDisconnect": "true"}, True),
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": "false"}}, False),
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": 1}}, False),
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": "yes"}, False),
        ({"type": "CANCEL_ON_DISCONNECT_UPDATE"}, False),
    ],
)
async def test_only_a_true_answer_arms(
    message: dict[str, Any], armed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def reconcile(_: Any) -> None:
        return None

    stream = AccountStream(
        "ws://127.0.0.1:1/ws/account", RecordingEvents(), fast_valr_tuning(),
        sign=lambda verb, path: {}, reconcile=reconcile, cancel_on_disconnect=True,
    )  # fmt: skip
    stream.cancel_on_disconnect_armed = not armed
    await stream._handle(json.dumps(message))
    assert stream.cancel_on_disconnect_armed is armed
    if not armed:
        assert "NOT armed" in caplog.text


async def test_health_reports_the_switch(sim: SimHandle, short_dir: Path) -> None:
    config = write_config(short_dir, sim)
    text = config.read_text().replace("[valr]\n", "[valr]\ncancel_on_disconnect = true\n")
    config.write_text(text)
    running = await start_daemon(config)
    try:

        async def armed() -> bool:
            status, body = await running.request("GET", "/api/health")
            assert status == 200
            return body["cancel_on_disconnect"] is True

        await wait_for(lambda: sim.sim.cancel_on_disconnect_sockets(sim.account) == 1)
        assert await eventually(armed)
        sim.sim.drop_account_sockets(sim.account)
        await wait_for(lambda: sim.sim.disconnect_cancels() == [(sim.account, 0)])
        await wait_for(lambda: sim.sim.cancel_on_disconnect_sockets(sim.account) == 1)
        assert await eventually(armed)  # re-armed after the reconnect
    finally:
        await running.stop()


async def test_health_says_false_by_default(sim: SimHandle, short_dir: Path) -> None:
    running = await start_daemon(write_config(short_dir, sim))
    try:
        status, body = await running.request("GET", "/api/health")
        assert status == 200
        assert body["cancel_on_disconnect"] is False
        assert sim.sim.cancel_on_disconnect_sockets(sim.account) == 0
    finally:
        await running.stop()
