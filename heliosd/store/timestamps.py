"""How times are stored: ISO-8601 text, always aware UTC (``+00:00``)."""

from __future__ import annotations

from datetime import datetime


def iso(dt: datetime) -> str:
    return dt.isoformat()


def parse_dt(text: str) -> datetime:
    return datetime.fromisoformat(text)
