"""Business time with what the peers' users bring: pytz zones, offsets, holiday forms, numpy
and pandas values, working days, and the previous opening or close."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import pytz
from dateutil.rrule import YEARLY, rrule
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import BusinessCalendar, DefinitionError, ValidationError

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = {"mon-fri": "09:00-17:00"}


@pytest.mark.parametrize("name", ["Europe/Berlin", "America/Santiago"])
def test_a_pytz_zone_reads_the_hours_as_the_iana_zone_does(name: str) -> None:
    # pytz's tzinfo on a naive wall time is the zone's local mean time (Berlin +0:53,
    # Santiago -4:43): every boundary used to shift by the difference.
    with_pytz = BusinessCalendar.weekly(HOURS, tz=pytz.timezone(name))
    with_iana = BusinessCalendar.weekly(HOURS, tz=name)
    t = datetime(2025, 3, 3, 6, tzinfo=UTC)
    assert with_pytz.next_open(t) == with_iana.next_open(t)
    assert with_pytz.add(t, timedelta(hours=20)) == with_iana.add(t, timedelta(hours=20))


def test_fixed_offsets() -> None:
    plus_one = BusinessCalendar.weekly(HOURS, tz="+01:00")
    assert plus_one.next_open(datetime(2025, 7, 7, 6, tzinfo=UTC)) == datetime(
        2025, 7, 7, 8, tzinfo=UTC
    )  # no summer time at a fixed offset
    assert BusinessCalendar.always(tz="-05:30").tz.utcoffset(None) == timedelta(hours=-5.5)
    with pytest.raises(DefinitionError, match="not less than a day"):
        BusinessCalendar.always(tz="+25:00")


def test_holidays_in_every_form_the_peers_take() -> None:
    forms = [
        "2025-03-04",
        datetime(2025, 3, 5, 12),
        np.datetime64("2025-03-06"),
        (date(2025, 3, 7), "Founders' Day"),
    ]
    cal = BusinessCalendar.weekly(HOURS, tz="Europe/Berlin", holidays=forms)
    assert [cal.is_working_day(date(2025, 3, d)) for d in range(3, 11)] == [
        True, False, False, False, False, False, False, True,
    ]  # fmt: skip
    index = pd.DatetimeIndex(["2025-03-04", "2025-03-05"])  # what pandas calendars return
    cal = BusinessCalendar.weekly(HOURS, tz="Europe/Berlin", holidays=index)
    assert not cal.is_working_day(date(2025, 3, 5))
    christmas = rrule(YEARLY, bymonth=12, bymonthday=25, dtstart=datetime(2000, 1, 1))
    cal = BusinessCalendar.weekly(HOURS, tz="UTC", holidays=christmas)
    assert [cal.is_working_day(date(y, 12, 25)) for y in (2025, 2026, 2030)] == [False] * 3
    assert cal.is_working_day(date(2025, 12, 24))

    class FirstMondays:
        def __contains__(self, day: object) -> bool:
            return isinstance(day, date) and day.weekday() == 0 and day.day <= 7

    cal = BusinessCalendar.weekly(HOURS, tz="UTC", holidays=FirstMondays())
    assert (cal.is_working_day(date(2025, 3, 3)), cal.is_working_day(date(2025, 3, 10))) == (
        False, True,
    )  # fmt: skip


def test_numpy_and_pandas_durations() -> None:
    cal = BusinessCalendar.weekly(HOURS, tz="Europe/Berlin")
    friday = datetime(2025, 3, 7, 16, tzinfo=BERLIN)
    expected = datetime(2025, 3, 10, 10, tzinfo=BERLIN)
    assert cal.add(friday, np.timedelta64(2, "h")) == expected
    assert cal.add(friday, pd.Timedelta(hours=2)) == expected
    assert type(cal.add(friday, pd.Timedelta(hours=2))) is datetime
    with pytest.raises(ValidationError, match="duration must be a timedelta"):
        cal.add(friday, 7200)  # type: ignore[arg-type]


def test_working_days_keep_the_time_of_day() -> None:
    cal = BusinessCalendar.weekly(HOURS, tz="Europe/Berlin", holidays=[date(2025, 3, 11)])
    friday = datetime(2025, 3, 7, 10, 30, tzinfo=BERLIN)
    assert cal.add_working_days(friday, 1) == datetime(2025, 3, 10, 10, 30, tzinfo=BERLIN)
    assert cal.add_working_days(friday, 2) == datetime(2025, 3, 12, 10, 30, tzinfo=BERLIN)
    assert cal.add_working_days(friday, -5) == datetime(2025, 2, 28, 10, 30, tzinfo=BERLIN)
    assert cal.working_days(friday, datetime(2025, 3, 12, 8, tzinfo=BERLIN)) == 2
    # Across the spring change, the wall time is kept (the offset changes).
    before = datetime(2025, 3, 28, 9, tzinfo=BERLIN)
    assert cal.add_working_days(before, 1).isoformat() == "2025-03-31T09:00:00+02:00"
    with pytest.raises(ValidationError, match="whole number"):
        cal.add_working_days(friday, 1.5)  # type: ignore[arg-type]


@given(st.integers(-400, 400), st.integers(0, 60 * 24 * 60))
def test_counting_working_days_inverts_adding_them(days: int, minutes: int) -> None:
    cal = BusinessCalendar.weekly(
        {"mon-fri": "09:00-17:00", "sat": "10:00-12:00"}, tz="Europe/Berlin",
        holidays=[date(2025, 5, 1), date(2025, 12, 25)],
    )  # fmt: skip
    start = datetime(2025, 3, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    assert cal.working_days(start, cal.add_working_days(start, days)) == days


@given(st.integers(0, 60 * 24 * 90))
def test_previous_open_and_close_agree_with_the_open_intervals(minutes: int) -> None:
    cal = BusinessCalendar.weekly(
        {"mon-fri": "08:00-12:00,13:00-17:00"}, tz="Europe/Berlin", holidays=[date(2025, 4, 18)]
    )
    at = datetime(2025, 3, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    intervals = cal.open_intervals(at - timedelta(days=14), at + timedelta(microseconds=1))
    opens = [a for a, _ in intervals if a <= at]
    closes = [b for _, b in intervals if b <= at]
    assert cal.previous_open(at) == opens[-1]
    assert cal.previous_close(at) == closes[-1]


def test_batch_paths_answer_missing_values_with_missing_values() -> None:
    cal = BusinessCalendar.weekly(HOURS, tz="Europe/Berlin")
    t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    h = timedelta(hours=1)
    assert cal.elapsed_many([t, None, t], [t + 3 * h, t, pd.NaT]) == [3 * h, None, None]
    assert cal.add_many([t, None, t], [h, h, None]) == [t + h, None, None]
    column = pd.to_datetime(pd.Series([t, None, t]), utc=True)
    answers = cal.elapsed_many(column, column + pd.Timedelta(hours=2))
    assert answers[0] == answers[2] == np.timedelta64(2, "h")
    assert np.isnat(answers[1])
    starts = np.array(["2025-03-03T09:00", "NaT"], dtype="datetime64[us]")
    added = cal.add_many(starts, np.array([3_600_000_000, 0], dtype="timedelta64[us]"))
    assert added[0] == np.datetime64("2025-03-03T10:00")
    assert np.isnat(added[1])
    assert np.isnat(cal.elapsed_many(starts[1:], starts[1:])).all()  # all missing: no error
