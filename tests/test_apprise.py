"""The Apprise notifier against a real HTTP receiver on loopback (Apprise's json:// schema)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pluggy
import pytest

import heliosd.builtin.apprise as apprise_plugin
from heliosd.builtin.apprise import AppriseNotifier
from heliosd.core.config import NotifySettings, Secret, Settings
from heliosd.core.errors import ConfigError, TransientError
from heliosd.core.protocols import Event, Notifier
from heliosd.core.types import utcnow
from heliosd.plugins import hookspecs
from heliosd.testing import NotifyReceiver

PASSWORD = "pw-Zq8r1xT"
TOKEN = "tok-4f9c2e7d1ab0"


def url(receiver: NotifyReceiver, path: str = f"/hook/{TOKEN}") -> str:
    return receiver.url(path, user="heliosd", password=PASSWORD)


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


async def test_info_event_arrives_as_apprise_json(notify_receiver: NotifyReceiver) -> None:
    notifier = AppriseNotifier([Secret(url(notify_receiver))], timeout_s=5)
    await notifier.send(event())
    (post,) = notify_receiver.posts
    assert post.path == f"/hook/{TOKEN}"
    assert post.json["title"] == "LIVE fill: BUY 0.01 BTCZAR"
    assert post.json["message"] == "Fee 0.00001 BTC."
    assert post.json["type"] == "info"
    assert post.auth is not None
    assert post.auth.startswith("Basic ")  # the user:password of the URL was used


async def test_urgent_event_is_marked(notify_receiver: NotifyReceiver) -> None:
    notifier = AppriseNotifier([Secret(url(notify_receiver))], timeout_s=5)
    await notifier.send(event("EMERGENCY STOP: trading halted", urgent=True))
    (post,) = notify_receiver.posts
    assert post.json["title"] == "URGENT: EMERGENCY STOP: trading halted"
    assert post.json["type"] == "failure"


async def test_every_url_gets_the_event(notify_receiver: NotifyReceiver) -> None:
    urls = [Secret(url(notify_receiver, "/a")), Secret(url(notify_receiver, "/b"))]
    await AppriseNotifier(urls, timeout_s=5).send(event())
    assert sorted(p.path for p in notify_receiver.posts) == ["/a", "/b"]


async def test_refused_delivery_raises_without_secrets(notify_receiver: NotifyReceiver) -> None:
    notify_receiver.fail()
    notifier = AppriseNotifier([Secret(url(notify_receiver))], timeout_s=5)
    with pytest.raises(TransientError) as info:
        await notifier.send(event())
    assert "0/1 URLs accepted" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert TOKEN not in str(info.value)


async def test_hanging_receiver_times_out(
    notify_receiver: NotifyReceiver, logged_errors: list[str]
) -> None:
    logged_errors.append("did not finish within")  # Apprise's own report of the timeout
    notify_receiver.stall()
    notifier = AppriseNotifier([Secret(url(notify_receiver))], timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError):
        await notifier.send(event())
    assert time.monotonic() - started < 3


async def test_unreachable_receiver_raises() -> None:
    r = NotifyReceiver()
    await r.start()
    await r.stop()  # the port is now closed
    with pytest.raises(TransientError):
        await AppriseNotifier([Secret(url(r))], timeout_s=2).send(event())


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
    notify_receiver: NotifyReceiver, caplog: pytest.LogCaptureFixture, logged_errors: list[str]
) -> None:
    logged_errors.append("did not finish within")
    notifier = AppriseNotifier([Secret(url(notify_receiver))], timeout_s=0.5)
    await notifier.send(event())  # Apprise logs the URL and urllib3 the request line at debug
    for refuse in (notify_receiver.fail, notify_receiver.stall):  # answer 500, then hang
        refuse()
        with pytest.raises(TransientError):
            await notifier.send(event())
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "<redacted>" in text  # the loggers did try to print the URL
    assert PASSWORD not in text
    assert TOKEN not in text
    assert "127.0.0.1" in text  # the host stays, so warnings remain useful
