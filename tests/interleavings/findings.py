"""What the search has found and reported, and is still open on the branch it runs on.

A violation matching one of these is recorded (and the search goes on, so it can still find
something else); any other violation fails at once. A test that saw only known findings ends
as an expected failure naming them, so ``make test`` stays meaningful while the fix is in
another module's hands; once fixed, the pattern never matches and nothing is hidden. Each
finding also has its own deterministic test in ``test_findings.py`` (``xfail(strict=True)``,
so it flips the day the fix lands, and the entry here should then go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    name: str
    pattern: re.Pattern[str]
    summary: str


KNOWN: tuple[Finding, ...] = (
    Finding(
        "stop-during-retry-after",
        re.compile(r"^I1: .* reached the venue \d+ ms after the emergency stop of step \d+"),
        "a placement waiting out a 429 Retry-After is sent after the emergency stop answered"
        " (no send-time permit: stops.py / the VALR client)",
    ),
    Finding(
        "switch-outlives-stop",
        re.compile(r"^I5: the stop of step \d+ answered mode LIVE|^I2: .*LIVE"),
        "a LIVE switch confirmed while an emergency stop runs commits LIVE after the stop"
        " latched (switch and stop do not serialize: mode.py / stops.py)",
    ),
)


def classify(problem: str) -> Finding | None:
    for finding in KNOWN:
        if finding.pattern.search(problem):
            return finding
    return None
