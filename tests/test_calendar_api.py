"""BusinessCalendar behaviour beyond the arithmetic: batches, pickling, threads, repr, limits."""

from __future__ import annotations

import pickle
import random
import threading
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dateutil.tz
import holidays
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsmcore import BusinessCalendar, DefinitionError, ValidationError

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)


def office() -> BusinessCalendar:
    return BusinessCalendar.weekly(
        {"mon-fri": "08:00-12:00,13:00-17:00"},
        tz="Europe/Berlin",
        holidays=holidays.country_holidays("DE", subdiv="BE"),
    )


def random_cases(n: int, seed: int = 7) -> tuple[list[datetime], list[datetime], list[timedelta]]:
    rnd = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=BERLIN)
    starts = [base + timedelta(seconds=rnd.randrange(3 * 365 * 86400)) for _ in range(n)]
    ends = [s + timedelta(seconds=rnd.randrange(-20 * 86400, 60 * 86400)) for s in starts]
    durations = [timedelta(seconds=rnd.randrange(-30 * 3600, 90 * 3600)) for _ in range(n)]
    return starts, ends, durations


def test_batches_of_datetimes_equal_the_scalar_answers() -> None:
    cal = office()
    starts, ends, durations = random_cases(500)
    assert cal.elapsed_many(starts, ends) == [cal.elapsed(s, e) for s, e in zip(starts, ends)]
    added = cal.add_many(starts, durations)
    assert added == [cal.add(s, d) for s, d in zip(starts, durations)]
    # Each answer stays in its start's zone, and a zero duration returns the start itself.
    assert all(a.tzinfo is s.tzinfo for a, s in zip(added, starts))
    assert cal.add_many(starts[:1], [timedelta(0)])[0] is starts[0]


def test_batches_of_numpy_and_pandas_arrays_equal_the_scalar_answers() -> None:
    pd = pytest.importorskip("pandas")
    cal = office()
    starts, ends, durations = random_cases(500, seed=11)
    start_col = pd.Series(pd.DatetimeIndex(starts))
    end_col = pd.Series(pd.DatetimeIndex(ends))
    got = cal.elapsed_many(start_col, end_col)
    assert got.dtype == np.dtype("timedelta64[us]")
    assert got.tolist() == [cal.elapsed(s, e) for s, e in zip(starts, ends)]
    utc = np.array([s.astimezone(UTC).replace(tzinfo=None) for s in starts], "datetime64[us]")
    added = cal.add_many(utc, np.array(durations, dtype="timedelta64[us]"))
    assert added.dtype == np.dtype("datetime64[us]")
    expected = [
        cal.add(s, d).astimezone(UTC).replace(tzinfo=None) for s, d in zip(starts, durations)
    ]
    assert added.tolist() == expected
    with pytest.raises(ValidationError, match="tz_localize"):
        cal.elapsed_many(pd.Series(pd.DatetimeIndex([datetime(2025, 1, 1)])), end_col[:1])


def test_batch_inputs_are_checked() -> None:
    cal = office()
    aware = datetime(2025, 3, 3, 9, tzinfo=BERLIN)
    with pytest.raises(ValidationError, match=r"ends\[1\].*naive"):
        cal.elapsed_many([aware, aware], [aware, datetime(2025, 3, 3)])
    with pytest.raises(ValidationError, match="pairs"):
        cal.elapsed_many([aware], [aware, aware])
    with pytest.raises(ValidationError, match="timedelta, got int"):
        cal.add_many([aware], [3600])
    assert cal.elapsed_many([], []) == []
    assert cal.add_many([], []) == []


def test_a_calendar_pickles_for_worker_processes_and_keeps_answering() -> None:
    cal = office()
    start = datetime(2025, 4, 17, 15, tzinfo=BERLIN)
    expected = cal.add(start, 4 * HOUR)  # warms the index, which must not be shipped
    clone = pickle.loads(pickle.dumps(cal))
    assert clone == cal
    assert clone.add(start, 4 * HOUR) == expected == datetime(2025, 4, 22, 10, tzinfo=BERLIN)


def test_threads_growing_the_index_concurrently_agree_with_a_fresh_calendar() -> None:
    cal = office()
    starts, ends, _ = random_cases(300, seed=3)
    # Spread the questions over two centuries, both ways, so the threads keep growing the index.
    starts = [s.replace(year=s.year + 50 * (k % 5 - 2)) for k, s in enumerate(starts)]
    ends = [s + (e - s0) for s, e, s0 in zip(starts, ends, random_cases(300, seed=3)[0])]
    results: dict[int, list[timedelta]] = {}

    def work(k: int) -> None:
        order = list(range(len(starts)))
        random.Random(k).shuffle(order)
        answers = {i: cal.elapsed(starts[i], ends[i]) for i in order}
        results[k] = [answers[i] for i in range(len(starts))]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = office()
    expected = [fresh.elapsed(s, e) for s, e in zip(starts, ends)]
    assert all(results[k] == expected for k in range(4))


def test_hours_and_repr_round_trip_the_definition() -> None:
    hours = {"mon-fri": "08:00-12:00,13:00-17:00", "sat": "22:00-06:00", "sun": "10:00-24:00"}
    cal = BusinessCalendar.weekly(hours, tz="Europe/Berlin", holidays=[date(2025, 12, 25)])
    assert cal.hours() == hours
    assert BusinessCalendar.weekly(cal.hours(), tz="Europe/Berlin") == BusinessCalendar.weekly(
        hours, tz="Europe/Berlin"
    )
    assert repr(cal) == (
        "BusinessCalendar.weekly({'mon-fri': '08:00-12:00,13:00-17:00', 'sat': '22:00-06:00', "
        "'sun': '10:00-24:00'}, tz='Europe/Berlin', holidays=<1>)"
    )
    assert "holidays=DE" in repr(office())


def test_lazy_holidays_work_in_any_year() -> None:
    cal = office()
    # Good Friday and Easter Monday of a year nobody pre-loaded: 2087 (Easter Sunday is 20 April).
    # Thursday 15:00-17:00 gives two hours, the third is Tuesday 08:00-09:00.
    thursday = datetime(2087, 4, 17, 15, tzinfo=BERLIN)
    assert cal.add(thursday, 3 * HOUR) == datetime(2087, 4, 22, 9, tzinfo=BERLIN)


def test_no_fixed_horizon_but_the_datetime_range_is_refused_clearly() -> None:
    cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="UTC")
    far = datetime(9000, 1, 4, 9, tzinfo=UTC)
    assert cal.elapsed(far, far + timedelta(days=7)) == 40 * HOUR
    with pytest.raises(ValidationError, match="9999"):
        cal.add(datetime(9999, 12, 1, tzinfo=UTC), timedelta(days=5000))
    with pytest.raises(ValidationError, match="between years"):
        cal.elapsed(datetime(1, 1, 1, tzinfo=UTC), far)


def test_bad_arguments_are_typed_errors() -> None:
    cal = office()
    aware = datetime(2025, 3, 3, 9, tzinfo=BERLIN)
    with pytest.raises(ValidationError, match="timedelta"):
        cal.add(aware, 3600)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be a datetime"):
        cal.is_open(date(2025, 3, 3))  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="holidays must be dates"):
        BusinessCalendar.weekly({"mon": "09:00-17:00"}, tz="UTC", holidays=["3 March"])
    with pytest.raises(DefinitionError, match="wed"):
        BusinessCalendar.weekly({"mon-fri": "09:00-17:00", "wed": "10:00-11:00"}, tz="UTC")


# Zone conversions take a shortcut for plain datetimes (wall clocks subtracted within one
# zone, see itsmcore._time.wall_epoch). Every kind of tzinfo and datetime a user may hold must
# give the answers of the same instants in UTC.
ZONE_KINDS = {
    "zoneinfo": lambda: BERLIN,
    "dateutil (unhashable)": lambda: dateutil.tz.gettz("Europe/Berlin"),
    "fixed offset, a new object each time": lambda: timezone(timedelta(hours=5, minutes=30)),
    "utc": lambda: UTC,
}


@pytest.mark.parametrize("kind", ZONE_KINDS)
@given(
    instant=st.datetimes(datetime(2024, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC)),
    span=st.timedeltas(-timedelta(days=20), timedelta(days=40)),
    fold=st.sampled_from([0, 1]),
)
def test_every_kind_of_zone_converts_exactly(
    kind: str, instant: datetime, span: timedelta, fold: int
) -> None:
    cal = office()
    tz = ZONE_KINDS[kind]()
    start = instant.astimezone(tz)
    # The same wall time with the other fold: the second 02:30 of an autumn night, if any.
    start = start.replace(fold=fold).astimezone(UTC).astimezone(tz)
    end = (start.astimezone(UTC) + span).astimezone(ZONE_KINDS[kind]())
    utc_start, utc_end = start.astimezone(UTC), end.astimezone(UTC)
    assert cal.elapsed(start, end) == cal.elapsed(utc_start, utc_end)
    assert cal.is_open(start) == cal.is_open(utc_start)
    added = cal.add(start, span)
    assert added.astimezone(UTC) == cal.add(utc_start, span)
    assert added.tzinfo is start.tzinfo
    assert added.utcoffset() == added.astimezone(UTC).astimezone(tz).utcoffset()
    assert cal.elapsed_many([start], [end]) == [cal.elapsed(utc_start, utc_end)]
    many = cal.add_many([start, start], [span, span])
    assert [a.astimezone(UTC) for a in many] == [added.astimezone(UTC)] * 2


def test_datetime_subclasses_and_mixed_zones_convert_exactly() -> None:
    cal = office()
    starts, ends, durations = random_cases(200)
    # pandas Timestamps subtract in UTC even within one zone: they must not take the shortcut.
    stamps = [pd.Timestamp(s) for s in starts]
    mixed = [s.astimezone(UTC) if k % 3 else s for k, s in enumerate(starts)]
    expected = [cal.elapsed(s.astimezone(UTC), e.astimezone(UTC)) for s, e in zip(starts, ends)]
    assert [cal.elapsed(s, e) for s, e in zip(stamps, ends)] == expected
    assert cal.elapsed_many(stamps, ends) == expected
    assert cal.elapsed_many(mixed, ends) == expected
    added = [cal.add(s.astimezone(UTC), d) for s, d in zip(starts, durations)]
    assert [cal.add(s, d) for s, d in zip(stamps, durations)] == added
    assert cal.add_many(mixed, durations) == added
    assert [a.tzinfo for a in cal.add_many(mixed, durations)] == [s.tzinfo for s in mixed]
