"""Maintenance and blackout windows against a minute-by-minute brute force, across DST.

The oracle reads the definition directly: an occurrence starting at wall time S and lasting
D covers the minutes from the first minute whose wall clock reads S or later to the first
whose wall clock reads S + D or later. Ranges are chosen around the zones' clock changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import DefinitionError, ValidationError
from itsmcore.windows import Schedule, Window

MINUTE = timedelta(minutes=1)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Zones with hour, half-hour and no DST changes, north and south; a date near a change.
ZONES = {
    "Europe/Berlin": [datetime(2025, 3, 27), datetime(2025, 10, 23)],  # wall dates
    "America/New_York": [datetime(2025, 3, 6), datetime(2025, 10, 30)],
    "Australia/Lord_Howe": [datetime(2025, 4, 3), datetime(2025, 10, 2)],
    "Asia/Kolkata": [datetime(2025, 6, 1)],
}


def _walls(tz: ZoneInfo, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
    """Every minute instant from lo to hi with its wall-clock reading in tz."""
    out, at = [], lo
    while at < hi:
        out.append((at, at.astimezone(tz).replace(tzinfo=None)))
        at += MINUTE
    return out


def _first_reading(walls: list[tuple[datetime, datetime]], wall: datetime) -> datetime:
    return next(at for at, reading in walls if reading >= wall)


def _brute_weekly(
    tz: ZoneInfo, day: str, start: str, end: str, lo: datetime, hi: datetime
) -> set[datetime]:
    walls = _walls(tz, lo - timedelta(days=3), hi + timedelta(days=3))
    a_h, a_m = map(int, start.split(":"))
    b_h, b_m = map(int, end.split(":"))
    length = timedelta(hours=b_h - a_h, minutes=b_m - a_m)
    if length <= timedelta(0):
        length += timedelta(days=1)
    covered: set[datetime] = set()
    day0 = (lo - timedelta(days=2)).astimezone(tz).date()
    for k in range((hi - lo).days + 6):
        date_ = day0 + timedelta(days=k)
        if DAYS[date_.weekday()] != day:
            continue
        s = datetime(date_.year, date_.month, date_.day, a_h, a_m)  # wall
        if s > (hi + timedelta(days=1)).replace(tzinfo=None):
            continue  # starts after the range in every zone
        a, b = _first_reading(walls, s), _first_reading(walls, s + length)
        covered |= {at for at, _ in walls if a <= at < b and lo <= at < hi}
    return covered


def _minutes(schedule: Schedule, lo: datetime, hi: datetime) -> set[datetime]:
    out: set[datetime] = set()
    for a, b in schedule.spans(lo, hi):
        assert a.second == b.second == 0  # every change in these zones is on a minute
        at = a
        while at < b:
            out.add(at)
            at += MINUTE
    return out


clock = st.builds(lambda h, q: f"{h:02d}:{q * 15:02d}", st.integers(0, 23), st.integers(0, 3))
weekly = st.tuples(st.sampled_from(DAYS), clock, clock)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    name = draw(st.sampled_from(sorted(ZONES)))
    near = draw(st.sampled_from(ZONES[name]))
    lo = near.replace(tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 48)))
    return name, lo, lo + timedelta(days=draw(st.integers(1, 5)))


@given(window=weekly, where=ranges())
def test_a_weekly_window_covers_exactly_what_its_definition_says(
    window: tuple[str, str, str], where: tuple[str, datetime, datetime]
) -> None:
    day, start, end = window
    name, lo, hi = where
    built = Window.weekly(day, start, end, tz=name)
    assert _minutes(built, lo, hi) == _brute_weekly(ZoneInfo(name), day, start, end, lo, hi)


@given(first=weekly, second=weekly, where=ranges())
def test_union_intersection_and_difference_are_the_set_operations(
    first: tuple[str, str, str], second: tuple[str, str, str], where: tuple[str, datetime, datetime]
) -> None:
    name, lo, hi = where
    a, b = (Window.weekly(*w, tz=name) for w in (first, second))
    ma, mb = _minutes(a, lo, hi), _minutes(b, lo, hi)
    assert _minutes(a | b, lo, hi) == ma | mb
    assert _minutes(a & b, lo, hi) == ma & mb
    assert _minutes(a - b, lo, hi) == ma - mb
    assert _minutes((a | b) - (a & b), lo, hi) == ma ^ mb


def test_the_changeover_nights_keep_the_wall_clock_meaning() -> None:
    saturday = Window.weekly("sat", "22:00", "02:00", tz="Europe/Berlin")
    (spring,) = saturday.spans(datetime(2025, 3, 29, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC))
    # 22:00 CET to 02:00, which does not exist: it ends at the jump (03:00 CEST).
    assert spring == (datetime(2025, 3, 29, 21, tzinfo=UTC), datetime(2025, 3, 30, 1, tzinfo=UTC))
    (fall,) = saturday.spans(datetime(2025, 10, 25, tzinfo=UTC), datetime(2025, 10, 27, tzinfo=UTC))
    # 22:00 CEST to the first 02:00 (CEST): the repeated hour is not added.
    assert fall == (datetime(2025, 10, 25, 20, tzinfo=UTC), datetime(2025, 10, 26, 0, tzinfo=UTC))
    inside_gap = Window.weekly("sun", "02:30", "04:00", tz="Europe/Berlin")
    (short,) = inside_gap.spans(
        datetime(2025, 3, 30, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC)
    )
    assert short == (datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 3, 30, 2, tzinfo=UTC))


def test_a_yearly_freeze_and_a_recurrence_rule() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    freeze = Window.yearly((12, 15), (1, 5), tz="Europe/Berlin", name="year-end freeze")
    spans = freeze.spans(datetime(2025, 6, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC))
    dates = [(a.astimezone(berlin).date(), b.astimezone(berlin).date()) for a, b in spans]
    assert [(a.isoformat(), b.isoformat()) for a, b in dates] == [
        ("2025-12-15", "2026-01-05"), ("2026-12-15", "2027-01-05"),
    ]  # fmt: skip
    month_end = Window.recurring(
        "DTSTART:20250131T000000\nRRULE:FREQ=MONTHLY;BYMONTHDAY=-1", duration=timedelta(days=1),
        tz="Europe/Berlin", name="month-end close",
    )  # fmt: skip
    closes = month_end.spans(datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))
    assert [a.astimezone(berlin).date().isoformat() for a, _ in closes] == [
        "2025-02-28", "2025-03-31", "2025-04-30",
    ]  # fmt: skip
    assert freeze.contains(datetime(2025, 12, 24, 12, tzinfo=UTC))
    assert freeze.covers(datetime(2025, 12, 20, tzinfo=UTC), datetime(2025, 12, 27, tzinfo=UTC))
    assert not freeze.overlaps(datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Window.weekly("sam", "22:00", "02:00", tz="UTC"), "unknown day"),
        (lambda: Window.weekly("sat", "25:00", "02:00", tz="UTC"), "00:00 to 24:00"),
        (lambda: Window.weekly("sat", "22:00", "02:00", tz="Mars/Base"), "Mars/Base"),
        (lambda: Window.yearly((2, 30), (3, 1), tz="UTC"), "month, day"),
        (lambda: Window.recurring("FREQ=SOMETIMES", duration=timedelta(hours=1), tz="UTC"),
         "unreadable"),
        (lambda: Window.recurring("RRULE:FREQ=DAILY", duration=timedelta(0), tz="UTC"),
         "positive"),
        (lambda: Window.once(datetime(2025, 1, 2), datetime(2025, 1, 1), tz="UTC"),
         "not after"),
    ],
)  # fmt: skip
def test_impossible_windows_fail_when_built(build: object, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()  # type: ignore[operator]


def test_questions_are_bounded_and_take_aware_instants() -> None:
    w = Window.weekly("sat", "22:00", "02:00", tz="Europe/Berlin")
    with pytest.raises(ValidationError, match="at most 3,660 days"):
        w.spans(datetime(2000, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError, match="naive"):
        w.spans(datetime(2025, 1, 1), datetime(2025, 2, 1))  # naive: the bad input
    with pytest.raises(ValidationError, match="before start"):
        w.spans(datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError, match="combine with windows"):
        w | 3  # type: ignore[operator]
