"""The journal's own rules, through the real logging setup (setup_logging on a real file):
one line per event however hostile a value, no secret, fixed MESSAGE_IDs, and Apprise's
INFO chatter at DEBUG."""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.control.backend import Actor
from heliosd.core.config import Secret
from heliosd.notify import journal
from heliosd.runtime.logs import forget_secrets, register_secret, setup_logging


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


def logged(path: Path, monkeypatch: pytest.MonkeyPatch, level: str, emit: object) -> list[str]:
    """Run ``emit()`` with heliosd's logging on a real file as stderr; the lines written."""
    with path.open("w", encoding="utf-8") as fh:
        monkeypatch.setattr(sys, "stderr", fh)
        setup_logging(level, journald=False)
        emit()  # type: ignore[operator]
        fh.flush()
    return path.read_text(encoding="utf-8").splitlines()


HOSTILE = [
    "a\nevent=resume by=uid:0(root)",
    "a\r\nb",
    "line\u2028sep",
    "next\x85line",
    "para\u2029graph",
    'quote " and = and \\',
    "tab\tand\x1bescape",
    "",
]


@pytest.mark.parametrize("reason", HOSTILE)
def test_a_hostile_reason_stays_one_line_and_reads_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    def emit() -> None:
        journal.event("resume", by=Actor(1000, "alice"), reason=reason, cleared="emergency")

    lines = logged(tmp_path / "log", monkeypatch, "info", emit)
    # splitlines() splits on every Unicode line end, as many log readers do.
    (line,) = lines
    m = re.search(
        r' heliosd\.journal event=resume by=uid:1000\(alice\) reason=(".*") cleared=', line
    )
    assert m is not None, line
    assert json.loads(m[1]) == reason


def test_fields_are_also_on_the_record_with_the_kinds_message_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="heliosd.journal"):
        journal.event("order_filled", quantity=Decimal("0.00100"), price=Decimal("1E+6"),
                      fee_currency="BTC", mode=None)  # fmt: skip
    (record,) = caplog.records
    assert record.event == "order_filled"  # type: ignore[attr-defined]
    assert record.message_id == journal.KINDS["order_filled"].message_id  # type: ignore[attr-defined]
    assert record.event_fields == {  # type: ignore[attr-defined]
        "quantity": "0.00100", "price": "1000000", "fee_currency": "BTC",
    }  # fmt: skip
    assert record.getMessage() == (
        "event=order_filled quantity=0.00100 price=1000000 fee_currency=BTC"
    )


def test_the_line_formatter_does_not_repeat_the_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (line,) = logged(tmp_path / "log", monkeypatch, "info",
                     lambda: journal.event("halt", breaker="halt", reason="x"))  # fmt: skip
    assert line.endswith("WARNING heliosd.journal event=halt breaker=halt reason=x")


def test_message_ids_are_fixed_distinct_128_bit_hex() -> None:
    ids = [k.message_id for k in journal.KINDS.values()]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    # Fixed forever: scripts filter on them (docs/operations.md lists them).
    assert journal.KINDS["mode_change"].message_id == "a1a26c9b7da54ddba8e1ca1cf82a9e57"
    assert journal.KINDS["emergency_stop"].message_id == "e734bbf8f563444684309770a5fe04db"


def test_no_secret_reaches_a_journal_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("api_key", "api_secret", "confirm_token", "password", "url", "token"):
        with pytest.raises(ValueError, match="secret"):
            journal.render("halt", {name: "x"})
    with pytest.raises(ValueError, match="unknown journal event"):
        journal.event("made_up", reason="x")
    register_secret("s3cr3t-value-123")

    def emit() -> None:
        journal.event("halt", reason="leaked s3cr3t-value-123 here", detail=Secret("other"))

    (line,) = logged(tmp_path / "log", monkeypatch, "info", emit)
    assert "s3cr3t-value-123" not in line and "other" not in line
    assert 'reason="leaked *** here" detail=***' in line


def test_apprise_info_chatter_is_debug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def emit() -> None:
        logging.getLogger("apprise").info("Notifying %d service(s).", 1)
        logging.getLogger("apprise.plugins").info("Sent notification")
        logging.getLogger("apprise").warning("Failed to send to 1 service(s)")

    info = logged(tmp_path / "info", monkeypatch, "info", emit)
    assert [line.split(" ", 2)[1:] for line in info] == [
        ["WARNING", "apprise Failed to send to 1 service(s)"]
    ]
    debug = logged(tmp_path / "debug", monkeypatch, "debug", emit)
    assert [line.split(" ", 3)[1:3] for line in debug] == [
        ["DEBUG", "apprise"], ["DEBUG", "apprise.plugins"], ["WARNING", "apprise"],
    ]  # fmt: skip


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol, read back as journald reads it."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        head, sep, tail = rest.partition(b"\n")
        assert sep, rest
        if b"=" in head:
            key, _, value = head.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = tail
        else:  # KEY\n<le64 length><data>\n
            (size,) = struct.unpack("<Q", tail[:8])
            fields[head.decode()] = tail[8 : 8 + size].decode()
            assert tail[8 + size : 9 + size] == b"\n"
            rest = tail[9 + size :]
    return fields


def test_under_journald_the_fields_travel_as_journal_fields(
    short_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = short_dir / "journal.sock"
    journal_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal_socket.bind(str(path))
    journal_socket.settimeout(5)
    register_secret("s3cr3t-value-123")
    with (tmp_path / "stderr").open("w", encoding="utf-8") as fh:
        monkeypatch.setattr(sys, "stderr", fh)
        setup_logging("info", journald=True, journal_socket=path)
        journal.event("emergency_stop", by=Actor(1000, "alice"),
                      reason="drill\nMESSAGE_ID=forged s3cr3t-value-123", epoch=7)  # fmt: skip
        logging.getLogger("heliosd.other").info("plain")
        got = parse_native(journal_socket.recv(65536))
        plain = parse_native(journal_socket.recv(65536))
        # journald away: the line goes to the stream instead of being lost.
        journal_socket.close()
        path.unlink()
        journal.event("resume", by="heliosd", reason="after")
        fh.flush()
    assert got == {
        "MESSAGE": "heliosd.journal event=emergency_stop by=uid:1000(alice)"
        ' reason="drill\\nMESSAGE_ID=forged ***" epoch=7',
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "heliosd",
        "HELIOSD_LOGGER": "heliosd.journal",
        "MESSAGE_ID": journal.KINDS["emergency_stop"].message_id,
        "HELIOSD_EVENT": "emergency_stop",
        "HELIOSD_BY": "uid:1000(alice)",
        "HELIOSD_REASON": "drill\nMESSAGE_ID=forged ***",  # whole, and forging nothing
        "HELIOSD_EPOCH": "7",
    }
    assert plain == {"MESSAGE": "heliosd.other plain", "PRIORITY": "6",
                     "SYSLOG_IDENTIFIER": "heliosd", "HELIOSD_LOGGER": "heliosd.other"}  # fmt: skip
    assert (tmp_path / "stderr").read_text().splitlines() == [
        "<6>heliosd.journal event=resume by=heliosd reason=after"
    ]


def test_docs_list_every_kind_with_its_level_and_message_id() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([A-Z]+ \| `[0-9a-f]{32}`) \|", doc, re.M))
    assert rows == {
        k.name: f"{logging.getLevelName(k.level)} | `{k.message_id}`"
        for k in journal.KINDS.values()
    }
