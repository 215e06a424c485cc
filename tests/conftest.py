"""heliosd's own suite: its fixtures (opt-in, from heliosd.testing.plugin: loaded with
``-p`` in pyproject's addopts) under the short names the tests use, and the autouse
fixtures that only this suite wants."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import NotifyReceiver, RunningDaemon, SimHandle


@pytest.fixture
def sim(heliosd_sim: SimHandle) -> SimHandle:
    return heliosd_sim


@pytest.fixture
def short_dir(heliosd_short_dir: Path) -> Path:
    return heliosd_short_dir


@pytest.fixture
def plugin_dir(heliosd_plugin_dir: Path) -> Path:
    return heliosd_plugin_dir


@pytest.fixture
def daemon(heliosd_daemon: RunningDaemon) -> RunningDaemon:
    return heliosd_daemon


@pytest.fixture
def notify_receiver(heliosd_notify_receiver: NotifyReceiver) -> NotifyReceiver:
    return heliosd_notify_receiver


@pytest.fixture(autouse=True)
def _forget_dropins() -> Iterator[Any]:
    """Drop-in plugin modules live in ``sys.modules`` as ``heliosd_dropin_<stem>``; a test
    that loads one must not hand it to the next test that loads a file of the same name."""
    yield
    from heliosd.plugins.manager import DROPIN_PREFIX

    for name in [m for m in sys.modules if m.startswith(DROPIN_PREFIX)]:
        del sys.modules[name]


class _LoggedExceptions(logging.Handler):
    """Collects every record logged with an exception (``log.exception``, ``exc_info=``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or record.exc_info[0] is None:
            return
        if record.name == "aiohttp.server" and issubclass(record.exc_info[0], ConnectionError):
            # The in-process simulator's server, answering a peer that went away mid-request
            # (a kill -9, an injected fault, a timed-out client): aiohttp's report, not a bug.
            return
        self.records.append(record)


def _describe(record: logging.LogRecord) -> str:
    exc = record.exc_info[1] if record.exc_info else None
    return f"{record.name}: {record.getMessage()} ({type(exc).__name__}: {exc})"


@pytest.fixture(autouse=True)
def _no_logged_exception(request: pytest.FixtureRequest) -> Iterator[None]:
    """A logged exception in this process fails the test (17.10): code that swallows an
    exception and logs it has hit something nobody planned for, and a test that passes over
    one proves less than it claims. A test that provokes one on purpose says so with
    ``@pytest.mark.logs_exception("text", ...)``: each logged exception must then contain
    one of the texts in its message or exception (no texts: any is expected). Daemons in
    their own processes log to their own files; only in-process code is seen here."""
    handler = _LoggedExceptions()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    marker = request.node.get_closest_marker("logs_exception")
    records = handler.records
    if marker is not None:
        texts = [str(t) for t in marker.args]
        if not texts:
            return
        records = [r for r in records if not any(t in _describe(r) for t in texts)]
    if records:
        pytest.fail(
            "logged exception(s) the test does not expect (mark it"
            " @pytest.mark.logs_exception if it provokes them):\n  "
            + "\n  ".join(_describe(r) for r in records),
            pytrace=False,
        )
