"""Business time over decades and millennia: arithmetic beside expansion, in one run.

    python benchmarks/bench_long_spans.py

For each calendar: the first question on a fresh calendar (what a web request with a
user-supplied date costs at worst) and the same question again (cached), by arithmetic
(what the library does for spans over ten years) and, for a century, by expanding and
indexing every open interval (what it did before, and still does for spans under ten years).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import itsmcore.calendar as calendar_module
from itsmcore import BusinessCalendar

HOLIDAYS = [date(y, 12, 25) for y in range(1990, 2100)] + [date(y, 1, 1) for y in range(1990, 2100)]


def make(tz: str) -> BusinessCalendar:
    return BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz=tz, holidays=HOLIDAYS)


def once(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def row(label: str, fn: object) -> None:
    first = once(fn)
    again = min(once(fn) for _ in range(5))
    print(f"{label:<58} first {first * 1e3:9.2f} ms   again {again * 1e3:8.3f} ms")


def main() -> None:
    a, century = datetime(2000, 1, 3, tzinfo=UTC), datetime(2099, 12, 1, tzinfo=UTC)
    ends = datetime(2, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    for tz in ("UTC", "Europe/Berlin", "America/New_York"):
        cal = make(tz)
        row(f"{tz}: elapsed over a century, arithmetic", lambda c=cal: c.elapsed(a, century))
        saved = calendar_module._LONG_US  # noqa: SLF001 - the path of before, for comparison
        calendar_module._LONG_US = 10**30  # type: ignore[misc]  # noqa: SLF001 - every span on the index
        try:
            cal = make(tz)
            row(f"{tz}: elapsed over a century, expanded", lambda c=cal: c.elapsed(a, century))
        finally:
            calendar_module._LONG_US = saved  # type: ignore[misc]  # noqa: SLF001
        cal = make(tz)
        row(f"{tz}: elapsed from the year 2 to 9999", lambda c=cal: c.elapsed(*ends))
        cal = make(tz)
        row(
            f"{tz}: add 100,000 days of business time",
            lambda c=cal: c.add(a, timedelta(days=10**5)),
        )


if __name__ == "__main__":
    main()
