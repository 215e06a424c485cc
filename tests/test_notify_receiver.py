"""The shared notification receiver (heliosd.testing.NotifyReceiver) the Apprise, outbox,
end-to-end and live-smoke tests rely on: real HTTP on loopback, its failure modes, waiting."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from heliosd.testing import NotifyReceiver


async def post(url: str, data: bytes, timeout: float = 5) -> int:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status


def http_url(receiver: NotifyReceiver, path: str = "/hook") -> str:
    return receiver.url(path).replace("json://", "http://", 1)


def test_url_names_the_port_path_and_credentials() -> None:
    receiver = NotifyReceiver(port=40123)
    assert receiver.url() == "json://127.0.0.1:40123/hook"
    assert receiver.url("/a/b", user="u") == "json://u@127.0.0.1:40123/a/b"
    assert receiver.url("/x", user="u", password="p") == "json://u:p@127.0.0.1:40123/x"
    with pytest.raises(ValueError, match="must start with '/'"):
        receiver.url("hook")
    with pytest.raises(RuntimeError, match="start"):
        NotifyReceiver().url()


async def test_records_path_headers_and_json(notify_receiver: NotifyReceiver) -> None:
    assert notify_receiver.port != 0
    auth = "Basic aGVsaW9zZDpwdw=="  # heliosd:pw
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            http_url(notify_receiver, "/hook/t"),
            json={"title": "hi"},
            headers={"Authorization": auth},
        ) as resp,
    ):
        assert resp.status == 200
    (got,) = await notify_receiver.wait_for(1)
    assert got.path == "/hook/t"
    assert got.json == {"title": "hi"}
    assert got.body == b'{"title": "hi"}'
    assert got.auth == auth
    assert got.headers["content-type"] == "application/json"  # case-insensitive
    assert notify_receiver.titles() == ["hi"]
    assert notify_receiver.hits == 1


async def test_non_json_is_refused_but_recorded(notify_receiver: NotifyReceiver) -> None:
    assert await post(http_url(notify_receiver), b"not json") == 400
    assert await post(http_url(notify_receiver), b"null") == 200  # a JSON value all the same
    assert notify_receiver.hits == 2
    assert [p.status for p in notify_receiver.received] == [400, 200]
    assert [p.body for p in notify_receiver.posts] == [b"null"]


async def test_fails_n_times_with_the_status_then_accepts(
    notify_receiver: NotifyReceiver,
) -> None:
    notify_receiver.fail(2, status=503)
    statuses = [await post(http_url(notify_receiver), b"{}") for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(notify_receiver.posts) == 1
    assert notify_receiver.hits == 3


async def test_fails_until_recovered(notify_receiver: NotifyReceiver) -> None:
    notify_receiver.fail()
    assert [await post(http_url(notify_receiver), b"{}") for _ in range(3)] == [500] * 3
    notify_receiver.recover()
    assert await post(http_url(notify_receiver), b"{}") == 200
    with pytest.raises(ValueError, match="at least 1"):
        notify_receiver.fail(0)


async def test_stall_holds_until_released(notify_receiver: NotifyReceiver) -> None:
    notify_receiver.stall(1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await post(http_url(notify_receiver), b"{}", timeout=0.3)
    assert time.monotonic() - started < 2
    assert notify_receiver.hits == 1
    assert notify_receiver.posts == []
    assert await post(http_url(notify_receiver), b"{}") == 200  # only one was to stall

    notify_receiver.stall()
    held = asyncio.ensure_future(post(http_url(notify_receiver), b"{}"))
    await asyncio.sleep(0.2)
    assert not held.done()
    notify_receiver.recover()
    assert await asyncio.wait_for(held, 5) == 503  # released, never counted as delivered
    assert len(notify_receiver.posts) == 1


async def test_stop_releases_stalls_and_restart_keeps_the_port() -> None:
    receiver = NotifyReceiver()
    await receiver.start()
    port = receiver.port
    receiver.stall()
    held = asyncio.ensure_future(post(http_url(receiver), b"{}"))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await receiver.stop()
    assert time.monotonic() - started < 2
    assert await held == 503  # answered, not left to time out, and never delivered
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http_url(receiver), b"{}")  # down: connection refused
    async with receiver:
        assert receiver.port == port
        still_held = asyncio.ensure_future(post(http_url(receiver), b"{}"))
        await asyncio.sleep(0.2)
        assert not still_held.done()  # the stall mode survives a restart
        receiver.recover()
        assert await asyncio.wait_for(still_held, 5) == 503
        assert await post(http_url(receiver), b'{"title": "back"}') == 200
        assert receiver.titles() == ["back"]


async def test_wait_for_a_predicate_and_its_timeout(notify_receiver: NotifyReceiver) -> None:
    async def later() -> None:
        for n in range(3):
            await asyncio.sleep(0.05)
            await post(http_url(notify_receiver), f'{{"title": "t{n}"}}'.encode())

    task = asyncio.ensure_future(later())
    posts = await notify_receiver.wait_for(lambda ps: any(p.json["title"] == "t2" for p in ps))
    await task
    assert [p.json["title"] for p in posts] == ["t0", "t1", "t2"]
    with pytest.raises(AssertionError, match=r"3 accepted of 3 POSTs: .*t2"):
        await notify_receiver.wait_for(4, timeout=0.2)
