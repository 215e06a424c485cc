"""Logging: line shapes, journald detection on a real file descriptor, secret redaction."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.core.config import NotifySettings, Secret, Settings, ValrSettings
from heliosd.runtime.logs import (
    RedactingFilter,
    forget_secrets,
    priority,
    register_secret,
    register_settings_secrets,
    setup_logging,
)

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) (?P<name>\S+) (?P<rest>.*)$"
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    forget_secrets()


class RealStderr:
    """Points sys.stderr at a real file (with a device and inode, like journald's stream).

    Called from inside the test: pytest's capture re-installs its own sys.stderr between the
    setup and call phases, which would undo a fixture's patch.
    """

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.monkeypatch = monkeypatch
        self.fh: io.TextIOWrapper | None = None

    def __call__(self) -> Path:
        self.fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the fixture
        self.monkeypatch.setattr(sys, "stderr", self.fh)
        return self.path


@pytest.fixture
def real_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RealStderr]:
    real = RealStderr(tmp_path / "stderr.log", monkeypatch)
    yield real
    monkeypatch.undo()
    if real.fh is not None:
        real.fh.close()


def lines(path: Path) -> list[str]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text(encoding="utf-8").splitlines()


def test_plain_lines_have_utc_time_level_logger_message_and_fields(real_stderr: RealStderr) -> None:
    stderr_file = real_stderr()
    setup_logging("INFO", journald=False)
    log = logging.getLogger("heliosd.trading.router")

    log.info("order %s placed", "abc-1", extra={"pair": "BTCZAR", "qty": Decimal("0.01")})
    log.debug("not shown at info")
    log.warning("two words", extra={"reason": "open positions exist"})

    first, second = lines(stderr_file)
    m = LINE.match(first)
    assert m is not None
    assert m["level"] == "INFO"
    assert m["name"] == "heliosd.trading.router"
    assert m["rest"] == "order abc-1 placed pair=BTCZAR qty=0.01"
    assert second.endswith('WARNING heliosd.trading.router two words reason="open positions exist"')


@pytest.mark.logs_exception
def test_a_record_is_always_one_line(real_stderr: RealStderr) -> None:
    stderr_file = real_stderr()
    setup_logging("debug", journald=False)
    log = logging.getLogger("heliosd.test")
    try:
        raise RuntimeError("first line\nsecond line")
    except RuntimeError:
        log.exception("failed\nbadly")

    [line] = lines(stderr_file)
    assert "failed\\nbadly" in line
    assert 'exc="Traceback (most recent call last):\\n' in line
    assert "RuntimeError: first line\\nsecond line" in line


def test_journald_lines_carry_priority_and_no_time(real_stderr: RealStderr) -> None:
    stderr_file = real_stderr()
    setup_logging("debug", journald=True, journal_socket=None)
    log = logging.getLogger("heliosd.risk.monitors")
    log.debug("d")
    log.info("i")
    log.warning("w", extra={"pct": "5.1"})
    log.error("e")
    log.critical("c")

    assert lines(stderr_file) == [
        "<7>heliosd.risk.monitors d",
        "<6>heliosd.risk.monitors i",
        "<4>heliosd.risk.monitors w pct=5.1",
        "<3>heliosd.risk.monitors e",
        "<2>heliosd.risk.monitors c",
    ]
    assert priority(logging.INFO + 5) == 6


def test_journald_detected_from_journal_stream(
    real_stderr: RealStderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr_file = real_stderr()
    st = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    setup_logging("info", journal_socket=None)  # the stream shape (native: test_journal.py)
    logging.getLogger("heliosd").info("hello")
    assert lines(stderr_file) == ["<6>heliosd hello"]


def test_journal_stream_of_another_file_is_not_journald(
    real_stderr: RealStderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr_file = real_stderr()
    st = os.fstat(sys.stderr.fileno())
    # stdout went to the journal but stderr was redirected: not journald.
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
    setup_logging("info")
    logging.getLogger("heliosd").info("hello")
    [line] = lines(stderr_file)
    assert LINE.match(line)


def test_setup_twice_keeps_one_handler(real_stderr: RealStderr) -> None:
    stderr_file = real_stderr()
    setup_logging("info", journald=False)
    setup_logging("warning", journald=True, journal_socket=None)
    log = logging.getLogger("heliosd")
    log.info("hidden")
    log.warning("shown")
    assert lines(stderr_file) == ["<4>heliosd shown"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("verbose")


@pytest.mark.logs_exception
def test_secrets_are_redacted_everywhere(real_stderr: RealStderr) -> None:
    stderr_file = real_stderr()
    secret = "sk-0123456789abcdef"
    register_secret(secret + "\n")  # as read from a credential file
    setup_logging("info", journald=False)
    log = logging.getLogger("heliosd.builtin.valr")

    log.info("key is %s", secret)
    log.info(f"inline {secret}")
    log.warning("signed", extra={"header": f"X-VALR-API-KEY: {secret}"})
    try:
        raise PermissionError(f"refused {secret}")
    except PermissionError:
        log.exception("request failed")
    log.info("unrelated %d", 5)

    out = lines(stderr_file)
    assert secret not in "\n".join(out)
    assert out[0].endswith("key is ***")
    assert out[1].endswith("inline ***")
    assert out[2].endswith('header="X-VALR-API-KEY: ***"')
    assert "PermissionError: refused ***" in out[3]
    assert out[4].endswith("unrelated 5")


def test_longer_secret_is_replaced_whole() -> None:
    register_secret("abcd1234")
    register_secret("abcd1234efgh5678")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("heliosd.test.longest")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("%s and %s", "abcd1234efgh5678", "abcd1234")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert stream.getvalue() == "*** and ***\n"


def test_settings_secrets_are_registered(real_stderr: RealStderr) -> None:
    stderr_file = real_stderr()
    settings = Settings(
        valr=ValrSettings(api_key=Secret("valr-key-AAAA"), api_secret=Secret("valr-secret-BBBB")),
        notify=NotifySettings(urls=(Secret("tgram://bot-token-CCCC/12345"),)),
        plugins={"extra": {"token": Secret("plugin-token-DDDD")}},
    )
    assert register_settings_secrets(settings) == 4
    setup_logging("info", journald=False)
    logging.getLogger("heliosd").info(
        "%s %s %s %s",
        "valr-key-AAAA",
        "valr-secret-BBBB",
        "tgram://bot-token-CCCC/12345",
        "plugin-token-DDDD",
    )
    [line] = lines(stderr_file)
    assert line.endswith(" heliosd *** *** *** ***")
