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
from dataclasses import dataclass, fields

from heliosd.risk.stops import Stops

# The send permits on the stop path (helper S1's work): a stop that revokes and settles
# in-flight placements, and a LIVE switch that commits only at its epoch. Until they are on
# the branch under test, the two findings they fix are open; from then on they are plain
# failures like any other.
STOP_HAS_PERMITS = "permits" in {f.name for f in fields(Stops)}


@dataclass(frozen=True)
class Finding:
    name: str
    pattern: re.Pattern[str]
    summary: str
    actions: frozenset[str] = frozenset()  # only in these steps (empty: in any step)


_ALL: tuple[Finding, ...] = (
    Finding(
        "order-after-stop",
        re.compile(r"^I1: .* reached the venue \d+ ms after the emergency stop of step \d+"),
        "a placement still inside the daemon (waiting out a 429 Retry-After, or held on the"
        " wire by a slow venue) reaches VALR after the emergency stop answered: the stop"
        " neither revokes nor waits for in-flight placements (heliosd.risk.stops + permits)",
    ),
    Finding(
        "switch-outlives-stop",
        re.compile(r"^I5: the stop of step \d+ answered mode LIVE|^I2: "),
        "a LIVE switch confirmed while an emergency stop runs commits LIVE after the stop"
        " latched (switch and stop do not serialize: heliosd.risk.mode / heliosd.risk.stops)",
        frozenset({"live_switch_vs_stop"}),
    ),
    Finding(
        "stop-gives-up-under-5xx",
        re.compile(r"^I5: the stop of step \d+ could not check the venue, which had \d+ open"),
        "while VALR answers mostly 5xx the stop tries cancel-all three times (about 1.2 s),"
        " answers remaining_open_orders null and never cancels again: the orders rest at VALR"
        " after the stop (heliosd.risk.stops)",
    ),
)


FIXED_BY_PERMITS = {"order-after-stop", "switch-outlives-stop"}
KNOWN = tuple(f for f in _ALL if not (STOP_HAS_PERMITS and f.name in FIXED_BY_PERMITS))


def classify(problem: str, action: str) -> Finding | None:
    for finding in KNOWN:
        if finding.actions and action not in finding.actions:
            continue
        if finding.pattern.search(problem):
            return finding
    return None
