"""Maintenance and blackout windows: recurring spans of wall-clock time in a zone, as sets.

A :class:`Window` is a recurrence (RFC 5545, through ``dateutil.rrule``) of wall-clock
starts in an IANA zone, each lasting a wall-clock duration: every Saturday 22:00 to Sunday
02:00 in Europe/Berlin, or every year from 15 December to 5 January. Windows combine with
``|`` (union), ``&`` (intersection) and ``-`` (difference); :meth:`Schedule.spans` lists the
instants a schedule covers between two instants, as merged, sorted ``(start, end)`` pairs.

**Wall times that do not exist or repeat.** A start or end is the earliest instant at which
the zone's wall clock reads that time or later, as the business calendar reads opening
hours: on the spring-forward night a window ending at 02:00 in Berlin ends at the jump
(03:00 summer time, the same instant), and one starting at 02:30 starts there too; on the
fall-back night a wall time that occurs twice means its first occurrence. So a window keeps
its wall-clock meaning and is never longer than written on the night the clocks change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final

import attrs
from dateutil.rrule import rrule, rrulestr

from itsmcore._time import (
    earliest_instant,
    from_us,
    intersect_spans,
    merge_spans,
    subtract_spans,
    to_us,
    to_utc,
    zone,
)
from itsmcore.errors import DefinitionError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["MAX_SPAN", "Schedule", "Window"]

MAX_SPAN: Final = timedelta(days=3_660)
"""The longest stretch of time one question may cover (about ten years)."""
_US: Final = 1_000_000
_DAY_US: Final = 86_400 * _US
_Span = tuple[int, int]


class Schedule:
    """Spans of time: a window, or windows combined with ``|``, ``&`` and ``-``."""

    name: str

    def spans(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The covered spans that overlap ``[start, end)``, clipped to it, merged, in UTC."""
        lo, hi = _range(start, end)
        return [(from_us(a), from_us(b)) for a, b in self._spans(lo, hi)]

    def contains(self, at: datetime) -> bool:
        """Whether the instant ``at`` is covered."""
        us = to_us(to_utc(at, "at"))
        return bool(self._spans(us, us + 1))

    def covers(self, start: datetime, end: datetime) -> bool:
        """Whether all of ``[start, end)`` is covered."""
        lo, hi = _range(start, end)
        return self._spans(lo, hi) == [(lo, hi)]

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether any of ``[start, end)`` is covered."""
        lo, hi = _range(start, end)
        return bool(self._spans(lo, hi))

    def _spans(self, lo: int, hi: int) -> list[_Span]:
        raise NotImplementedError

    def __or__(self, other: Schedule) -> Schedule:
        return _Combined("union", (self, _schedule(other)))

    def __and__(self, other: Schedule) -> Schedule:
        return _Combined("intersection", (self, _schedule(other)))

    def __sub__(self, other: Schedule) -> Schedule:
        return _Combined("difference", (self, _schedule(other)))


def _schedule(value: object) -> Schedule:
    if not isinstance(value, Schedule):
        raise ValidationError(f"windows combine with windows, not {type(value).__name__}")
    return value


def _range(start: datetime, end: datetime) -> tuple[int, int]:
    lo, hi = to_us(to_utc(start, "start")), to_us(to_utc(end, "end"))
    if hi < lo:
        raise ValidationError(f"end {end.isoformat()} is before start {start.isoformat()}")
    if hi - lo > MAX_SPAN // timedelta(microseconds=1):
        raise ValidationError(f"one question may cover at most {MAX_SPAN.days:,} days")
    return lo, hi


def _rule(value: str | rrule) -> rrule:
    if isinstance(value, rrule):
        start = getattr(value, "_dtstart", None)  # rrule keeps DTSTART privately
        if start is None or start.tzinfo is not None:
            raise DefinitionError("a window's rrule starts at a naive wall-clock time")
        return value
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"a window's rule is an RFC 5545 string or an rrule, got {value!r}")
    try:
        parsed = rrulestr(value, forceset=False)
    except (ValueError, TypeError) as exc:
        raise DefinitionError(f"unreadable recurrence rule {value!r}: {exc}") from None
    if not isinstance(parsed, rrule):
        raise DefinitionError(f"one recurrence rule per window, got {value!r}")
    start = getattr(parsed, "_dtstart", None)
    if start is not None and start.tzinfo is not None:
        raise DefinitionError("give DTSTART as a wall-clock time; the zone is the window's tz")
    return parsed


@attrs.frozen(eq=False)
class Window(Schedule):
    """Wall-clock spans recurring in a zone: each starts at a rule's occurrence.

    Build one with :meth:`weekly`, :meth:`yearly`, :meth:`once` or :meth:`recurring`.
    """

    name: str
    tz: tzinfo
    duration: timedelta
    """Wall-clock length of each span (22:00 + 4 hours ends at 02:00 on the wall)."""
    rule: rrule | None = None
    """An RFC 5545 recurrence of naive wall-clock starts (:meth:`recurring`)."""
    anchor: datetime | None = None
    """A naive wall-clock start: the only one (:meth:`once`) or the first of a weekly or
    yearly series, whose starts are then counted, not iterated from the anchor."""
    every: str | None = None
    """``"week"`` or ``"year"`` for :meth:`weekly` and :meth:`yearly` windows."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.duration, timedelta) or self.duration <= timedelta(0):
            raise DefinitionError(f"window {self.name}: the duration must be positive")

    @classmethod
    def recurring(
        cls, rule: str | rrule, *, duration: timedelta, tz: str | tzinfo, name: str = "window"
    ) -> Window:
        """From an RFC 5545 rule whose ``DTSTART`` is a wall-clock time.

        For example ``"DTSTART:20250104T220000"`` and ``"RRULE:FREQ=WEEKLY;BYDAY=SA"`` on
        two lines.
        """
        return cls(name, _zone(tz), _duration(duration), rule=_rule(rule))

    @classmethod
    def weekly(
        cls,
        day: str,
        start: str,
        end: str,
        *,
        tz: str | tzinfo,
        name: str = "maintenance",
        since: datetime | None = None,
    ) -> Window:
        """Every week from ``day`` ``start`` to ``end``.

        An end at or before the start is the next day's:
        ``Window.weekly("sat", "22:00", "02:00", tz="Europe/Berlin")``.
        """
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        key = day.strip().lower()[:3] if isinstance(day, str) else None
        if key not in days:
            raise DefinitionError(f"unknown day {day!r}; use one of {', '.join(days)}")
        a, b = _clock(start), _clock(end)
        length = b - a if b > a else b - a + timedelta(days=1)
        origin = since.replace(tzinfo=None) if since is not None else datetime(1970, 1, 1)  # noqa: DTZ001 - wall clock
        first = origin + timedelta(days=(days.index(key) - origin.weekday()) % 7)
        anchor = datetime.combine(first.date(), datetime.min.time()) + a
        return cls(name, _zone(tz), length, anchor=anchor, every="week")

    @classmethod
    def yearly(
        cls,
        start: tuple[int, int],
        end: tuple[int, int],
        *,
        tz: str | tzinfo,
        name: str = "blackout",
    ) -> Window:
        """Every year from the (month, day) ``start`` 00:00 to the ``end`` 00:00.

        An end before the start is the next year's: a freeze ``yearly((12, 15), (1, 5),
        tz=...)``.
        """
        try:
            dtstart = datetime(1970, *start)  # noqa: DTZ001 - wall clock
            finish = datetime(1970, *end)  # noqa: DTZ001 - wall clock
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"yearly windows take (month, day) pairs: {exc}") from None
        if finish <= dtstart:
            finish = finish.replace(year=1971)
        if (dtstart.month, dtstart.day) == (2, 29):
            raise DefinitionError("a yearly window cannot start on 29 February")
        return cls(name, _zone(tz), finish - dtstart, anchor=dtstart, every="year")

    @classmethod
    def once(
        cls, start: datetime, end: datetime, *, tz: str | tzinfo | None = None,
        name: str = "window",
    ) -> Window:  # fmt: skip
        """A single span.

        Aware ``start``/``end`` are instants; naive ones are wall-clock times in ``tz``.
        """
        if start.tzinfo is not None and end.tzinfo is not None:
            lo, hi = to_utc(start, "start"), to_utc(end, "end")
            if hi <= lo:
                raise DefinitionError(f"window {name}: its end is not after its start")
            return cls(name, UTC, hi - lo, anchor=lo.replace(tzinfo=None))
        if tz is None or start.tzinfo is not None or end.tzinfo is not None:
            raise DefinitionError(f"window {name}: two aware instants, or naive times and tz")
        if end <= start:
            raise DefinitionError(f"window {name}: its end is not after its start")
        return cls(name, _zone(tz), end - start, anchor=start)

    def _spans(self, lo: int, hi: int) -> list[_Span]:
        tz = self.tz
        # Wall-clock bounds wide enough for any offset (zones stay within a day of UTC).
        wall_lo = from_us(lo - self.duration // timedelta(microseconds=1) - 2 * _DAY_US)
        wall_hi = from_us(hi + 2 * _DAY_US)
        after, before = wall_lo.replace(tzinfo=None), wall_hi.replace(tzinfo=None)
        out: list[_Span] = []
        for wall in self._starts(after, before):
            a, b = earliest_instant(wall, tz), earliest_instant(wall + self.duration, tz)
            if a < hi and b > lo and a < b:
                out.append((max(a, lo), min(b, hi)))
        return merge_spans(sorted(out))

    def _starts(self, after: datetime, before: datetime) -> Iterable[datetime]:
        """The wall-clock starts from ``after`` to ``before`` (naive), in order."""
        anchor = self.anchor
        if self.rule is not None:
            found: list[datetime] = self.rule.between(after, before, inc=True)
            return found
        if anchor is None:
            return ()
        if self.every == "week":
            week = timedelta(days=7)
            first = anchor + week * max(0, -((anchor - after) // week))
            return _steps(first, before, week)
        if self.every == "year":
            return [
                anchor.replace(year=year)
                for year in range(max(after.year - 1, 1), min(before.year, 9998) + 1)
                if after <= anchor.replace(year=year) <= before
            ]
        return (anchor,) if after <= anchor <= before else ()


def _steps(first: datetime, last: datetime, step: timedelta) -> Iterator[datetime]:
    at = first
    while at <= last:
        yield at
        at += step


def _zone(tz: str | tzinfo) -> tzinfo:
    try:
        return zone(tz)
    except ValidationError as exc:
        raise DefinitionError(str(exc)) from None


def _duration(value: object) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise DefinitionError(f"a window's duration is a positive timedelta, got {value!r}")
    return value


def _clock(text: str) -> timedelta:
    try:
        hours, minutes = (int(p) for p in text.split(":"))
    except (ValueError, AttributeError):
        raise DefinitionError(f"times are HH:MM, got {text!r}") from None
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise DefinitionError(f"times are 00:00 to 24:00, got {text!r}")
    return timedelta(hours=hours, minutes=minutes)


@attrs.frozen(eq=False)
class _Combined(Schedule):
    how: str
    parts: tuple[Schedule, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        sign = {"union": " | ", "intersection": " & ", "difference": " - "}[self.how]
        return "(" + sign.join(p.name for p in self.parts) + ")"

    def _spans(self, lo: int, hi: int) -> list[_Span]:
        first, second = (p._spans(lo, hi) for p in self.parts)  # noqa: SLF001 - same family
        if self.how == "union":
            return merge_spans(sorted(first + second))
        if self.how == "intersection":
            return intersect_spans(first, second)
        return subtract_spans(first, second)
