"""BusinessCalendar against the brute-force oracle, on random calendars around DST changes.

Calendars are drawn with lunch breaks, shifts across midnight, 24:00 ends, closed days,
holidays, closures and extra openings, in zones with one-hour, half-hour and no DST; the
instants are drawn around the 2024-2026 DST changes of those zones and at ordinary dates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from calendar_oracle import DAYS, Oracle
from itsmcore import BusinessCalendar

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
# DST changes (UTC instants, give or take an hour) for the zones above, 2024-2026.
CHANGES = [
    datetime(2024, 3, 31, 1, tzinfo=UTC), datetime(2024, 10, 27, 1, tzinfo=UTC),
    datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 10, 26, 1, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2024, 3, 10, 7, tzinfo=UTC), datetime(2024, 11, 3, 6, tzinfo=UTC),
    datetime(2025, 3, 9, 7, tzinfo=UTC), datetime(2025, 11, 2, 6, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2024, 4, 6, 15, tzinfo=UTC), datetime(2024, 10, 5, 15, 30, tzinfo=UTC),
    datetime(2025, 4, 5, 15, tzinfo=UTC), datetime(2025, 10, 4, 15, 30, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    datetime(2025, 6, 18, 12, tzinfo=UTC), datetime(2024, 12, 31, 23, tzinfo=UTC),
]  # fmt: skip
MIN = timedelta(minutes=1)

# Wall times on a half-hour grid so that boundaries fall inside DST gaps and folds often.
grid = st.integers(min_value=0, max_value=48).map(lambda k: k * 30)


def text(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


@st.composite
def day_hours(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Up to three ordered intervals within one day (ends up to 24:00)."""
    points = sorted(draw(st.sets(grid, min_size=0, max_size=6)))
    points = points[: len(points) // 2 * 2]
    return list(zip(points[::2], points[1::2], strict=True))


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, str]:
    week = [draw(day_hours()) for _ in range(7)]
    # Sometimes turn a day's last interval into a shift running past midnight, ending
    # before its own start and before the next day's first interval.
    for day in range(7):
        following = week[(day + 1) % 7]
        if not week[day] or week[day][-1][1] == 24 * 60:
            continue
        start = week[day][-1][0]
        cap = min(following[0][0] if following else 24 * 60, start - 30)
        if cap >= 30 and draw(st.booleans()):
            week[day][-1] = (start, 24 * 60 + draw(st.integers(1, cap // 30)) * 30)
    assume(any(week))
    out = {}
    for day, intervals in enumerate(week):
        parts = [f"{text(s)}-{text(e - 24 * 60 if e > 24 * 60 else e)}" for s, e in intervals]
        out[DAYS[day]] = ",".join(parts)
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[BusinessCalendar, Oracle, datetime, datetime]:
    hours = draw(schedules())
    tz = draw(st.sampled_from(ZONES))
    anchor = draw(st.sampled_from(CHANGES)) + draw(st.integers(-48 * 60, 24 * 60)) * MIN
    a = anchor
    b = a + draw(st.integers(-12 * 60, 3 * 24 * 60)) * MIN
    local = ZoneInfo(tz)
    days = [(anchor.astimezone(local) + timedelta(days=k)).date() for k in range(-3, 4)]
    holidays = draw(st.sets(st.sampled_from(days), max_size=2))
    spans = st.tuples(st.integers(-48 * 60, 72 * 60), st.integers(30, 20 * 60)).map(
        lambda p: (anchor + p[0] * MIN, anchor + (p[0] + p[1]) * MIN)
    )
    closures = draw(st.lists(spans, max_size=2))
    extras = draw(st.lists(spans, max_size=2))
    calendar = BusinessCalendar.weekly(
        hours, tz=tz, holidays=holidays, closures=closures, extra_openings=extras
    )
    oracle = Oracle(hours, tz, holidays, closures, extras)
    return calendar, oracle, a, b


@settings(max_examples=60)
@given(cases())
def test_elapsed_matches_the_oracle(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime],
) -> None:
    calendar, oracle, a, b = case
    assert calendar.elapsed(a, b) == oracle.elapsed(a, b)


@settings(max_examples=60)
@given(cases(), st.integers(-20 * 60, 30 * 60))
def test_add_matches_the_oracle(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime], minutes: int
) -> None:
    calendar, oracle, a, _ = case
    duration = minutes * MIN
    expected = oracle.add(a, duration, limit=timedelta(days=8))
    assume(expected is not None)  # a sparse calendar: more than a week to walk
    assert calendar.add(a, duration) == expected
    assert calendar.elapsed(a, calendar.add(a, duration)) == duration


@settings(max_examples=40)
@given(cases())
def test_open_next_open_next_close_and_intervals_match_the_oracle(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime],
) -> None:
    calendar, oracle, a, b = case
    a, b = min(a, b), max(a, b)
    assume(b - a <= timedelta(days=2))
    for t in (a, b, a + (b - a) // 2 // MIN * MIN):
        assert calendar.is_open(t) == oracle.open(t)
    stretches = oracle.intervals(a, b)
    assert [
        (s.astimezone(UTC), e.astimezone(UTC)) for s, e in calendar.open_intervals(a, b)
    ] == stretches
    inside = [s for s in stretches if s[1] < b]
    if inside:
        first_start, first_end = inside[0]
        expected_open = a if oracle.open(a) else first_start
        assert calendar.next_open(a) == expected_open
        if not (oracle.open(a) and first_start > a):
            assert calendar.next_close(a) == first_end


@st.composite
def fine_instants(draw: st.DrawFn) -> datetime:
    """Instants to the microsecond, near DST changes."""
    return draw(st.sampled_from(CHANGES)) + timedelta(
        microseconds=draw(st.integers(-3 * 86_400 * 10**6, 3 * 86_400 * 10**6))
    )


@given(cases(), fine_instants(), fine_instants(), fine_instants())
def test_elapsed_is_additive_and_antisymmetric_to_the_microsecond(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime],
    a: datetime,
    b: datetime,
    c: datetime,
) -> None:
    calendar = case[0]
    assert calendar.elapsed(a, b) + calendar.elapsed(b, c) == calendar.elapsed(a, c)
    assert calendar.elapsed(a, b) == -calendar.elapsed(b, a)


@given(
    cases(),
    fine_instants(),
    st.lists(st.integers(-5 * 86_400 * 10**6, 5 * 86_400 * 10**6), min_size=2, max_size=4),
)
def test_add_inverts_elapsed_and_is_monotonic(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime], a: datetime, amounts: list[int]
) -> None:
    calendar = case[0]
    durations = sorted(timedelta(microseconds=x) for x in amounts)
    results = [calendar.add(a, d) for d in durations]
    for d, r in zip(durations, results, strict=True):
        assert calendar.elapsed(a, r) == d
    assert results == sorted(results)
    later = a + timedelta(hours=5)
    assert calendar.add(a, durations[-1]) <= calendar.add(later, durations[-1])


@given(cases(), st.lists(st.tuples(fine_instants(), fine_instants()), min_size=1, max_size=70))
def test_batches_equal_the_scalar_answers(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime],
    pairs: list[tuple[datetime, datetime]],
) -> None:
    calendar = case[0]
    starts, ends = [s for s, _ in pairs], [e for _, e in pairs]
    assert calendar.elapsed_many(starts, ends) == [calendar.elapsed(s, e) for s, e in pairs]
    durations = [e - s for s, e in pairs]
    assert calendar.add_many(starts, durations) == [
        calendar.add(s, d) for s, d in zip(starts, durations, strict=True)
    ]


@settings(max_examples=20)
@given(
    schedules(),
    st.sampled_from(ZONES),
    st.sampled_from([1950, 2300]),
    st.integers(0, 360 * 24 * 60),
    st.integers(0, 3 * 24 * 60),
)
def test_no_fixed_horizon(hours: dict[str, str], tz: str, year: int, start: int, span: int) -> None:
    calendar = BusinessCalendar.weekly(hours, tz=tz)
    a = datetime(year, 1, 1, tzinfo=UTC) + start * MIN
    b = a + span * MIN
    assert calendar.elapsed(a, b) == Oracle(hours, tz).elapsed(a, b)


def _local(t: datetime, tz: str, fold: int) -> datetime:
    """``t`` on ``tz``'s wall clock; ``fold=1`` names the second of a repeated wall time."""
    wall = t.astimezone(ZoneInfo(tz))
    return wall.replace(fold=fold) if fold else wall


@settings(max_examples=50)
@given(cases(), fine_instants(), fine_instants(), st.integers(0, 1), st.integers(0, 1))
def test_the_wall_clock_path_agrees_with_the_utc_path_and_the_oracle(
    case: tuple[BusinessCalendar, Oracle, datetime, datetime],
    a: datetime,
    b: datetime,
    fold_a: int,
    fold_b: int,
) -> None:
    """Arguments in the calendar's own zone are read on its wall clock when that is exact:
    across DST changes, in skipped and repeated hours, with either fold, the answers are the
    UTC path's (which the tests above hold to the oracle), to the microsecond."""
    calendar, oracle = case[0], case[1]
    tz = _zone_name(calendar)
    start, end = _local(a, tz, fold_a), _local(b, tz, fold_b)
    calendar.elapsed(start, end)  # the first question builds the index (and its wall clock)
    assert calendar.elapsed(start, end) == calendar._elapsed(start, end)
    if abs(b - a) <= timedelta(days=4):  # the oracle walks minute by minute
        minute_start, minute_end = (t.replace(second=0, microsecond=0) for t in (start, end))
        assert calendar.elapsed(minute_start, minute_end) == oracle.elapsed(
            minute_start, minute_end
        )
    for duration in (b - a, abs(b - a) // 7, timedelta(hours=1)):
        got = calendar.add(start, duration)
        assert got == calendar._add(start, duration)
        assert got.tzinfo is start.tzinfo
        assert got.utcoffset() == got.tzinfo.utcoffset(got)  # a real wall time of the zone


def _zone_name(calendar: BusinessCalendar) -> str:
    return str(calendar.tz)


def test_the_wall_clock_serves_an_office_calendar_but_not_one_open_across_dst() -> None:
    """The fast path is taken where it is exact (office hours) and refused where the clock
    changes while open (24x7, a night shift over the change) or within an hour of it."""
    berlin = ZoneInfo("Europe/Berlin")
    march = datetime(2025, 3, 24, 10, tzinfo=berlin)
    expected = {
        "mon-fri 09:00-17:00": True,
        "always": False,
        "sun 01:00-04:00": False,  # the change (02:00 -> 03:00) falls inside
        "sun 00:00-01:30": False,  # closes half an hour before the hour is skipped
        "sun 00:00-00:30": True,
    }
    for hours, exact in expected.items():
        if hours == "always":
            calendar = BusinessCalendar.always(tz="Europe/Berlin")
        else:
            day, span = hours.split(" ")
            calendar = BusinessCalendar.weekly({day: span}, tz="Europe/Berlin")
        calendar.elapsed(march, march + timedelta(days=30))
        assert (id(calendar.tz) in calendar._cache.walls) is exact, hours
        assert id(UTC) in calendar._cache.walls  # UTC's wall clock is the time line: exact
