"""A brute-force business calendar: slow, simple, and written without looking at the real one.

It decides whether each UTC minute is open by reading the wall clock, and counts minutes.
The rule it implements for schedule boundaries is the documented one: a boundary at wall
time T on date D is the earliest instant at which the zone's clocks show T or later. It
finds that instant by stepping through UTC minutes, not by any offset arithmetic.
Everything is minute-aligned: schedules, holidays, closures and the instants asked about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hours(hours: Mapping[str, str]) -> dict[int, list[tuple[int, int]]]:
    """Weekday -> ``(start, end)`` minutes after midnight; an end past 1440 spills over."""
    out: dict[int, list[tuple[int, int]]] = {d: [] for d in range(7)}
    for key, value in hours.items():
        first, _, last = key.partition("-")
        a = DAYS.index(first)
        b = DAYS.index(last) if last else a
        days = [(a + k) % 7 for k in range((b - a) % 7 + 1)]
        for piece in filter(None, (p.strip() for p in value.split(","))):
            start_text, end_text = piece.split("-")
            start, end = minutes(start_text), minutes(end_text)
            if end <= start:
                end += 1440  # a shift past midnight belongs to the day it starts
            for day in days:
                out[day].append((start, end))
    return out


def minutes(text: str) -> int:
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


class Oracle:
    """``open(t)`` by reading the wall clock; ``elapsed``/``add`` by counting minutes."""

    def __init__(
        self,
        hours: Mapping[str, str],
        tz: str,
        holidays: Iterable[date] = (),
        closures: Iterable[tuple[datetime, datetime]] = (),
        extra_openings: Iterable[tuple[datetime, datetime]] = (),
    ) -> None:
        self.week = parse_hours(hours)
        self.zone = ZoneInfo(tz)
        self.holidays = set(holidays)
        self.closures = [(a.astimezone(UTC), b.astimezone(UTC)) for a, b in closures]
        self.extras = [(a.astimezone(UTC), b.astimezone(UTC)) for a, b in extra_openings]
        self.first_reach = lru_cache(maxsize=None)(self._first_reach)

    def _first_reach(self, day: date, mins: int) -> datetime:
        """The earliest UTC minute at which the wall clock shows ``day`` + ``mins`` or later."""
        wall = datetime(day.year, day.month, day.day) + timedelta(minutes=mins)
        # No zone is ahead of UTC by more than 14 hours, so this instant's wall time is earlier.
        t = (wall - timedelta(hours=14)).replace(tzinfo=UTC)
        while t.astimezone(self.zone).replace(tzinfo=None) < wall:
            t += MINUTE
        return t

    def scheduled(self, t: datetime) -> bool:
        local_day = t.astimezone(self.zone).date()
        for day in (local_day - timedelta(days=1), local_day):
            if day in self.holidays:
                continue
            for start, end in self.week[day.weekday()]:
                if self.first_reach(day, start) <= t < self.first_reach(day, end):
                    return True
        return False

    def open(self, t: datetime) -> bool:
        t = t.astimezone(UTC)
        if any(a <= t < b for a, b in self.closures):
            return False
        return self.scheduled(t) or any(a <= t < b for a, b in self.extras)

    def elapsed(self, a: datetime, b: datetime) -> timedelta:
        if b < a:
            return -self.elapsed(b, a)
        count = 0
        t = a.astimezone(UTC)
        while t < b:
            count += self.open(t)
            t += MINUTE
        return count * MINUTE

    def add(
        self, a: datetime, d: timedelta, *, limit: timedelta = timedelta(days=30)
    ) -> datetime | None:
        """The earliest instant after ``d`` of open time (latest, counting back); ``None``
        when more than ``limit`` of wall time would have to be walked."""
        if d % MINUTE:
            msg = "the oracle counts whole minutes"
            raise ValueError(msg)
        need = d // MINUTE
        t = a.astimezone(UTC)
        if need == 0:
            return a
        end = t + limit if need > 0 else t - limit
        count = 0
        while t != end:
            if need > 0:
                count += self.open(t)
                t += MINUTE
                if count == need:
                    return t
            else:
                t -= MINUTE
                count += self.open(t)
                if count == -need:
                    return t
        return None

    def intervals(self, a: datetime, b: datetime) -> list[tuple[datetime, datetime]]:
        """Maximal open stretches within ``[a, b)``."""
        out: list[tuple[datetime, datetime]] = []
        t = a.astimezone(UTC)
        while t < b:
            if self.open(t):
                if out and out[-1][1] == t:
                    out[-1] = (out[-1][0], t + MINUTE)
                else:
                    out.append((t, t + MINUTE))
            t += MINUTE
        return out
