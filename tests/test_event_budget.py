"""heliosd.notify.subscribers: a subscriber's buffer and bulk budget keep their invariants
(Subscription's docstring) under any sequence of publishes, clock moves and reads.

A hypothesis state machine drives an EventHub with two subscribers of different sizes and
budgets on a fake monotonic clock and checks, after every step: what each reads (and what
waits for it) is the published sequence with each missed run replaced by one ``dropped``
item counting it; no other event is lost while fewer than ``maxsize`` of them wait; the bulk
budget holds over every window. The daemon end to end (a burst of real fills, a halt in the
middle, the real socket) is tests/test_event_budget_e2e.py.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from heliosd.notify.subscribers import BULK_TYPES, DROP_REPORT_S, EventHub, Subscription, _Missed

KINDS = ["fill", "order", "halt", "mode", "notification"]


class Hub(EventHub):
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._closing = False


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def walk(start: int, items: Any) -> int:
    """Follow the published sequence from ``start`` through ``items``; where it ends."""
    for item in items:
        if isinstance(item, _Missed) or item["type"] == "dropped":
            count = item.count if isinstance(item, _Missed) else item["count"]
            assert count > 0
            start += count
        else:
            assert item["n"] == start, (item, start)
            start += 1
    return start


class Reader:
    """One subscriber and what the model knows of it."""

    def __init__(self, hub: Hub, clock: Clock, maxsize: int, rate: float) -> None:
        self.sub = Subscription(maxsize, hub._subscribers.discard, bulk_per_s=rate,
                                monotonic=clock)  # fmt: skip
        hub._subscribers.add(self.sub)
        self.maxsize, self.rate = maxsize, rate
        self.next = 0  # the published sequence is accounted for up to here by what was read
        self.admitted: list[float] = []  # when each bulk event got into the buffer

    def waiting(self) -> list[int]:
        return [e["n"] for e in self.sub._items if isinstance(e, dict)]


class Budget(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.hub = Hub()
        self.readers = [Reader(self.hub, self.clock, 4, 3.0),
                        Reader(self.hub, self.clock, 16, 20.0)]  # fmt: skip
        self.published = 0
        self.kinds: list[str] = []

    @rule(kind=st.sampled_from(KINDS), lazy=st.booleans())
    def publish(self, kind: str, lazy: bool) -> None:
        n = self.published
        self.published += 1
        self.kinds.append(kind)
        before = [[m for m in r.waiting() if self.kinds[m] not in BULK_TYPES]
                  for r in self.readers]  # fmt: skip
        event = {"type": kind, "n": n}
        if lazy:
            self.hub.publish_lazy(kind, lambda: event)
        else:
            self.hub.publish(event)
        for r, others in zip(self.readers, before, strict=True):
            now = r.waiting()
            if kind in BULK_TYPES and n in now:
                r.admitted.append(self.clock.t)
            if len(others) < r.maxsize:  # room for them: none of the others may have gone
                assert set(others) <= set(now), (others, now)
                if kind not in BULK_TYPES:
                    assert n in now  # and this one was taken

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0, 2.5]))
    def advance(self, seconds: float) -> None:
        self.clock.t += seconds

    @rule(which=st.integers(0, 1), k=st.integers(1, 20))
    def take(self, which: int, k: int) -> None:
        r = self.readers[which]
        for _ in range(k):
            item = r.sub.take()
            if item is None:
                break
            r.next = walk(r.next, [item])

    @invariant()
    def what_is_read_and_what_waits_is_the_published_sequence(self) -> None:
        for r in self.readers:
            assert walk(r.next, r.sub._items) == self.published
            kinds = [isinstance(e, _Missed) for e in r.sub._items]
            assert not any(a and b for a, b in itertools.pairwise(kinds)), "a run is one report"
            assert r.sub._events == len(r.waiting()) <= r.maxsize

    @invariant()
    def the_bulk_budget_holds_over_every_window(self) -> None:
        for r in self.readers:
            a = r.admitted
            for i in range(len(a)):
                for j in range(i, len(a)):
                    # j - i + 1 taken in [a[i], a[j]]: at most rate * (t + 1)
                    assert j - i + 1 <= r.rate * (a[j] - a[i] + 1) + 1e-9, (i, j, a)


TestBudget = Budget.TestCase
TestBudget.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


@given(
    steps=st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(0.0, 3.0), st.sampled_from([10.0, 1e4])),
            st.booleans(),
        ),
        max_size=300,
    ),
    rate=st.sampled_from([1.0, 3.0, 50.0, 1000.0]),
)
def test_admission_is_exactly_a_token_bucket(steps: list[tuple[float, bool]], rate: float) -> None:
    """Invariant 2 bounds what is taken; this pins the other side: an event is admitted
    whenever a plain token bucket (one second's worth, refilled continuously) holds a token,
    including on admit_bulk's fast path for a burst past its budget (a miss that leaves the
    bucket as it is and counts one more in the buffer's last run of misses). ``read``: the
    reader takes everything between steps, which ends a run of misses (the fast path's other
    condition)."""
    clock = Clock()
    hub = Hub()
    sub = Subscription(10_000, hub._subscribers.discard, bulk_per_s=rate, monotonic=clock)
    tokens, last = rate, clock.t
    for tokens_worth, read in steps:  # the clock moves by this many tokens' time
        dt = tokens_worth / rate
        clock.t += dt
        tokens = min(rate, tokens + (clock.t - last) * rate)
        last = clock.t
        expected = tokens >= 1.0
        if expected:
            tokens -= 1.0
        assert sub.admit_bulk() is expected, (dt, tokens)
        if read:
            while sub.take() is not None:
                pass


async def test_a_miss_is_reported_even_when_nothing_follows_it() -> None:
    hub = Hub()
    sub = Subscription(8, hub._subscribers.discard, bulk_per_s=2.0)
    hub._subscribers.add(sub)
    for n in range(5):  # two within the budget, three missed; then the burst ends
        hub.publish({"type": "fill", "n": n})
    got = [await asyncio.wait_for(anext(sub), 1) for _ in range(2)]
    assert [g["n"] for g in got] == [0, 1]
    report = await asyncio.wait_for(anext(sub), DROP_REPORT_S * 8)
    assert report["type"] == "dropped" and report["count"] == 3
    sub.close()
    assert [item async for item in sub] == []


async def test_a_halt_behind_a_full_buffer_of_fills_is_kept_and_fills_go_first() -> None:
    hub = Hub()
    sub = Subscription(4, hub._subscribers.discard, bulk_per_s=1000.0)
    hub._subscribers.add(sub)
    hub.publish({"type": "halt", "n": 0})
    for n in range(1, 50):
        hub.publish({"type": "fill", "n": n})
    hub.publish({"type": "mode", "n": 50})
    sub.close()
    got = [item async for item in sub]
    assert [(g["type"], g.get("n", g.get("count"))) for g in got] == [
        ("halt", 0), ("dropped", 47), ("fill", 48), ("fill", 49), ("mode", 50)]  # fmt: skip


def test_a_lazy_event_nobody_takes_is_never_built() -> None:
    hub = Hub()
    sub = Subscription(8, hub._subscribers.discard, bulk_per_s=1.0)
    hub._subscribers.add(sub)
    built: list[int] = []

    def build(n: int) -> dict[str, Any]:
        built.append(n)
        return {"type": "fill", "n": n}

    for n in range(10):
        hub.publish_lazy("fill", lambda n=n: build(n))  # type: ignore[misc]
    assert built == [0]  # one token: the other nine were missed, never built
    first, report = sub.take(), sub.take()
    assert first is not None and first["n"] == 0
    assert report is not None and (report["type"], report["count"]) == ("dropped", 9)
    assert sub.take() is None


def test_nothing_is_built_without_a_subscriber() -> None:
    hub = Hub()
    hub.publish_lazy("halt", lambda: 1 / 0)  # type: ignore[arg-type,return-value]


def test_the_documented_budget_is_the_daemons() -> None:
    from pathlib import Path

    from heliosd.notify.subscribers import BULK_PER_S

    doc = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    section = doc[doc.index("### Event stream") :]
    section = section[: section.index("\n### ")]
    assert f"at\n  most {int(BULK_PER_S):,} of them a second" in section
    assert f"within {DROP_REPORT_S:g} s" in section
