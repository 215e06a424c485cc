"""The Apprise notifier against a real HTTP receiver on loopback (Apprise's json:// schema)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pluggy
import pytest
from aiohttp import web

import heliosd.builtin.apprise as apprise_plugin
from heliosd import hookspecs
from heliosd.builtin.apprise import AppriseNotifier
from heliosd.config import NotifySettings, Secret, Settings
from heliosd.errors import ConfigError, TransientError
from heliosd.protocols import Event, Notifier
from heliosd.types import utcnow

PASSWORD = "pw-Zq8r1xT"
TOKEN = "tok-4f9c2e7d1ab0"


class Receiver:
    """A webhook endpoint: records JSON POSTs; ``mode`` is "ok", "fail" (HTTP 500) or "hang"."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.mode = "ok"
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "fail":
            return web.Response(status=500)
        self.posts.append(
            {
                "path": request.path,
                "json": await request.json(),
                "auth": request.headers.get("Authorization"),
            }
        )
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # access_log off: it would print the path (with its token); it is the remote side.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = f"/hook/{TOKEN}") -> str:
        return f"json://heliosd:{PASSWORD}@127.0.0.1:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture(autouse=True)
def logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Fails the test on an ERROR record it did not announce (append a substring to expect)."""
    caplog.set_level(logging.DEBUG)
    expected: list[str] = []
    yield expected
    bad = [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and not any(e in r.getMessage() for e in expected)
    ]
    assert not bad, f"unexpected errors logged: {bad}"


def event(title: str = "LIVE fill: BUY 0.01 BTCZAR", *, urgent: bool = False) -> Event:
    return Event(kind="fill", title=title, body="Fee 0.00001 BTC.", at=utcnow(), urgent=urgent)


async def test_info_event_arrives_as_apprise_json(receiver: Receiver) -> None:
    notifier = AppriseNotifier([Secret(receiver.url())], timeout_s=5)
    await notifier.send(event())
    (post,) = receiver.posts
    assert post["path"] == f"/hook/{TOKEN}"
    assert post["json"]["title"] == "LIVE fill: BUY 0.01 BTCZAR"
    assert post["json"]["message"] == "Fee 0.00001 BTC."
    assert post["json"]["type"] == "info"
    assert post["auth"].startswith("Basic ")  # the user:password of the URL was used


async def test_urgent_event_is_marked(receiver: Receiver) -> None:
    notifier = AppriseNotifier([Secret(receiver.url())], timeout_s=5)
    await notifier.send(event("EMERGENCY STOP: trading halted", urgent=True))
    (post,) = receiver.posts
    assert post["json"]["title"] == "URGENT: EMERGENCY STOP: trading halted"
    assert post["json"]["type"] == "failure"


async def test_every_url_gets_the_event(receiver: Receiver) -> None:
    urls = [Secret(receiver.url("/a")), Secret(receiver.url("/b"))]
    await AppriseNotifier(urls, timeout_s=5).send(event())
    assert sorted(p["path"] for p in receiver.posts) == ["/a", "/b"]


async def test_refused_delivery_raises_without_secrets(receiver: Receiver) -> None:
    receiver.mode = "fail"
    notifier = AppriseNotifier([Secret(receiver.url())], timeout_s=5)
    with pytest.raises(TransientError) as info:
        await notifier.send(event())
    assert "0/1 URLs accepted" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert TOKEN not in str(info.value)


async def test_hanging_receiver_times_out(receiver: Receiver, logged_errors: list[str]) -> None:
    logged_errors.append("did not finish within")  # Apprise's own report of the timeout
    receiver.mode = "hang"
    notifier = AppriseNotifier([Secret(receiver.url())], timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError):
        await notifier.send(event())
    assert time.monotonic() - started < 3


async def test_unreachable_receiver_raises() -> None:
    r = Receiver()
    await r.start()
    await r.stop()  # the port is now closed
    with pytest.raises(TransientError):
        await AppriseNotifier([Secret(r.url())], timeout_s=2).send(event())


def test_bad_url_is_a_config_error_naming_its_index(logged_errors: list[str]) -> None:
    logged_errors.append("Unparseable URL")  # Apprise's own complaint (it masks the URL)
    with pytest.raises(ConfigError) as info:
        AppriseNotifier([Secret("json://127.0.0.1:9/x"), Secret(f"nosuchscheme://{TOKEN}")])
    assert info.value.key == "notify.urls[1]"
    assert TOKEN not in str(info.value)


def test_hook_registers_only_when_urls_are_configured() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(apprise_plugin)
    got: list[Notifier] = []
    pm.hook.heliosd_register_notifiers(register=got.append, config=Settings())
    assert got == []
    urls = (Secret(f"json://127.0.0.1:9/{TOKEN}"),)
    config = Settings(notify=NotifySettings(urls=urls))
    pm.hook.heliosd_register_notifiers(register=got.append, config=config)
    assert [n.name for n in got] == ["apprise"]
    assert isinstance(got[0], AppriseNotifier)


async def test_secrets_never_reach_the_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, logged_errors: list[str]
) -> None:
    logged_errors.append("did not finish within")
    notifier = AppriseNotifier([Secret(receiver.url())], timeout_s=0.5)
    await notifier.send(event())  # Apprise logs the URL and urllib3 the request line at debug
    for mode in ("fail", "hang"):
        receiver.mode = mode
        with pytest.raises(TransientError):
            await notifier.send(event())
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "<redacted>" in text  # the loggers did try to print the URL
    assert PASSWORD not in text
    assert TOKEN not in text
    assert "127.0.0.1" in text  # the host stays, so warnings remain useful
