"""Business time: the worked examples of the domain notes, and bad input, as tables."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest

from calendar_oracle import Oracle
from itsmcore import BusinessCalendar, DefinitionError, ValidationError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
H = timedelta(hours=1)
M = timedelta(minutes=1)

NINE_FIVE = {"mon-fri": "09:00-17:00"}
LUNCH = {"mon-fri": "08:00-12:00,13:00-17:00"}
TEN_SIX = {"mon-fri": "10:00-18:00"}
NIGHT = {"mon-fri": "22:00-06:00"}
ALWAYS = {"mon-sun": "00:00-24:00"}
EASTER_2025 = [date(2025, 4, 18), date(2025, 4, 21)]


def b(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)  # type: ignore[misc]


def lh(*args: int) -> datetime:
    return datetime(*args, tzinfo=LORD_HOWE)  # type: ignore[misc]


# ../shared/domain/sla.md, "Worked examples": (hours, zone, holidays, start, duration, answer)
ADD_EXAMPLES = [
    ("fri evening + 1h30 (New York)", {"mon-fri": "08:00-17:00"}, "America/New_York", [],
     ny(2014, 12, 12, 21), 90 * M, ny(2014, 12, 15, 9, 30)),
    ("8 h ends at closing, not next opening", NINE_FIVE, "Europe/Berlin", [],
     b(2025, 3, 3, 9), 8 * H, b(2025, 3, 3, 17)),
    ("16:00 + 2 h", NINE_FIVE, "Europe/Berlin", [], b(2025, 3, 3, 16), 2 * H, b(2025, 3, 4, 10)),
    ("across lunch", LUNCH, "Europe/Berlin", [], b(2025, 3, 3, 11, 30), H, b(2025, 3, 3, 13, 30)),
    ("over Easter", NINE_FIVE, "Europe/Berlin", EASTER_2025,
     b(2025, 4, 17, 15), 4 * H, b(2025, 4, 22, 11)),
    ("exactly to closing", TEN_SIX, "Europe/Berlin", [],
     b(2025, 3, 3, 17), 3600 * timedelta(seconds=1), b(2025, 3, 3, 18)),
    ("one second past closing", TEN_SIX, "Europe/Berlin", [],
     b(2025, 3, 3, 17), 3601 * timedelta(seconds=1), datetime(2025, 3, 4, 10, 0, 1, tzinfo=BERLIN)),
    ("night shift over the weekend", NIGHT, "Europe/Berlin", [],
     b(2025, 3, 7, 23), 8 * H, b(2025, 3, 10, 23)),
    ("24x7 across spring forward", ALWAYS, "Europe/Berlin", [],
     datetime(2025, 3, 30, 0, 30, tzinfo=BERLIN), 4 * H, b(2025, 3, 30, 5, 30)),
    ("24x7 across fall back", ALWAYS, "Europe/Berlin", [],
     b(2025, 10, 26, 0, 30), 4 * H, b(2025, 10, 26, 3, 30)),
    ("24x7 New York spring", ALWAYS, "America/New_York", [],
     ny(2025, 3, 9), 3 * H, ny(2025, 3, 9, 4)),
    ("24x7 New York fall, the second 01:30", ALWAYS, "America/New_York", [],
     ny(2025, 11, 2, 0, 30), 2 * H, datetime(2025, 11, 2, 6, 30, tzinfo=UTC)),
]  # fmt: skip

ELAPSED_EXAMPLES = [
    ("lunch break", LUNCH, "Europe/Berlin", b(2025, 3, 3, 11), b(2025, 3, 3, 14), 2 * H),
    ("24x7 spring day is 23 h", ALWAYS, "Europe/Berlin", b(2025, 3, 30), b(2025, 3, 31), 23 * H),
    ("24x7 fall day is 25 h", ALWAYS, "Europe/Berlin", b(2025, 10, 26), b(2025, 10, 27), 25 * H),
    ("9-17 every day is 8 h on DST day", {"mon-sun": "09:00-17:00"}, "Europe/Berlin",
     b(2025, 3, 30), b(2025, 3, 31), 8 * H),
    ("Lord Howe autumn: 24 h 30", ALWAYS, "Australia/Lord_Howe",
     lh(2025, 4, 6), lh(2025, 4, 7), 24 * H + 30 * M),
    ("Lord Howe spring: 23 h 30", ALWAYS, "Australia/Lord_Howe",
     lh(2025, 10, 5), lh(2025, 10, 6), 23 * H + 30 * M),
    # The documented rule for wall times in a gap or a fold.
    ("a 02:30 start in the spring gap opens at the jump", {"sun": "02:30-05:00"},
     "Europe/Berlin", b(2025, 3, 30), b(2025, 3, 31), 2 * H),
    ("a 02:30 start in the fold is its first occurrence", {"sun": "02:30-05:00"},
     "Europe/Berlin", b(2025, 10, 26), b(2025, 10, 27), 3 * H + 30 * M),
    ("a 02:30 end in the fold is its first occurrence", {"sun": "01:00-02:30"},
     "Europe/Berlin", b(2025, 10, 26), b(2025, 10, 27), 90 * M),
    ("a night shift across spring forward counts real time", {"sat": "22:00-06:00"},
     "Europe/Berlin", b(2025, 3, 29), b(2025, 3, 31), 7 * H),
]  # fmt: skip


@pytest.mark.parametrize(
    ("hours", "tz", "days_off", "start", "duration", "answer"),
    [case[1:] for case in ADD_EXAMPLES],
    ids=[case[0] for case in ADD_EXAMPLES],
)
def test_worked_examples_of_add(
    hours: dict[str, str],
    tz: str,
    days_off: list[date],
    start: datetime,
    duration: timedelta,
    answer: datetime,
) -> None:
    calendar = BusinessCalendar.weekly(hours, tz=tz, holidays=days_off)
    # Compared in UTC: Python never calls a wall time in a DST fold (fold=1) equal to a
    # datetime in another zone, even for the same instant (PEP 495).
    assert calendar.add(start, duration).astimezone(UTC) == answer.astimezone(UTC)
    if duration % M == timedelta(0):  # the oracle counts whole minutes
        # The oracle agrees: the examples check it as much as the calendar.
        assert Oracle(hours, tz, days_off).add(start, duration) == answer


@pytest.mark.parametrize(
    ("hours", "tz", "start", "end", "answer"),
    [case[1:] for case in ELAPSED_EXAMPLES],
    ids=[case[0] for case in ELAPSED_EXAMPLES],
)
def test_worked_examples_of_elapsed(
    hours: dict[str, str], tz: str, start: datetime, end: datetime, answer: timedelta
) -> None:
    assert BusinessCalendar.weekly(hours, tz=tz).elapsed(start, end) == answer
    assert Oracle(hours, tz).elapsed(start, end) == answer


def test_answers_keep_the_zone_of_the_argument() -> None:
    calendar = BusinessCalendar.always(tz="Europe/Berlin")
    answer = calendar.add(datetime(2025, 3, 30, 0, 30, tzinfo=BERLIN), 4 * H)
    assert answer.isoformat() == "2025-03-30T05:30:00+02:00"
    fall = BusinessCalendar.always(tz="America/New_York").add(ny(2025, 11, 2, 0, 30), 2 * H)
    assert fall.isoformat() == "2025-11-02T01:30:00-05:00"
    utc = calendar.add(datetime(2025, 3, 29, 23, 30, tzinfo=UTC), H)
    assert utc.tzinfo is UTC


def test_counting_backwards_ends_at_an_opening() -> None:
    calendar = BusinessCalendar.weekly(NINE_FIVE, tz="Europe/Berlin")
    assert calendar.add(b(2025, 3, 4, 9), -8 * H) == b(2025, 3, 3, 9)
    assert calendar.add(b(2025, 3, 4, 10), -2 * H) == b(2025, 3, 3, 16)
    assert calendar.add(b(2025, 3, 8, 12), timedelta(0)) == b(2025, 3, 8, 12)


def test_public_holidays_from_the_holidays_package() -> None:
    berlin_days = holidays.country_holidays("DE", subdiv="BE")
    calendar = BusinessCalendar.weekly(NINE_FIVE, tz="Europe/Berlin", holidays=berlin_days)
    assert calendar.add(b(2025, 4, 17, 15), 4 * H) == b(2025, 4, 22, 11)  # Easter
    # Christmas 2025: 24th is a Wednesday (a working day), 25th and 26th are holidays.
    assert calendar.add(b(2025, 12, 24, 16), 2 * H) == b(2025, 12, 29, 10)
    # 8 March (International Women's Day) is a holiday in Berlin only.
    assert not calendar.is_open(b(2027, 3, 8, 10))
    germany = BusinessCalendar.weekly(
        NINE_FIVE, tz="Europe/Berlin", holidays=holidays.country_holidays("DE")
    )
    assert germany.is_open(b(2027, 3, 8, 10))


def test_closures_and_extra_openings() -> None:
    calendar = BusinessCalendar.weekly(
        NINE_FIVE,
        tz="Europe/Berlin",
        closures=[(b(2025, 3, 3, 12), b(2025, 3, 3, 14))],
        extra_openings=[
            (b(2025, 3, 8, 10), b(2025, 3, 8, 14)),
            (b(2025, 3, 3, 13), b(2025, 3, 3, 18)),
        ],
    )
    # Monday: 9-12 and 14-18 (the closure wins over the extra opening, which runs to 18:00).
    assert calendar.elapsed(b(2025, 3, 3), b(2025, 3, 4)) == 7 * H
    assert calendar.elapsed(b(2025, 3, 8), b(2025, 3, 9)) == 4 * H
    assert calendar.next_open(b(2025, 3, 3, 12, 30)) == b(2025, 3, 3, 14)
    assert calendar.next_close(b(2025, 3, 3, 15)) == b(2025, 3, 3, 18)


def test_an_overnight_shift_belongs_to_the_day_it_starts() -> None:
    friday_holiday = BusinessCalendar.weekly(NIGHT, tz="Europe/Berlin", holidays=[date(2025, 3, 7)])
    # Friday's shift (Fri 22:00 - Sat 06:00) is gone; Thursday's still ends Friday 06:00.
    assert friday_holiday.elapsed(b(2025, 3, 7), b(2025, 3, 9)) == 6 * H
    saturday_holiday = BusinessCalendar.weekly(
        NIGHT, tz="Europe/Berlin", holidays=[date(2025, 3, 8)]
    )
    assert saturday_holiday.elapsed(b(2025, 3, 7, 12), b(2025, 3, 9)) == 8 * H


NAIVE = datetime(2025, 3, 3, 9)
AWARE = b(2025, 3, 3, 9)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.elapsed(NAIVE, AWARE),
        lambda c: c.elapsed(AWARE, NAIVE),
        lambda c: c.add(NAIVE, H),
        lambda c: c.is_open(NAIVE),
        lambda c: c.next_open(NAIVE),
        lambda c: c.next_close(NAIVE),
        lambda c: c.open_intervals(NAIVE, AWARE),
        lambda c: c.elapsed_many([AWARE], [NAIVE]),
        lambda c: c.add_many([NAIVE], [H]),
    ],
)
def test_naive_datetimes_are_refused_everywhere(call: Any) -> None:
    with pytest.raises(ValidationError, match="naive"):
        call(BusinessCalendar.weekly(NINE_FIVE, tz="Europe/Berlin"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": {"mo": "09:00-17:00"}}, "unknown day key 'mo'"),
        ({"hours": {"monday-x": "09:00-17:00"}}, "unknown day key 'monday-x'"),
        ({"hours": {"mon": "9-17"}}, "'9' is not a time of day"),
        ({"hours": {"mon": "25:00-26:00"}}, "'25:00' is not a time of day"),
        ({"hours": {"mon": "09:60-17:00"}}, "'09:60' is not a time of day"),
        ({"hours": {"mon": "24:00-02:00"}}, "24:00 can only end"),
        ({"hours": {"mon": "09:00-09:00"}}, "'09:00-09:00' is empty"),
        ({"hours": {"mon": "09:00"}}, "not an interval"),
        ({"hours": {"mon": "08:00-12:00,11:00-13:00"}}, "mon: 08:00-12:00 overlaps 11:00-13:00"),
        ({"hours": {"mon": "22:00-06:00", "tue": "05:00-10:00"}}, "overlaps tue 05:00-10:00"),
        ({"hours": {"mon-fri": "09:00-17:00", "wed": "10:00-12:00"}}, "wed is named twice"),
        ({"hours": {}}, "no open time at all"),
        ({"hours": {"mon-sun": ""}}, "no open time at all"),
        ({"hours": {"mon": 9}}, "must be"),
        ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"closures": [(b(2025, 3, 3, 12), b(2025, 3, 3, 11))]}, "ends at or before"),
        ({"closures": [(NAIVE, AWARE)]}, "naive"),
        ({"extra_openings": [(AWARE,)]}, "not an aware"),
        ({"holidays": [3.5]}, "holidays must be dates"),
    ],
)
def test_definitions_that_cannot_work_are_refused(kwargs: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {"hours": NINE_FIVE, "tz": "Europe/Berlin"} | kwargs
    hours = spec.pop("hours")
    with pytest.raises(DefinitionError, match=message) as err:
        BusinessCalendar.weekly(hours, **spec)
    assert isinstance(err.value, ValueError)
