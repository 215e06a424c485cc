"""Shared helpers of the benchmarks: statistics, machine facts, the one JSON line per run.

Every benchmark prints exactly one JSON object on one stdout line (``emit``), with the
machine it ran on, so a line pasted into RESULTS.md or a CI log explains itself. Progress
and notes go to stderr.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest): no interpolation,
    so a reported p99 is a latency that really happened."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """median / p99 / max of one set of samples (the unit is the caller's)."""
    return {
        "median": round(statistics.median(values), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
    }


def median_of(runs: Iterable[float], digits: int = 3) -> float:
    return round(statistics.median(list(runs)), digits)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures depend on: cores, CPU, Python."""
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def emit(bench: str, figures: dict[str, Any], targets: dict[str, bool] | None = None) -> None:
    """Print the run's one JSON line: name, figures, pass/miss per target, machine."""
    line: dict[str, Any] = {"bench": bench, **figures}
    if targets is not None:
        line["targets"] = targets
        line["all_targets_met"] = all(targets.values())
    line["machine"] = machine()
    sys.stdout.write(json.dumps(line, sort_keys=False) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def ms(ns: float) -> float:
    return ns / 1e6


def us(ns: float) -> float:
    return ns / 1e3


def rss_mb(pid: int) -> float:
    """Resident memory of a process from /proc (VmRSS), in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
