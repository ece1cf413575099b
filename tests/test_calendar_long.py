"""Business time over decades and millennia: arithmetic, not expansion.

Questions spanning more than ten years are answered from the weekly schedule's arithmetic
plus exact windows around holidays, offset changes, closures and extra openings (see
``calendar._Long``). The index path, itself checked against the brute-force oracle, is the
oracle here on spans of up to five years; across the whole range of years the checks are
independent counts (weekdays, real time on a 24x7 calendar).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itsmcore import BusinessCalendar, Incident, Priority, SLADefinition, ValidationError
from itsmcore.calendar import _Long
from test_calendar_oracle import CHANGES, schedules

US = timedelta(microseconds=1)
DAY_US = 86_400 * 10**6
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Offset changes at midnight (Sao Paulo), half-hour DST (Lord Howe), a change and back within
# seven days (Recife, 2000), a skipped day (Apia, 2011), rule-less far future (Gaza).
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Recife",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Gaza",
    "Asia/Kolkata",
    "UTC",
]


def us(t: datetime) -> int:
    return (t - EPOCH) // US


@st.composite
def long_cases(draw: st.DrawFn) -> tuple[BusinessCalendar, int, int]:
    hours = draw(schedules())
    tz = draw(st.sampled_from(ZONES))
    start = datetime(draw(st.integers(1996, 2028)), 1, 1, tzinfo=UTC)
    near = (
        st.sampled_from(CHANGES)
        .map(us)
        .flatmap(  # an end near an offset change
            lambda t: st.integers(t - DAY_US // 6, t + DAY_US // 6)
        )
    )
    lo = draw(near | st.integers(us(start), us(start) + 365 * DAY_US))
    hi = draw(near.filter(lambda t: t >= lo) | st.integers(lo, lo + 5 * 365 * DAY_US))
    day0 = (EPOCH + lo * US).date()
    span_days = (hi - lo) // DAY_US + 3
    holidays = draw(
        st.lists(st.integers(-2, span_days).map(lambda k: day0 + timedelta(days=k)), max_size=12)
    )
    spans = st.tuples(st.integers(lo - 3 * DAY_US, hi), st.integers(60, 40 * DAY_US)).map(
        lambda p: (EPOCH + p[0] * US, EPOCH + (p[0] + p[1]) * US)
    )
    closures = draw(st.lists(spans, max_size=3))
    extras = draw(st.lists(spans, max_size=3))
    calendar = BusinessCalendar.weekly(
        hours, tz=tz, holidays=holidays, closures=closures, extra_openings=extras
    )
    return calendar, lo, hi


@settings(max_examples=60, deadline=None)
@given(long_cases())
def test_arithmetic_equals_the_index_to_the_microsecond(
    case: tuple[BusinessCalendar, int, int],
) -> None:
    calendar, lo, hi = case
    expected = calendar.elapsed_us(lo, hi)  # on the index: the span is under ten years
    assert calendar._measure(lo, hi, index=False) == expected
    assert calendar._measure(lo, hi, index=True) == expected


@settings(max_examples=40, deadline=None)
@given(long_cases(), st.booleans(), st.integers(1, 400 * 3600 * 10**6))
def test_adding_by_arithmetic_equals_adding_on_the_index(
    case: tuple[BusinessCalendar, int, int], forward: bool, hours_us: int
) -> None:
    calendar, lo, _ = case
    d = hours_us if forward else -hours_us
    assert calendar._add_far(lo, d) == calendar._add_near(lo, d, far=False)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(ZONES), st.integers(2800, 9997), schedules())
def test_years_from_2800_repeat_those_400_years_earlier(
    tz: str, year: int, hours: dict[str, str]
) -> None:
    calendar = BusinessCalendar.weekly(hours, tz=tz, holidays=[date(2025, 12, 25)])
    long = _Long(calendar)
    assert long.repeats
    lo = calendar._boundary(date(year, 1, 1), 0)
    hi = calendar._boundary(date(year + 1, 1, 1), 0)
    assert long.year(calendar, year) == long.correction(calendar, lo, hi)


def weekdays(first: date, last: date) -> int:
    """Mon-Fri dates in [first, last), counted without a calendar."""
    days = (last - first).days
    full, rest = divmod(days, 7)
    return 5 * full + sum((first.weekday() + k) % 7 < 5 for k in range(rest))


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "UTC"])
def test_an_office_calendar_across_the_whole_range_of_years(tz: str) -> None:
    holidays = [date(2025, 12, 25), date(2026, 1, 1), date(1999, 12, 31), date(2026, 1, 3)]
    cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz=tz, holidays=holidays)
    local = ZoneInfo(tz)
    first, last = date(2, 1, 1), date(9999, 1, 1)
    a = datetime(2, 1, 1, tzinfo=local)
    b = datetime(9999, 1, 1, tzinfo=local)
    working_holidays = sum(d.weekday() < 5 for d in holidays)  # 2026-01-03 is a Saturday
    expected = timedelta(hours=8) * (weekdays(first, last) - working_holidays)
    assert cal.elapsed(a, b) == expected
    assert cal.elapsed(b, a) == -expected
    # Only the partial years at the ends were expanded; about 2,800 years of corrections.
    assert sum(s.hi - s.lo for s in cal._cache.segments) < 3 * 366 * DAY_US
    assert cal._cache.long is not None
    assert len(cal._cache.long.years) <= 2_800


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia"])
def test_a_24x7_calendar_counts_real_time_through_every_offset_change(tz: str) -> None:
    cal = BusinessCalendar.always(tz=tz)
    a = datetime(3, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
    b = datetime(9998, 11, 12, 13, 14, 15, 16, tzinfo=UTC)
    assert cal.elapsed(a, b) == b - a
    middle = datetime(2011, 12, 29, 12, tzinfo=UTC)  # Apia skipped 30 Dec 2011
    assert cal.elapsed(a, middle) + cal.elapsed(middle, b) == b - a


def test_adding_millennia_lands_on_the_earliest_instant() -> None:
    cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="UTC")
    monday = datetime(2001, 1, 1, 9, tzinfo=UTC)
    weeks = 400_000  # 7,666 years
    friday_close = monday + timedelta(weeks=weeks) - timedelta(days=2, hours=16)
    assert cal.add(monday, timedelta(hours=40) * weeks) == friday_close
    assert cal.add(friday_close, -timedelta(hours=40) * weeks) == monday
    berlin = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
    start = datetime(2025, 3, 3, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    for budget in (timedelta(days=10**5), -timedelta(days=10**4), timedelta(hours=7) * 10**6):
        end = berlin.add(start, budget)
        if budget > timedelta(0):
            assert berlin.elapsed(start, end) == budget
            assert berlin.elapsed(start, end - US) < budget  # the earliest such instant
        else:
            assert berlin.elapsed(end, start) == -budget
            assert berlin.elapsed(end + US, start) < -budget  # the latest


def test_an_sla_clock_read_millennia_later() -> None:
    cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
    opened = datetime(2025, 3, 3, 9, tzinfo=UTC)
    record = Incident.open(
        id="INC1", title="Mail down", caller="mia", impact=2, urgency=2, at=opened, by="desk"
    )
    definition = SLADefinition.incident_resolution(dict.fromkeys(Priority, timedelta(hours=4)), cal)
    later = datetime(9000, 1, 1, tzinfo=UTC)
    status = definition.evaluate(record, at=later)
    assert status.business_elapsed == cal.elapsed(opened, later)
    assert status.breached
    assert status.breached_at == datetime(2025, 3, 3, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ask", "message"),
    [
        (
            lambda: BusinessCalendar.always().next_close(datetime(2025, 1, 1, tzinfo=UTC)),
            "it never closes",
        ),
        (
            lambda: BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="UTC").add(
                datetime(2025, 1, 1, tzinfo=UTC), timedelta(days=10**6)
            ),
            "no open time left within the years 1 to 9999",
        ),
    ],
)
def test_what_no_arithmetic_can_answer_is_refused_at_once(ask: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ask()  # type: ignore[operator]


def test_a_holiday_source_asked_one_date_at_a_time_is_limited_to_a_century() -> None:
    holidays = pytest.importorskip("holidays")
    cal = BusinessCalendar.weekly(
        {"mon-fri": "09:00-17:00"}, tz="Europe/Berlin", holidays=holidays.country_holidays("DE")
    )
    a, b = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError, match="one date at a time"):
        cal.elapsed(a, b)
    # Within the century it is answered by arithmetic too, and agrees with the index.
    c = datetime(2040, 1, 1, tzinfo=UTC)
    edges = [a, *(datetime(y, 1, 1, tzinfo=UTC) for y in range(2005, 2040, 5)), c]
    pieces = sum((cal.elapsed(x, y) for x, y in itertools.pairwise(edges)), timedelta(0))
    assert cal.elapsed(a, c) == pieces  # 40 years by arithmetic, 5-year pieces on the index


def test_a_question_starting_in_the_repeated_hour_after_the_change() -> None:
    # Berlin falls back at 01:00 UTC on 26 Oct 2025 (03:00 CEST -> 02:00 CET): a Sunday
    # shift from 02:30 starts at its first 02:30 (00:30 UTC); a question from 02:15 CET, in
    # the repeated hour, finds it already open.
    cal = BusinessCalendar.weekly({"sun": "02:30-06:00"}, tz="Europe/Berlin")
    lo = us(datetime(2025, 10, 26, 1, 15, tzinfo=UTC))
    hi = lo + 4 * 365 * DAY_US
    assert cal._measure(lo, lo + DAY_US, index=False) == 225 * 60 * 10**6  # 3 h 45 min
    assert cal._measure(lo, hi, index=False) == cal.elapsed_us(lo, hi)
