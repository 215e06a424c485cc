"""heliosd's own suite: its fixtures (opt-in, from heliosd.testing.plugin: loaded with
``-p`` in pyproject's addopts) under the short names the tests use, and the autouse
fixtures that only this suite wants."""

from __future__ import annotations

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
