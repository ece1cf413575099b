"""Business time: weekly opening hours in an IANA time zone, minus holidays and closures.

A ``BusinessCalendar`` turns wall-clock opening hours into open intervals on the UTC time line
and counts time over them exactly, in integer microseconds. The intervals are expanded lazily
around the instants asked about and indexed by cumulative sums, so ``elapsed`` and ``add`` cost
two binary searches whatever the span: a 90-day question is as cheap as a one-hour one.

Wall-clock rule at DST changes: a schedule boundary at wall time *T* on date *D* is the earliest
instant at which the zone's clocks show *T* or later. A time the clocks skip (spring gap) maps to
the instant of the jump; a time they show twice (autumn fold) maps to its first occurrence. A
09:00-17:00 day therefore counts 8 h on every date, while a 24x7 day counts the real 23 h or 25 h.
"""

from __future__ import annotations

import itertools
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise, repeat
from operator import attrgetter, floordiv, is_, sub
from typing import Any, Final, NamedTuple, overload

import attrs

from itsmcore._time import (
    EPOCH,
    MICROSECOND,
    US_PER_SECOND,
    WALL_EPOCHS,
    earliest_instant,
    from_us,
    merge_spans,
    require_aware,
    since_epoch,
    subtract_spans,
    to_us,
    wall_epoch,
    zone,
)
from itsmcore.errors import DefinitionError, ValidationError

__all__ = ["BusinessCalendar", "Ruler"]

_DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_S: Final = 86_400
_WEEK_US: Final = 7 * _DAY_S * US_PER_SECOND
_ZERO: Final = timedelta(0)
_TIME_RE: Final = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
# The instants business time is counted between: what a datetime can represent, less a few
# days of slack so that expanding the local days around an instant never overflows.
_MIN_US: Final = (datetime(1, 1, 10, tzinfo=UTC) - EPOCH) // MICROSECOND
_MAX_US: Final = (datetime(9999, 12, 20, tzinfo=UTC) - EPOCH) // MICROSECOND
MAX_SPAN: Final = timedelta(days=36_525)
"""The longest stretch of time a question answered by expansion may cover: a hundred years.

``elapsed`` and ``add`` over any span within the years 1 to 9999 are arithmetic (whole
years of the weekly pattern plus exact windows around holidays and offset changes). What
still walks open intervals one by one is bounded by this span and refused with a
``ValidationError`` beyond it: ``open_intervals``, the searches (``next_open``,
``next_close`` ... on a calendar that does not change for a century), the working-day
counts, and calendars whose holidays can only be asked one date at a time (a ``holidays``
mapping or a rule of the caller's)."""
_MAX_SPAN_US: Final = MAX_SPAN // MICROSECOND
_LONG_US: Final = 3_653 * _DAY_S * US_PER_SECOND
"""Questions spanning more than ten years are answered by arithmetic (see ``_Long``), not by
expanding and indexing every open interval in between."""
_MAX_CACHED_US: Final = 2 * _MAX_SPAN_US  # all of a calendar's cached segments together
_MAX_SEGMENTS: Final = 16

Interval = tuple[int, int]
"""A half-open interval ``[start, end)`` in microseconds since the epoch."""

DayTemplate = tuple[tuple[int, int], ...]
"""One weekday's opening hours: ``(start, end)`` seconds after local midnight; end may pass 24 h."""


# --------------------------------------------------------------------------- definition parsing


def _parse_days(key: object) -> list[int]:
    """Weekday numbers (Monday = 0) named by a key such as ``"mon"`` or ``"fri-mon"``."""
    if not isinstance(key, str):
        raise DefinitionError(f"day key must be a string such as 'mon-fri', got {key!r}")
    parts = [p.strip().lower() for p in key.split("-")]
    if len(parts) > 2 or any(p not in _DAY_NAMES for p in parts):
        raise DefinitionError(
            f"unknown day key {key!r}; use {', '.join(_DAY_NAMES)} or a range such as 'mon-fri'"
        )
    first, last = _DAY_NAMES.index(parts[0]), _DAY_NAMES.index(parts[-1])
    return [(first + k) % 7 for k in range((last - first) % 7 + 1)]


def _parse_time(text: str, *, end: bool, where: str) -> int:
    """Seconds after midnight of ``HH:MM`` or ``HH:MM:SS``; ``24:00`` only as an end."""
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        raise DefinitionError(f"{where}: {text.strip()!r} is not a time of day like '09:00'")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if minutes > 59 or seconds > 59 or total > _DAY_S:
        raise DefinitionError(f"{where}: {text.strip()!r} is not a time of day (00:00-24:00)")
    if total == _DAY_S and not end:
        raise DefinitionError(f"{where}: 24:00 can only end an interval, not start one")
    return total


def _parse_day_hours(value: object, *, where: str) -> list[tuple[int, int]]:
    """The intervals of one day entry: ``"08:00-12:00,13:00-17:00"`` or a list of such strings."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, Iterable):
        raise DefinitionError(f"{where}: hours must be a string like '09:00-17:00', got {value!r}")
    intervals = []
    for text in texts:
        if not isinstance(text, str):
            raise DefinitionError(
                f"{where}: hours must be strings like '09:00-17:00', got {text!r}"
            )
        for piece in filter(None, (p.strip() for p in text.split(","))):
            bounds = piece.split("-")
            if len(bounds) != 2:
                raise DefinitionError(f"{where}: {piece!r} is not an interval like '09:00-17:00'")
            start = _parse_time(bounds[0], end=False, where=where)
            stop = _parse_time(bounds[1], end=True, where=where)
            if stop == start:
                raise DefinitionError(
                    f"{where}: {piece!r} is empty; an interval needs an end different from its "
                    "start (use '00:00-24:00' for a whole day)"
                )
            # An end before the start is a shift that crosses midnight into the next day.
            intervals.append((start, stop if stop > start else stop + _DAY_S))
    return sorted(intervals)


def _fmt(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    text = f"{hours:02d}:{rest // 60:02d}"
    return f"{text}:{rest % 60:02d}" if rest % 60 else text


def _fmt_interval(start: int, end: int) -> str:
    """``"22:00-06:00"`` for a template interval; an end past midnight shows its wall time."""
    return f"{_fmt(start)}-{_fmt(end - _DAY_S if end > _DAY_S else end)}"


def _parse_week(hours: Mapping[str, object]) -> tuple[DayTemplate, ...]:
    """Seven day templates from a ``{"mon-fri": "09:00-17:00"}`` mapping, checked for overlaps."""
    if not isinstance(hours, Mapping):
        raise DefinitionError(
            f"hours must be a mapping like {{'mon-fri': '09:00-17:00'}}, got {hours!r}"
        )
    week: list[list[tuple[int, int]] | None] = [None] * 7
    for key, value in hours.items():
        for day in _parse_days(key):
            if week[day] is not None:
                raise DefinitionError(
                    f"{_DAY_NAMES[day]} is named twice (again in {key!r}); give each day once"
                )
            week[day] = _parse_day_hours(value, where=f"hours[{key!r}]")
    days = [w or [] for w in week]
    for day, intervals in enumerate(days):
        name = _DAY_NAMES[day]
        for (s1, e1), (s2, e2) in pairwise(intervals):
            if s2 < e1:
                first, second = _fmt_interval(s1, e1), _fmt_interval(s2, e2)
                raise DefinitionError(f"{name}: {first} overlaps {second}")
        spill = max((e - _DAY_S for _, e in intervals), default=0)
        following = days[(day + 1) % 7]
        if spill > 0 and following and following[0][0] < spill:
            raise DefinitionError(
                f"{name}: the shift running past midnight until {_fmt(spill)} overlaps "
                f"{_DAY_NAMES[(day + 1) % 7]} {_fmt_interval(*following[0])}"
            )
    if not any(days):
        raise DefinitionError(
            "the weekly schedule has no open time at all, so business time could never pass; "
            "give at least one day some hours"
        )
    return tuple(tuple(d) for d in days)


def _parse_spans(spans: Iterable[tuple[datetime, datetime]], what: str) -> tuple[Interval, ...]:
    """Sorted, merged microsecond intervals from aware ``(start, end)`` pairs."""
    out = []
    for span in spans:
        try:
            start, end = span
            a = (require_aware(start, f"{what} start") - EPOCH) // MICROSECOND
            b = (require_aware(end, f"{what} end") - EPOCH) // MICROSECOND
        except (TypeError, ValueError) as exc:
            raise DefinitionError(
                f"{what}: {span!r} is not an aware (start, end) pair: {exc}"
            ) from exc
        if b <= a:
            raise DefinitionError(f"{what}: {span!r} ends at or before it starts")
        out.append((a, b))
    return tuple(_merge(sorted(out)))


def _holiday_source(holidays: object) -> Container[date]:
    """Holidays in the forms the peers' users bring, as something that answers ``day in it``.

    A lazy mapping (the ``holidays`` package) and a recurrence (``dateutil.rrule``, or any
    object answering ``date in rule`` that is not a collection) are kept and asked;
    a finite collection of dates, datetimes, ISO strings, numpy ``datetime64`` values, a
    pandas ``DatetimeIndex`` or ``(date, name)`` pairs becomes a frozenset of dates.
    """
    if isinstance(holidays, Mapping) and type(holidays) is not dict:
        # e.g. holidays.HolidayBase: it fills in years on demand when asked ``day in it``.
        return holidays
    if hasattr(holidays, "between") and hasattr(holidays, "after"):  # a dateutil rrule(set)
        return _Recurrence(holidays)
    if isinstance(holidays, Container) and not isinstance(holidays, Iterable | str):
        return holidays  # a rule of the caller's: it answers ``day in rule`` itself
    if not isinstance(holidays, Iterable) or isinstance(holidays, str | bytes):
        raise DefinitionError(f"holidays must be dates or a holidays mapping, got {holidays!r}")
    return frozenset(_holiday(day) for day in holidays)


def _holiday(value: object) -> date:
    """One holiday as a date, from any of the forms ``_holiday_source`` takes."""
    if isinstance(value, tuple) and len(value) == 2:  # (date, name), as holidays.items() gives
        return _holiday(value[0])
    if isinstance(value, datetime):  # also pandas' Timestamp: the local date it names
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    elif type(value).__name__ == "datetime64":  # numpy, without importing it
        day = value.astype("datetime64[D]").item()  # type: ignore[attr-defined]
        if isinstance(day, date):
            return day
    raise DefinitionError(
        f"holidays must be dates (or datetimes, ISO strings, datetime64, (date, name) pairs), "
        f"got {value!r}"
    )


@attrs.frozen
class _Recurrence:
    """A ``dateutil.rrule`` (or rruleset) of holidays: a date is one if the rule hits it."""

    rule: Any

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        start = datetime(day.year, day.month, day.day)  # noqa: DTZ001 - rrules are naive
        hit = self.rule.after(start, inc=True)
        return hit is not None and hit.date() == day


def _duration(value: object) -> timedelta:
    """A plain ``timedelta`` from pandas' ``Timedelta`` (to the µs) or numpy's ``timedelta64``."""
    if isinstance(value, timedelta):
        return MICROSECOND * (value // MICROSECOND)
    if type(value).__name__ == "timedelta64":  # numpy, without importing it
        plain = value.astype("timedelta64[us]").item()  # type: ignore[attr-defined]
        if isinstance(plain, timedelta):
            return plain
    raise ValidationError(f"duration must be a timedelta, got {type(value).__name__}")


def _zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", tz))


def _extra_repr(name: str, value: object) -> str:
    if isinstance(value, frozenset | tuple):
        return f", {name}=<{len(value)}>" if value else ""
    return f", {name}={type(value).__name__}"  # a lazy holidays mapping: its class says which


# --------------------------------------------------------------------------- interval algebra


_merge = merge_spans
_subtract = subtract_spans


def _clip(intervals: Iterable[Interval], lo: int, hi: int) -> list[Interval]:
    return [(max(a, lo), min(b, hi)) for a, b in intervals if a < hi and b > lo]


# --------------------------------------------------------------------------- the index


class _Index:
    """Open intervals covering ``[lo, hi)`` with cumulative sums, immutable once built.

    Index 0 is a zero-length sentinel at ``lo`` so every covered instant has an interval at or
    before it. For interval ``i``: ``cum[i]`` is the open time before it, ``cum_end[i]`` the open
    time up to its end, and ``base[i] = cum[i] - starts[i]``, so the open time up to an instant
    ``t`` inside it is ``base[i] + t``.
    """

    __slots__ = (
        "_np",
        "base",
        "cum",
        "cum_end",
        "ends",
        "hi",
        "intervals",
        "lo",
        "mirror",
        "ruler",
        "starts",
        "used",
        "wall",
    )

    def __init__(self, lo: int, hi: int, intervals: list[Interval]) -> None:
        self.lo, self.hi, self.intervals = lo, hi, intervals
        self.starts, self.ends = [lo], [lo]
        self.cum, self.cum_end, self.base = [0], [0], [-lo]
        total = 0
        for a, b in intervals:
            self.starts.append(a)
            self.ends.append(b)
            self.cum.append(total)
            self.base.append(total - a)
            total += b - a
            self.cum_end.append(total)
        self._np: tuple[Any, ...] | None = None
        self.ruler: Ruler | None = None
        self.mirror: _Wall | None = None  # on UTC's wall clock (see timedeltas)
        self.wall: dict[int, _Wall | None] = {}  # by id of other zones; None: not exact there
        self.used = next(_TICKS)  # when a question last needed it (evict the oldest)

    def position(self, t: int) -> int:
        """Open microseconds from ``lo`` up to ``t`` (``lo <= t < hi``)."""
        i = bisect_right(self.starts, t) - 1
        return self.base[i] + t if t < self.ends[i] else self.cum_end[i]

    def timedeltas(self) -> _Wall:
        """The index as timedeltas since the epoch, for the scalar hot path.

        Built once, on first use: comparing and adding timedeltas directly saves converting
        every datetime argument to an integer and every answer back. It is the index on
        UTC's wall clock, which is the time line itself: always exact.
        """
        mirror = self.mirror
        if mirror is None:
            mirror = self.mirror = _wall_of(
                self, UTC, [0] * (len(self.starts) - 1), lo_off=0, hi_off=0, margin=0
            )
        return mirror

    def walls(self, tz: tzinfo) -> _Wall | None:
        """The index on ``tz``'s wall clock, if reading wall time there is exact (built once).

        Python subtracts two datetimes of the same zone as wall clocks, and adding a timedelta
        to one moves its wall clock: with the index's instants read on the calendar's own
        wall clock, an argument in that zone needs no UTC offset lookup in and none out.
        That is exact when the offset is constant over every open interval and each change
        of offset lies at least its own size away from open time, so a wall time that the
        change skips or repeats is closed time either way. Otherwise ``None`` (the UTC path
        serves).
        """
        if tz is UTC:
            return self.timedeltas()
        try:
            return self.wall[id(tz)]
        except KeyError:
            wall = self.wall[id(tz)] = _wall_index(self, tz)
            return wall

    def arrays(self) -> tuple[Any, ...]:
        """The index as numpy arrays (built once, on first vectorised use)."""
        if self._np is None:
            import numpy as np  # noqa: PLC0415 - optional dependency, only for the *_many paths

            self._np = tuple(
                np.array(a, dtype=np.int64)
                for a in (self.starts, self.ends, self.cum, self.cum_end, self.base)
            )
        return self._np


_TICKS: Final = itertools.count()


class _Wall(NamedTuple):
    """An index read on its zone's wall clock: timedeltas since the zone's wall epoch."""

    tz: tzinfo
    epoch: datetime
    """``1970-01-01 00:00`` in ``tz``: ``t - epoch`` is ``t``'s wall clock as a timedelta."""
    lo: timedelta
    hi: timedelta
    starts: list[timedelta]
    ends: list[timedelta]
    base: list[timedelta]
    cum_end: list[timedelta]
    n: int
    """How many intervals (``starts`` and ``cum_end`` end in one more, ``timedelta.max``)."""
    days: list[int]
    """Per wall day from ``first_day``: the last interval starting at or before it."""
    first_day: int


_DAY_US: Final = _DAY_S * US_PER_SECOND
_SAFE_MARGIN: Final = 2 * _DAY_US  # no zone's offset moves this far
_SCAN: Final = 4  # intervals stepped through before a binary search takes over


def _offset_us(tz: tzinfo, t: int) -> int:
    """``tz``'s UTC offset at the instant ``t``, in microseconds."""
    offset = (EPOCH + MICROSECOND * t).astimezone(tz).utcoffset()
    return 0 if offset is None else offset // MICROSECOND


def _wall_index(index: _Index, tz: tzinfo) -> _Wall | None:
    """``index`` on ``tz``'s wall clock, or ``None`` where wall time would not be exact."""
    starts, ends = index.starts, index.ends
    offsets = []
    lo_off = previous = _offset_us(tz, index.lo)
    hi_off = _offset_us(tz, index.hi)
    gap_from = index.lo
    for k in range(1, len(starts)):
        a, b = starts[k], ends[k]
        here = _offset_us(tz, a)
        if _offset_us(tz, b - 1) != here:  # the clock changes while open
            return None
        if not _clear_gap(tz, gap_from, a, previous, here):
            return None
        offsets.append(here)
        previous, gap_from = here, b
    if not _clear_gap(tz, gap_from, index.hi, previous, hi_off):
        return None
    return _wall_of(index, tz, offsets, lo_off=lo_off, hi_off=hi_off, margin=_SAFE_MARGIN)


def _wall_of(
    index: _Index, tz: tzinfo, offsets: list[int], *, lo_off: int, hi_off: int, margin: int
) -> _Wall:
    """``index`` read on ``tz``'s wall clock, each interval shifted by its offset.

    ``lo_off`` and ``hi_off`` are the offsets at the index's ends; ``margin`` keeps the
    questions it answers that far inside them.
    """
    starts, ends = index.starts, index.ends
    td = MICROSECOND.__mul__
    w_starts, w_ends, w_base = (
        [td(index.lo + lo_off)],
        [td(index.lo + lo_off)],
        [td(-lo_off - index.lo)],
    )
    for k, off in enumerate(offsets, start=1):
        w_starts.append(td(starts[k] + off))
        w_ends.append(td(ends[k] + off))
        w_base.append(td(index.base[k] - off))
    # A lookup per day, then a step or two forward, beats a binary search over the years.
    first_day = w_starts[0].days
    days: list[int] = []
    k = 0
    for day in range(first_day, (index.hi + hi_off) // _DAY_US + 1):
        midnight = td(day * _DAY_US)
        while k + 1 < len(w_starts) and w_starts[k + 1] <= midnight:
            k += 1
        days.append(k)
    return _Wall(
        tz,
        wall_epoch(tz),
        td(index.lo + margin),
        td(index.hi - margin),
        [*w_starts, timedelta.max],
        w_ends,
        w_base,
        [*(td(x) for x in index.cum_end), timedelta.max],
        len(starts),
        days,
        first_day,
    )


def _clear_gap(tz: tzinfo, a: int, b: int, before: int, after: int) -> bool:
    """Whether every change of offset in the closed gap ``[a, b)`` keeps clear of open time.

    A change of ``d`` makes wall times within ``d`` of it ambiguous or missing: it must lie
    at least ``d`` from both ends of the gap. Gaps too long to hold one change only (half a
    year) are sampled daily for a change that comes back.
    """
    changes = []
    if b - a > 150 * _DAY_US:
        last = before
        for t in range(a, b, _DAY_US):
            now = _offset_us(tz, t)
            if now != last:
                changes.append((t - _DAY_US, t, last, now))
                last = now
        if last != after:
            changes.append((b - _DAY_US, b, last, after))
    elif before != after:
        changes.append((a, b, before, after))
    for low, high, left, right in changes:
        first = _first_with(tz, low, high, left)
        size = abs(right - left)
        if first - a < size or b - first < size:
            return False
    return True


def _first_with(tz: tzinfo, lo: int, hi: int, old: int) -> int:
    """The first instant in ``(lo, hi]`` whose offset is no longer ``old`` (bisection)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_us(tz, mid) == old:
            lo = mid
        else:
            hi = mid
    return hi


class _Cache:
    """The mutable, lazily grown indexes of a calendar; dropped when pickled.

    ``segments`` are disjoint indexes sorted by time, replaced (never mutated) under the lock,
    so readers need no lock; ``index`` is the one used last, checked first on the hot path.
    """

    __slots__ = ("index", "lock", "long", "segments", "walls")

    def __init__(self) -> None:
        self.index: _Index | None = None
        self.long: _Long | None = None
        """The arithmetic for questions over more than ``_LONG_US`` (made when first asked)."""
        self.walls: dict[int, _Wall] = {}
        """By ``id`` of the zone (a zone need not be hashable): an index on the wall clock
        of the calendar's zone and of UTC, for arguments in either (see ``_Index.walls``);
        replaced whole, never changed. Both zones live as long as the calendar, so their
        ids stay theirs."""
        self.segments: tuple[_Index, ...] = ()
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Cache], tuple[()]]:
        # A lock cannot be pickled and the index is cheap to rebuild: ship an empty cache,
        # so calendars travel to worker processes (Dask, Spark, multiprocessing).
        return (_Cache, ())


class Ruler:
    """Business positions of instants, and instants of positions, within one indexed range.

    Made by :meth:`BusinessCalendar.ruler`. ``position(t)`` is valid for instants in the
    range it was made for; ``instant(p, not_before=a)`` is the earliest instant at or after
    ``a`` whose position is ``p`` (``p`` must not be below ``position(a)``), and falls back
    to the calendar when ``p`` lies beyond the range.
    """

    __slots__ = ("_calendar", "_index", "position")

    def __init__(self, calendar: BusinessCalendar, index: _Index) -> None:
        self._calendar = calendar
        self._index = index
        self.position = index.position

    def positions(self, instants: Iterable[int]) -> list[int]:
        """``position`` of each instant (one call for many: the SLA engine's hot path)."""
        index = self._index
        starts, ends, base, cum_end = index.starts, index.ends, index.base, index.cum_end
        out = []
        for t in instants:
            i = bisect_right(starts, t) - 1
            out.append(base[i] + t if t < ends[i] else cum_end[i])
        return out

    def instant(self, p: int, *, not_before: int) -> int:
        """The earliest instant at or after ``not_before`` at position ``p``."""
        index = self._index
        i = bisect_left(index.cum_end, p)
        if i < len(index.starts) and index.cum_end[i] < index.cum_end[-1]:
            return max(p - index.base[i], not_before)
        # At or past the last indexed interval, which may continue beyond the range.
        return self._calendar.add_us(not_before, p - index.position(not_before))

    def positions_array(self, instants: Any) -> Any:
        """:meth:`positions` of an int64 numpy array (every instant within the range)."""
        import numpy as np  # noqa: PLC0415 - optional dependency, only for array paths

        return _positions(np, self._index, instants)

    def instants_array(self, positions: Any, not_before: Any) -> Any:
        """:meth:`instant` of each of two int64 numpy arrays, element by element."""
        import numpy as np  # noqa: PLC0415 - optional dependency, only for array paths

        starts, _, _, cum_end, base = self._index.arrays()
        last = len(starts) - 1
        k = np.minimum(np.searchsorted(cum_end, positions, side="left"), last)
        out = np.maximum(positions - base[k], not_before)
        # At or past the last interval, which may continue beyond the range: ask the calendar.
        for i in np.flatnonzero(cum_end[k] >= cum_end[last]).tolist():
            out[i] = self.instant(int(positions[i]), not_before=int(not_before[i]))
        return out


class _FarRuler(Ruler):
    """A ruler over more than ten years: each position measured from its origin."""

    __slots__ = ("_origin",)

    def __init__(self, calendar: BusinessCalendar, origin: int) -> None:
        self._calendar = calendar
        self._origin = origin
        self.position = self._position

    def _position(self, t: int) -> int:
        return self._calendar.elapsed_us(self._origin, t)

    def positions(self, instants: Iterable[int]) -> list[int]:
        return list(map(self._position, instants))

    def instant(self, p: int, *, not_before: int) -> int:
        return self._calendar.add_us(not_before, p - self._position(not_before))

    def positions_array(self, instants: Any) -> Any:
        import numpy as np  # noqa: PLC0415 - optional dependency, only for array paths

        return np.array(self.positions(instants.tolist()), dtype=np.int64)

    def instants_array(self, positions: Any, not_before: Any) -> Any:
        import numpy as np  # noqa: PLC0415 - optional dependency, only for array paths

        pairs = zip(positions.tolist(), not_before.tolist(), strict=True)
        return np.array([self.instant(p, not_before=a) for p, a in pairs], dtype=np.int64)


def _reach(index: _Index) -> int:
    """How far from a segment a question may fall and still grow it rather than start anew."""
    return max(index.hi - index.lo, 4 * _WEEK_US)


# --------------------------------------------------------------------------- long spans


_PROBE_US: Final = 6 * _DAY_US
"""How far apart the zone's offset is read when looking for its changes. No zone changes its
offset and back within less than 6.96 days (America/Recife in 2000, Asia/Gaza from 2040), so
a change between two readings this close cannot hide; changes that do not cancel are seen
whatever their distance."""
_REPEAT_FROM: Final = 2400
"""From here on a zone follows the rule at the end of its data, which repeats every 400
Gregorian years (146,097 days, exactly 20,871 weeks, so the weekly schedule repeats too)."""
_REPEAT_YEARS: Final = 400
_MONDAY_US: Final = 4 * _DAY_US  # 1970-01-05, a Monday, on the wall clock of the epoch
_ONE_DAY: Final = timedelta(days=1)
_HOUR: Final = timedelta(hours=1)


class _Long:
    """Business time over spans of any length, by arithmetic instead of expansion.

    On a wall clock whose offset never changes, the weekly schedule repeats every week, so the
    open time up to a wall instant is whole weeks times the week's total plus a lookup within
    the week (``pattern``). The real calendar differs from that only around its irregular
    dates: holidays, the zone's offset changes, closures and extra openings. Each run of them
    is a *window* (from the day before to two days after, so shifts crossing midnight are
    inside) whose open time is expanded exactly as the index would; between windows the
    offset is constant and the schedule is the pattern, so

        open time in [lo, hi) = pattern(wall(hi)) - pattern(wall(lo))
                               + sum over windows of (expanded - pattern over the window)

    The corrections of whole local years are cached (an integer a year), and from 2800 on a
    year's is the one 400 years earlier when nothing explicit (holidays, spans) reaches that
    far: a question from the year 1 to 9999 costs what ~2,800 years of offset readings and
    windows cost once, then a sum.
    """

    __slots__ = ("before", "ends", "holidays", "repeats", "starts", "total", "years")

    def __init__(self, calendar: BusinessCalendar) -> None:
        pieces: list[Interval] = []
        for day, template in enumerate(calendar.week):
            for s, e in template:
                a, b = day * _DAY_US + s * US_PER_SECOND, day * _DAY_US + e * US_PER_SECOND
                # A Sunday shift running past midnight ends on the next week's Monday.
                pieces += [(a, b)] if b <= _WEEK_US else [(a, _WEEK_US), (0, b - _WEEK_US)]
        merged = _merge(sorted(pieces))
        self.starts = [a for a, _ in merged]
        self.ends = [b for _, b in merged]
        self.before = list(itertools.accumulate((b - a for a, b in merged), initial=0))
        self.total = self.before.pop()
        self.years: dict[int, int] = {}
        source = calendar.holidays
        self.holidays: list[date] | None = (
            sorted(d for d in source if isinstance(d, date))
            if isinstance(source, frozenset)
            else None
        )
        self.repeats = self._repeats(calendar)

    @staticmethod
    def _repeats(calendar: BusinessCalendar) -> bool:
        """Whether years from ``_REPEAT_FROM`` on repeat every 400 years in this calendar."""
        from zoneinfo import ZoneInfo  # noqa: PLC0415 - only to recognise the zone's kind

        if not isinstance(calendar.tz, ZoneInfo | type(UTC)):
            return False  # a zone of unknown make: no promise about its far future
        edge = date(_REPEAT_FROM, 1, 1) - 3 * _ONE_DAY
        source = calendar.holidays
        if isinstance(source, frozenset):
            late = any(isinstance(d, date) and d >= edge for d in source)
        elif isinstance(source, _Recurrence):
            late = source.rule.after(datetime(edge.year, edge.month, edge.day)) is not None  # noqa: DTZ001
        else:
            return False
        reach = calendar._boundary(edge, 0)  # noqa: SLF001 - the calendar's own reading
        spans = (*calendar.closures, *calendar.extra_openings)
        return not late and all(b < reach for _, b in spans)

    def pattern(self, wall: int) -> int:
        """Open time of the weekly schedule up to the wall instant ``wall`` (µs).

        Counted from some Monday long ago: only differences of it mean anything.
        """
        weeks, rest = divmod(wall - _MONDAY_US, _WEEK_US)
        i = bisect_right(self.starts, rest) - 1
        within = 0 if i < 0 else self.before[i] + min(rest, self.ends[i]) - self.starts[i]
        return weeks * self.total + within

    def measure(self, calendar: BusinessCalendar, lo: int, hi: int, *, index: bool) -> int:
        """The open time in ``[lo, hi)``, ``lo <= hi``, both within the years 1 to 9999.

        With ``index``, the partial years at the ends are read from the calendar's index
        (expanded once, then a lookup: for questions asked again and again); without, they
        are corrected like the whole years but not cached (for one-off steps).
        """
        tz = calendar.tz
        first, last = from_us(lo, tz).year + 1, from_us(hi, tz).year
        if last - first < 2:  # no whole years worth caching in between
            plain = self.pattern(hi + _offset_us(tz, hi)) - self.pattern(lo + _offset_us(tz, lo))
            return plain + self.correction(calendar, lo, hi)
        a, b = calendar._boundary(date(first, 1, 1), 0), calendar._boundary(date(last, 1, 1), 0)  # noqa: SLF001
        whole = self.pattern(b + _offset_us(tz, b)) - self.pattern(a + _offset_us(tz, a))
        whole += sum(self.year(calendar, y) for y in range(first, last))
        if index:
            return calendar.elapsed_us(lo, a) + whole + calendar.elapsed_us(b, hi)
        ends = self.measure(calendar, lo, a, index=False) + self.measure(
            calendar, b, hi, index=False
        )
        return ends + whole

    def year(self, calendar: BusinessCalendar, year: int) -> int:
        """The correction of one local year (cached)."""
        if self.repeats and year >= _REPEAT_FROM + _REPEAT_YEARS:
            year = _REPEAT_FROM + (year - _REPEAT_FROM) % _REPEAT_YEARS
        found = self.years.get(year)
        if found is None:
            lo = calendar._boundary(date(year, 1, 1), 0)  # noqa: SLF001
            hi = calendar._boundary(date(year + 1, 1, 1), 0)  # noqa: SLF001
            found = self.years[year] = self.correction(calendar, lo, hi)
        return found

    def correction(self, calendar: BusinessCalendar, lo: int, hi: int) -> int:
        """How far the real open time in ``[lo, hi)`` differs from the pattern's."""
        tz = calendar.tz
        total = 0
        for a, b in self.windows(calendar, lo, hi):
            expanded = self.expanded(calendar, a, b)
            total += (
                expanded - self.pattern(b + _offset_us(tz, b)) + self.pattern(a + _offset_us(tz, a))
            )
        return total

    def windows(self, calendar: BusinessCalendar, lo: int, hi: int) -> list[Interval]:
        """Spans around every irregular date that can touch ``[lo, hi)``, clipped to it."""
        if hi <= lo:
            return []
        tz = calendar.tz
        first = from_us(lo, tz).date() - 2 * _ONE_DAY
        last = from_us(hi, tz).date() + _ONE_DAY
        runs = [(d, d) for d in self.holiday_dates(calendar, first, last)]
        # An offset change a little before ``lo`` still moves the shifts running at ``lo``.
        reach_lo, reach_hi = lo - 2 * _DAY_US, hi + 2 * _DAY_US
        spans = self.changes(tz, reach_lo, reach_hi)
        spans += _clip((*calendar.closures, *calendar.extra_openings), reach_lo, reach_hi)
        runs += [(from_us(a, tz).date(), from_us(b, tz).date()) for a, b in spans]
        runs.sort()
        days: list[tuple[date, date]] = []  # each run widened to the day before, two after
        for first_day, last_day in runs:
            start, end = first_day - _ONE_DAY, last_day + 2 * _ONE_DAY
            if days and start <= days[-1][1]:
                days[-1] = (days[-1][0], max(days[-1][1], end))
            else:
                days.append((start, end))
        spans = [(calendar._boundary(a, 0), calendar._boundary(b, 0)) for a, b in days]  # noqa: SLF001
        return [(max(a, lo), min(b, hi)) for a, b in spans if a < hi and b > lo]

    def holiday_dates(self, calendar: BusinessCalendar, first: date, last: date) -> list[date]:
        """The holidays from ``first`` to ``last`` on which the schedule has hours."""
        week = calendar.week
        if self.holidays is not None:
            ordered = self.holidays
            found = ordered[bisect_left(ordered, first) : bisect_right(ordered, last)]
        elif isinstance(calendar.holidays, _Recurrence):
            rule = calendar.holidays.rule
            hits = rule.between(
                datetime(first.year, first.month, first.day),  # noqa: DTZ001 - rrules are naive
                datetime(last.year, last.month, last.day),  # noqa: DTZ001
                inc=True,
            )
            found = sorted({hit.date() for hit in hits})
        else:  # a lazy source answers one date at a time: ask it for each working day
            source = calendar.holidays
            days = (first + k * _ONE_DAY for k in range((last - first).days + 1))
            found = [d for d in days if week[d.weekday()] and d in source]
        return [d for d in found if week[d.weekday()]]

    @staticmethod
    def changes(tz: tzinfo, lo: int, hi: int) -> list[Interval]:
        """Spans of at most ``_PROBE_US`` within which the zone's offset changes in ``[lo, hi]``."""
        if tz.utcoffset(None) is not None:
            return []  # a fixed offset
        out: list[Interval] = []
        step = MICROSECOND * _PROBE_US
        p = EPOCH + MICROSECOND * lo  # datetimes stepped, not integers converted: the hot loop
        end = EPOCH + MICROSECOND * hi
        before = p.astimezone(tz).utcoffset()
        while p < end:
            q = min(p + step, end)
            after = q.astimezone(tz).utcoffset()
            if after != before:
                _Long._narrow(tz, p, q, before, after, out=out)
            p, before = q, after
        return out

    @staticmethod
    def _narrow(
        tz: tzinfo, p: datetime, q: datetime, before: Any, after: Any, *, out: list[Interval]
    ) -> None:
        """Append spans of at most an hour holding every offset change in ``(p, q]``.

        Halving is safe: no zone changes its offset and back within ``_PROBE_US``, so a half
        whose ends agree holds no change.
        """
        if q - p <= _HOUR:
            out.append(((p - EPOCH) // MICROSECOND, (q - EPOCH) // MICROSECOND))
            return
        m = p + (q - p) // 2
        middle = m.astimezone(tz).utcoffset()
        if middle != before:
            _Long._narrow(tz, p, m, before, middle, out=out)
        if middle != after:
            _Long._narrow(tz, m, q, middle, after, out=out)

    @staticmethod
    def expanded(calendar: BusinessCalendar, a: int, b: int) -> int:
        """The real open time in ``[a, b)``, as the index would count it.

        Closed within closures, open within extra openings, the expanded schedule elsewhere
        (so a long closure is not expanded).
        """
        closed = _clip(calendar.closures, a, b)
        opened = _subtract(_clip(calendar.extra_openings, a, b), closed)
        total = sum(y - x for x, y in opened)
        for x, y in _subtract(_subtract([(a, b)], closed), opened):
            total += sum(v - u for u, v in calendar._expand(x, y))  # noqa: SLF001
        return total


# --------------------------------------------------------------------------- the calendar


@attrs.frozen(kw_only=True, repr=False)
class BusinessCalendar:
    """Opening hours in a time zone; counts and adds business time exactly.

    Build one with :meth:`weekly` or :meth:`always`. All methods take aware datetimes (naive
    ones raise ``ValidationError``) and return datetimes in the time zone of the argument they
    derive from. Open time is a union of half-open intervals ``[open, close)``.

    >>> from datetime import datetime, timedelta
    >>> from zoneinfo import ZoneInfo
    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
    >>> cal.add(datetime(2025, 3, 3, 9, tzinfo=berlin), timedelta(hours=8))
    datetime.datetime(2025, 3, 3, 17, 0, tzinfo=zoneinfo.ZoneInfo(key='Europe/Berlin'))
    >>> friday = datetime(2025, 3, 7, 16, tzinfo=berlin)
    >>> monday = datetime(2025, 3, 10, 10, tzinfo=berlin)
    >>> cal.elapsed(friday, monday)
    datetime.timedelta(seconds=7200)
    """

    week: tuple[DayTemplate, ...]
    """Seven day templates, Monday first: ``(start, end)`` seconds after local midnight."""
    tz: tzinfo
    """The zone whose wall clock the opening hours and holidays are read in."""
    holidays: Container[date] = attrs.field(default=frozenset(), hash=False)
    """Dates on which no schedule interval starts."""
    closures: tuple[Interval, ...] = ()
    """Closed spans (microseconds since the epoch), subtracted from everything else."""
    extra_openings: tuple[Interval, ...] = ()
    """Extra open spans (microseconds since the epoch), added to the weekly schedule."""
    _cache: _Cache = attrs.field(factory=_Cache, init=False, eq=False, repr=False)

    # ----------------------------------------------------------------------- constructors

    @classmethod
    def weekly(
        cls,
        hours: Mapping[str, str | Iterable[str]],
        *,
        tz: str | tzinfo,
        holidays: Iterable[date] | Container[date] = (),
        closures: Iterable[tuple[datetime, datetime]] = (),
        extra_openings: Iterable[tuple[datetime, datetime]] = (),
    ) -> BusinessCalendar:
        """Build a calendar from weekly opening hours in the IANA zone ``tz``.

        Args:
            hours: day keys (``"mon"`` ... ``"sun"``, ranges such as ``"mon-fri"`` or
                ``"fri-mon"``) mapped to intervals: ``"09:00-17:00"``, several separated by
                commas (``"08:00-12:00,13:00-17:00"``), or a list of such strings. ``24:00``
                may end an interval; an end before the start is a shift crossing midnight,
                which belongs to the day it starts.
            tz: the zone the hours are read in, e.g. ``"Europe/Berlin"``.
            holidays: dates on which no interval starts: any collection of dates, or a
                ``holidays`` mapping such as ``holidays.country_holidays("DE", subdiv="BE")``
                (queried lazily, so every year works; each date is read once and cached).
            closures: aware ``(start, end)`` spans that are closed whatever the schedule says.
            extra_openings: aware ``(start, end)`` spans that are open in addition.

        Raises:
            DefinitionError: an unknown day key or zone, a malformed or empty interval,
                overlapping intervals, or a week with no open time at all.
        """
        try:
            zone_info = zone(tz)
        except ValidationError as exc:
            raise DefinitionError(str(exc)) from exc
        return cls(
            week=_parse_week(hours),
            tz=zone_info,
            holidays=_holiday_source(holidays),
            closures=_parse_spans(closures, "closures"),
            extra_openings=_parse_spans(extra_openings, "extra_openings"),
        )

    @classmethod
    def always(
        cls,
        *,
        tz: str | tzinfo = "UTC",
        holidays: Iterable[date] | Container[date] = (),
        closures: Iterable[tuple[datetime, datetime]] = (),
        extra_openings: Iterable[tuple[datetime, datetime]] = (),
    ) -> BusinessCalendar:
        """A 24x7 calendar: every instant is open, except holidays (local dates) and closures.

        On DST change days it counts the real 23 or 25 hours.
        """
        return cls.weekly(
            {"mon-sun": "00:00-24:00"},
            tz=tz,
            holidays=holidays,
            closures=closures,
            extra_openings=extra_openings,
        )

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar.weekly({self.hours()!r}, tz={_zone_name(self.tz)!r}"
            f"{_extra_repr('holidays', self.holidays)}{_extra_repr('closures', self.closures)}"
            f"{_extra_repr('extra_openings', self.extra_openings)})"
        )

    def hours(self) -> dict[str, str]:
        """The weekly schedule in the form ``weekly()`` takes, days with equal hours grouped.

        >>> BusinessCalendar.weekly({"mon-fri": "08:00-12:00,13:00-17:00"}, tz="UTC").hours()
        {'mon-fri': '08:00-12:00,13:00-17:00'}
        """
        out: dict[str, str] = {}
        day = 0
        while day < 7:
            last = day
            while last + 1 < 7 and self.week[last + 1] == self.week[day]:
                last += 1
            if self.week[day]:
                key = _DAY_NAMES[day] if last == day else f"{_DAY_NAMES[day]}-{_DAY_NAMES[last]}"
                out[key] = ",".join(_fmt_interval(a, b) for a, b in self.week[day])
            day = last + 1
        return out

    # ----------------------------------------------------------------------- expansion

    def _boundary(self, day: date, seconds: int) -> int:
        """The earliest instant (µs) at which the wall clock shows ``day`` + ``seconds`` or later."""  # noqa: E501
        day += timedelta(days=seconds // _DAY_S)
        seconds %= _DAY_S
        # A naive wall time on purpose: earliest_instant reads it in self.tz.
        wall = datetime(  # noqa: DTZ001
            day.year, day.month, day.day, seconds // 3600, seconds // 60 % 60, seconds % 60
        )
        return earliest_instant(wall, self.tz)

    def _expand(self, lo: int, hi: int) -> list[Interval]:
        """The open intervals of ``[lo, hi)``, clipped to it."""
        if hi <= lo:
            return []
        # Local dates lie within a day of UTC dates; a day's shifts end within the next day.
        first = from_us(lo).date() - timedelta(days=2)
        last = from_us(hi).date() + timedelta(days=1)
        found: list[Interval] = []
        day = first
        while day <= last:
            template = self.week[day.weekday()]
            if template and day not in self.holidays:
                for start, end in template:
                    a, b = self._boundary(day, start), self._boundary(day, end)
                    if a < b:  # both ends in one spring gap: nothing is open
                        found.append((a, b))
            day += timedelta(days=1)
        found.extend(_clip(self.extra_openings, lo, hi))
        merged = _merge(sorted(found))
        return _clip(_subtract(merged, self.closures), lo, hi)

    def _cover(self, lo: int, hi: int) -> _Index:
        """An index covering ``[lo, hi]``: a cached one, a grown one or a new one.

        A question near an indexed segment grows it by at least its own width (so growing is
        amortised), and segments that come within reach of each other are joined; a question
        far from all of them starts a segment of its own, so asking about 2025 and then 2900
        does not expand the nine centuries in between unless one question spans them.
        """
        cache = self._cache
        for index in cache.segments:
            if index.lo <= lo and hi < index.hi:
                cache.index = index
                index.used = next(_TICKS)
                return index
        if lo < _MIN_US or hi >= _MAX_US:
            raise ValidationError("business time is only counted between years 1 and 9999")
        if hi - lo > _MAX_SPAN_US:
            raise ValidationError(
                f"one question may cover at most {MAX_SPAN.days:,} days ({MAX_SPAN.days // 365}"
                f" years) of time; this one covers {(hi - lo) // (_DAY_S * US_PER_SECOND):,}"
            )
        with cache.lock:
            near = [s for s in cache.segments if s.lo - _reach(s) <= hi and lo < s.hi + _reach(s)]
            if any(s.lo <= lo and hi < s.hi for s in near):  # another thread grew it meanwhile
                return self._cover(lo, hi)
            core_lo = min([lo, *(s.lo for s in near)])
            core_hi = max([hi, *(s.hi for s in near)])
            if core_hi - core_lo > _MAX_SPAN_US:  # too far apart to join: a segment of its own
                near, core_lo, core_hi = [], lo, hi
            # Grow by at least the width already indexed (so growing is amortised), on the
            # sides the question reached past, and never past the span limit.
            margin = max(sum(s.hi - s.lo for s in near), _WEEK_US)
            spare = _MAX_SPAN_US - (core_hi - core_lo)
            # Close to the limit, take the rest at once: halving the spare each time would
            # creep towards the limit forever.
            margin = min(margin, spare // 2) if spare // 2 >= _WEEK_US else spare
            new_lo = core_lo - margin if not near or lo < near[0].lo else core_lo
            new_hi = core_hi + margin if not near or hi >= near[-1].hi else core_hi
            new_lo, new_hi = max(new_lo, _MIN_US), min(new_hi, _MAX_US)
            pieces: list[Interval] = []
            edge = new_lo
            for s in near:
                pieces += self._expand(edge, s.lo)
                pieces += s.intervals
                edge = s.hi
            pieces += self._expand(edge, new_hi)
            index = _Index(new_lo, new_hi, _merge(pieces))
            kept = [s for s in cache.segments if s not in near]
            # Bounded: the segments used least recently go first (questions scattered over
            # the centuries would otherwise keep every one of them).
            kept.sort(key=attrgetter("used"))
            while kept and (
                len(kept) >= _MAX_SEGMENTS
                or sum(s.hi - s.lo for s in kept) + (new_hi - new_lo) > _MAX_CACHED_US
            ):
                kept.pop(0)
            cache.segments = tuple(sorted([*kept, index], key=attrgetter("lo")))
            cache.index = index
            return index

    def _index_for(self, lo: int, hi: int) -> _Index:
        index = self._cache.index
        if index is None or lo < index.lo or hi >= index.hi:
            return self._cover(lo, hi)
        return index

    def _long(self) -> _Long:
        """The calendar's arithmetic for long spans, made once and kept with its cache."""
        long = self._cache.long
        if long is None:
            long = self._cache.long = _Long(self)
        return long

    def _measure(self, lo: int, hi: int, *, index: bool = True) -> int:
        """The open time in ``[lo, hi)`` by arithmetic (see ``_Long``): for long spans."""
        if lo < _MIN_US or hi >= _MAX_US:
            raise ValidationError("business time is only counted between years 1 and 9999")
        long = self._long()
        if (
            hi - lo > _MAX_SPAN_US
            and long.holidays is None
            and not isinstance(self.holidays, _Recurrence)
        ):
            raise ValidationError(
                f"one question may cover at most {MAX_SPAN.days:,} days "
                f"({MAX_SPAN.days // 365} years) of a calendar whose holidays are asked "
                "one date at a time (a holidays mapping or a rule of your own); this one "
                f"covers {(hi - lo) // _DAY_US:,}. Give the holidays as a list of dates "
                "or a dateutil rrule to count across centuries"
            )
        return long.measure(self, lo, hi, index=index)

    # ----------------------------------------------------------------------- queries

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants; negative if ``end`` is before ``start``.

        >>> from datetime import datetime
        >>> from zoneinfo import ZoneInfo
        >>> ny = ZoneInfo("America/New_York")
        >>> cal = BusinessCalendar.always(tz="America/New_York")
        >>> cal.elapsed(datetime(2025, 3, 9, tzinfo=ny), datetime(2025, 3, 10, tzinfo=ny))
        datetime.timedelta(seconds=82800)
        """
        if type(start) is datetime and type(end) is datetime:
            w = self._cache.walls.get(id(start.tzinfo))
            # Both in the calendar's zone (or UTC): on its wall clock, no offset lookups.
            if w is not None and end.tzinfo is w.tz:
                _, epoch, lo, hi, starts, ends, base, cum_end, _, days, first_day = w
                a = start - epoch
                b = end - epoch
                if lo <= a < hi and lo <= b < hi:
                    i = days[a.days - first_day]
                    while starts[i + 1] <= a:
                        i += 1
                    j = days[b.days - first_day]
                    while starts[j + 1] <= b:
                        j += 1
                    pos_a = base[i] + a if a < ends[i] else cum_end[i]
                    pos_b = base[j] + b if b < ends[j] else cum_end[j]
                    return pos_b - pos_a
        return self._elapsed(start, end)

    def _elapsed(self, start: datetime, end: datetime) -> timedelta:
        """``elapsed`` for any aware arguments, on the UTC time line."""
        # since_epoch inlined (a third of the cost of a call): see _time.wall_epoch.
        try:
            tz: Any = start.tzinfo  # a real zone whenever the cache knows it
            if tz is UTC:
                a = start - EPOCH
            elif (e := WALL_EPOCHS.get(id(tz))) is not None and type(start) is datetime:
                a = start - e - tz.utcoffset(start)
            else:
                a = since_epoch(start, "start")
            tz = end.tzinfo
            if tz is UTC:
                b = end - EPOCH
            elif (e := WALL_EPOCHS.get(id(tz))) is not None and type(end) is datetime:
                b = end - e - tz.utcoffset(end)
            else:
                b = since_epoch(end, "end")
        except (AttributeError, TypeError):
            since_epoch(start, "start")
            since_epoch(end, "end")
            raise
        index = self._cache.index
        m = index.mirror if index is not None else None
        if m is None or a < m.lo or b < m.lo or a >= m.hi or b >= m.hi:
            if abs(b - a) // MICROSECOND > _LONG_US:
                return MICROSECOND * self.elapsed_us(a // MICROSECOND, b // MICROSECOND)
            m = self._index_for(min(a, b) // MICROSECOND, max(a, b) // MICROSECOND).timedeltas()
        # Positions as timedeltas: two binary searches, no integer conversion either way.
        starts = m.starts
        i = bisect_right(starts, a) - 1
        j = bisect_right(starts, b) - 1
        pos_a = m.base[i] + a if a < m.ends[i] else m.cum_end[i]
        pos_b = m.base[j] + b if b < m.ends[j] else m.cum_end[j]
        if start.tzinfo is self.tz or start.tzinfo is UTC:
            self._warm_wall()
        return pos_b - pos_a

    def _warm_wall(self) -> None:
        """Offer the current index on the wall clock to the next call (see ``_Index.walls``)."""
        cache = self._cache
        index = cache.index
        if index is not None:
            walls = {id(tz): wall for tz in (self.tz, UTC) if (wall := index.walls(tz)) is not None}
            held = cache.walls
            if len(walls) != len(held) or any(held.get(k) is not w for k, w in walls.items()):
                cache.walls = walls

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant at which ``duration`` of business time has passed since ``start``.

        A budget that runs out exactly at closing time ends at closing time, not at the next
        opening. A zero duration returns ``start`` unchanged. A negative duration counts
        backwards and returns the latest instant that much business time before ``start``.

        >>> from datetime import datetime, timedelta
        >>> from zoneinfo import ZoneInfo
        >>> berlin = ZoneInfo("Europe/Berlin")
        >>> cal = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
        >>> cal.add(datetime(2025, 3, 3, 16, tzinfo=berlin), timedelta(hours=2)).isoformat()
        '2025-03-04T10:00:00+01:00'
        >>> cal.add(datetime(2025, 3, 4, 9, tzinfo=berlin), -timedelta(hours=8)).isoformat()
        '2025-03-03T09:00:00+01:00'
        """
        if type(start) is datetime and type(duration) is timedelta and duration > _ZERO:
            # In the calendar's zone (or UTC), forwards: on its wall clock, no offset lookups.
            w = self._cache.walls.get(id(start.tzinfo))
            if w is not None:
                _, epoch, lo, hi, starts, ends, base, cum_end, n, days, first_day = w
                a = start - epoch
                if lo <= a < hi:
                    i = days[a.days - first_day]
                    while starts[i + 1] <= a:
                        i += 1
                    target = (base[i] + a if a < ends[i] else cum_end[i]) + duration
                    k = i + _SCAN  # a few intervals on: step there; further: search
                    if k < n and cum_end[k] < target:
                        k = bisect_left(cum_end, target, k + 1)
                    else:
                        k = i
                        while cum_end[k] < target:
                            k += 1
                    if k < n:
                        answer: datetime = epoch + (target - base[k])
                        return answer
        return self._add(start, duration)

    def _add(self, start: datetime, duration: timedelta) -> datetime:
        """``add`` for any aware argument and duration, on the UTC time line."""
        try:  # since_epoch inlined, as in elapsed
            tz: Any = start.tzinfo  # a real zone whenever the cache knows it
            if tz is UTC:  # how the library stores instants: no zone to consult either way
                a = start - EPOCH
                e = None
            else:
                e = WALL_EPOCHS.get(id(tz))
                if e is not None and type(start) is datetime:
                    a = start - e - tz.utcoffset(start)
                else:
                    a = since_epoch(start, "start")
                    e = wall_epoch(tz)
        except (AttributeError, TypeError):
            since_epoch(start, "start")
            raise
        if type(duration) is not timedelta:
            duration = _duration(duration)
        if not duration:
            return start
        index = self._cache.index
        m = index.mirror if index is not None else None
        if m is not None and duration > _ZERO and m.lo <= a < m.hi:
            # The common case, on the timedelta mirror: the answer lies in the index.
            i = bisect_right(m.starts, a) - 1
            target = (m.base[i] + a if a < m.ends[i] else m.cum_end[i]) + duration
            k = bisect_left(m.cum_end, target)
            if k < m.n:
                utc = target - m.base[k]
                answer: datetime = EPOCH + utc if e is None else tz.fromutc(e + utc)
                if tz is self.tz or e is None:
                    self._warm_wall()
                return answer
        result = self.add_us(a // MICROSECOND, duration // MICROSECOND)
        self._index_for(result, result).timedeltas()  # warm the mirror for the next call
        return from_us(result, tz)

    def elapsed_us(self, start: int, end: int) -> int:
        """``elapsed`` on the integer time line: microseconds since the epoch in and out.

        For engines that keep instants as integers (the SLA clock does): no datetime is
        created or converted.
        """
        lo, hi = (start, end) if start <= end else (end, start)
        if hi - lo > _LONG_US:
            return self._measure(lo, hi) if start <= end else -self._measure(lo, hi)
        index = self._index_for(lo, hi)
        return index.position(end) - index.position(start)

    def ruler(self, start: int, end: int) -> Ruler:
        """A ruler over ``[start, end]`` for engines that measure many spans at once.

        Its positions (business microseconds from an arbitrary origin) are comparable with
        each other, so one lookup per instant serves every span that shares it.
        """
        if abs(end - start) > _LONG_US:
            return _FarRuler(self, min(start, end))
        index = self._index_for(min(start, end), max(start, end))
        ruler = index.ruler
        if ruler is None:  # one per index: an engine asks for thousands of rulers a second
            ruler = index.ruler = Ruler(self, index)
        return ruler

    def add_us(self, a: int, d: int) -> int:
        """``add`` on the integer time line: microseconds since the epoch in and out."""
        if d == 0:
            return a
        if abs(d) > _LONG_US:  # the answer lies more than ten years away
            return self._add_far(a, d)
        return self._add_near(a, d, far=True)

    def _add_near(self, a: int, d: int, *, far: bool) -> int:
        """``add_us`` on the index, grown as far as the answer; past ten years, ``_add_far``."""
        index = self._index_for(a, a)
        target = index.position(a) + d
        while True:
            if d > 0:
                i = bisect_left(index.cum_end, target)
                if i < len(index.starts):
                    return target - index.base[i]
            else:
                i = bisect_right(index.cum, target) - 1
                if i > 0:
                    return target - index.base[i]
            if far and (index.hi - a if d > 0 else a - index.lo) > _LONG_US:
                return self._add_far(a, d)
            grown = self._grow_for(index, a, d)
            # Positions are relative to the index's start: carry the target over.
            target += grown.position(a) - index.position(a)
            index = grown

    def _add_far(self, a: int, d: int) -> int:
        """``add_us`` by arithmetic: whole stretches measured, the last few weeks indexed.

        Steps of as many weeks as the remaining business time would fill on the weekly
        schedule alone; a step that overshoots (an extra opening, a longer day at a DST
        change) is halved, one that finds no open time (a long closure) doubled.
        """
        forward = d > 0
        left = abs(d)
        what = f"adding {MICROSECOND * d}" if forward else f"counting back {MICROSECOND * -d}"
        t = a
        week = self._long().total
        step = max(left // week, 1) * _WEEK_US
        while True:
            guess = min(t + step, _MAX_US - 1) if forward else max(t - step, _MIN_US)
            span = (t, guess) if forward else (guess, t)
            found = self._measure(*span, index=False)  # one-off steps: nothing indexed
            if found < left:
                if guess in {_MAX_US - 1, _MIN_US}:
                    raise ValidationError(
                        f"no open time left within the years 1 to 9999 for {what}"
                    )
                t, left = guess, left - found
                step = step * 2 if not found else max(left // week, 1) * _WEEK_US
            elif step <= 8 * _WEEK_US:  # the answer lies within a few weeks: on the index
                return self._add_near(t, left if forward else -left, far=False)
            else:
                step //= 2

    def _grow_for(self, index: _Index, a: int, d: int) -> _Index:
        """An index reaching further from ``a`` in the direction of ``d``, within the limits."""
        what = f"adding {MICROSECOND * d}" if d > 0 else f"counting back {MICROSECOND * -d}"
        if index.hi >= _MAX_US if d > 0 else index.lo <= _MIN_US:
            raise ValidationError(f"no open time left within the years 1 to 9999 for {what}")
        if index.hi - index.lo < _MAX_SPAN_US:  # grow it (by at least its own width)
            return (
                self._cover(index.lo, index.hi)
                if d > 0
                else self._cover(index.lo - 1, index.hi - 1)
            )
        # A full segment, but mostly on the wrong side of ``a``: one from ``a`` onwards.
        if d > 0 and index.hi - a < _MAX_SPAN_US:
            return self._cover(a, min(a + _MAX_SPAN_US, _MAX_US - 1))
        if d < 0 and a - index.lo < _MAX_SPAN_US:
            return self._cover(max(a - _MAX_SPAN_US, _MIN_US), a)
        raise ValidationError(
            f"{what} of business time reaches past {MAX_SPAN.days:,} days of time, the most one "
            "question may cover"
        )

    def is_open(self, at: datetime) -> bool:
        """Whether business time is running at ``at``."""
        t = to_us(at, "at")
        index = self._index_for(t, t)
        i = bisect_right(index.starts, t) - 1
        return t < index.ends[i]

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself if open, else the next instant at which the calendar opens."""
        t = to_us(at, "at")
        index = self._index_for(t, t)
        while True:
            i = bisect_right(index.starts, t) - 1
            if t < index.ends[i]:
                return at
            if i + 1 < len(index.starts):
                return from_us(index.starts[i + 1], at.tzinfo or UTC)
            index = self._grow_right(index)

    def next_close(self, at: datetime) -> datetime:
        """The end of the open interval containing ``at``, or else of the next one.

        Raises:
            ValidationError: the calendar never closes after ``at`` (open around the clock
                with no holiday or closure to come: refused at once), or not within
                ``MAX_SPAN``.
        """
        t = to_us(at, "at")
        if (
            all(day == ((0, _DAY_S),) for day in self.week)
            and not self.holidays
            and isinstance(self.holidays, frozenset)
            and all(b <= t for _, b in self.closures)
        ):
            raise ValidationError(
                "the calendar is open around the clock with no holiday or closure after "
                f"{at.isoformat()}: it never closes"
            )
        index = self._index_for(t, t)
        while True:
            i = bisect_right(index.starts, t) - 1
            if t >= index.ends[i]:
                i += 1
            # An interval reaching the end of the index may go on beyond it.
            if i < len(index.starts) and index.ends[i] < index.hi:
                return from_us(index.ends[i], at.tzinfo or UTC)
            index = self._grow_right(index)

    def previous_open(self, at: datetime) -> datetime:
        """The latest instant at or before ``at`` at which the calendar opened.

        The start of the open interval containing ``at``, or else of the last one before it.
        """
        t = to_us(at, "at")
        index = self._index_for(t, t)
        while True:
            i = bisect_right(index.starts, t) - 1
            # An interval reaching the start of the index may have begun before it.
            if i >= 1 and index.starts[i] > index.lo:
                return from_us(index.starts[i], at.tzinfo or UTC)
            index = self._grow_left(index)

    def previous_close(self, at: datetime) -> datetime:
        """The latest instant at or before ``at`` at which the calendar closed."""
        t = to_us(at, "at")
        index = self._index_for(t, t)
        while True:
            i = bisect_right(index.starts, t) - 1
            if t < index.ends[i] or i == 0:
                i -= 1  # open at ``t`` (or nothing before it here): the one before
            if i >= 1:
                return from_us(index.ends[i], at.tzinfo or UTC)
            index = self._grow_left(index)

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` (a local date in the calendar's zone) has any open time."""
        if not isinstance(day, date) or isinstance(day, datetime):
            raise ValidationError(f"day must be a date, got {day!r}")
        tz = self.tz
        # Naive wall times on purpose: read in the calendar's zone just below.
        start = datetime(day.year, day.month, day.day).replace(tzinfo=tz)  # noqa: DTZ001
        end = (datetime(day.year, day.month, day.day) + timedelta(days=1)).replace(tzinfo=tz)  # noqa: DTZ001
        return self.elapsed(start, end) > _ZERO

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same wall-clock time ``days`` working days after ``start`` (before, if negative).

        A working day is a local date with open time (see :meth:`is_working_day`); the date of
        ``start`` itself does not count. ``add_working_days(fri_10am, 1)`` is Monday 10:00 on
        a Mon-Fri calendar.
        """
        require_aware(start, "start")
        if isinstance(days, bool) or not isinstance(days, int):
            raise ValidationError(f"days must be a whole number, got {days!r}")
        if abs(days) > MAX_SPAN.days:
            raise ValidationError(f"at most {MAX_SPAN.days:,} working days at once")
        local = start.astimezone(self.tz)
        day, step, left = local.date(), (1 if days > 0 else -1), abs(days)
        for _ in range(MAX_SPAN.days):
            if not left:
                break
            day += timedelta(days=step)
            if self.is_working_day(day):
                left -= 1
        else:
            raise ValidationError(
                f"fewer than {abs(days)} working days within {MAX_SPAN.days:,} days"
            )
        wall = datetime.combine(day, local.time()).replace(tzinfo=self.tz, fold=local.fold)
        return wall.astimezone(start.tzinfo)

    def working_days(self, start: datetime, end: datetime) -> int:
        """Working days after ``start``'s local date up to and including ``end``'s.

        When ``end`` is before ``start``: minus the working days from ``end``'s date up to
        (not including) ``start``'s. The inverse of :meth:`add_working_days` either way.
        """
        first = require_aware(start, "start").astimezone(self.tz).date()
        last = require_aware(end, "end").astimezone(self.tz).date()
        if abs((last - first).days) > MAX_SPAN.days:
            raise ValidationError(f"at most {MAX_SPAN.days:,} days apart")
        if first <= last:
            days = [first + timedelta(days=k) for k in range(1, (last - first).days + 1)]
            return sum(map(self.is_working_day, days))
        days = [last + timedelta(days=k) for k in range((first - last).days)]
        return -sum(map(self.is_working_day, days))

    def _grow_left(self, index: _Index) -> _Index:
        if index.lo <= _MIN_US:
            raise ValidationError("the calendar has no open time after the year 1")
        if index.hi - index.lo >= _MAX_SPAN_US:
            raise ValidationError(
                f"the calendar does not change between open and closed within {MAX_SPAN.days:,}"
                " days before, the most one question may cover"
            )
        return self._cover(index.lo - 1, index.hi - 1)

    def _grow_right(self, index: _Index) -> _Index:
        if index.hi >= _MAX_US:
            raise ValidationError("the calendar has no open time before the year 9999")
        if index.hi - index.lo >= _MAX_SPAN_US:
            raise ValidationError(
                f"the calendar does not change between open and closed within {MAX_SPAN.days:,}"
                " days, the most one question may cover (a calendar always open never closes)"
            )
        return self._cover(index.lo, index.hi)

    def open_intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The maximal open intervals within ``[start, end)``, clipped to it."""
        a, b = to_us(start, "start"), to_us(end, "end")
        if b <= a:
            return []
        index = self._index_for(a, b)
        tz = start.tzinfo or UTC
        first = max(bisect_right(index.starts, a) - 1, 1)
        last = bisect_left(index.starts, b)
        return [
            (from_us(s, tz), from_us(e, tz))
            for s, e in _clip(index.intervals[first - 1 : last - 1], a, b)
        ]

    # ----------------------------------------------------------------------- batches

    @overload
    def elapsed_many(
        self, starts: Sequence[datetime], ends: Sequence[datetime]
    ) -> list[timedelta]: ...
    @overload
    def elapsed_many(self, starts: Any, ends: Any) -> Any: ...  # numpy / pandas arrays

    def elapsed_many(self, starts: Batch, ends: Batch) -> Any:
        """``elapsed`` for many pairs at once: the notebook path.

        Takes sequences of aware datetimes and returns a list of timedeltas, or takes numpy
        ``datetime64`` arrays (read as UTC) or tz-aware pandas columns and returns a numpy
        ``timedelta64[us]`` array without creating a Python object per row. Uses numpy when it
        is installed (the ``numpy`` extra) and a plain loop otherwise; answers are identical
        to ``elapsed`` element by element. A missing value (``None``, ``NaT``, NaN) gives a
        missing answer for its row (``None`` in a list, ``NaT`` in an array).

        >>> from datetime import UTC, datetime
        >>> cal = BusinessCalendar.always()
        >>> cal.elapsed_many([datetime(2025, 1, 1, tzinfo=UTC)], [datetime(2025, 1, 2, tzinfo=UTC)])
        [datetime.timedelta(days=1)]
        """
        np = _find_numpy()
        if np is not None and (_is_array(starts) or _is_array(ends)):
            (a, gap_a), (b, gap_b) = _us_array(np, starts, "starts"), _us_array(np, ends, "ends")
            _same_length(len(a), len(b), "ends")
            gap = gap_a | gap_b
            out = np.zeros(len(a), dtype=np.int64)
            if not gap.all():
                a, b = a[~gap], b[~gap]
                lo, hi = int(min(a.min(), b.min())), int(max(a.max(), b.max()))
                if hi - lo > _LONG_US:  # rows decades apart: each on its own
                    pairs = zip(a.tolist(), b.tolist(), strict=True)
                    out[~gap] = [self.elapsed_us(x, y) for x, y in pairs]
                else:
                    index = self._index_for(lo, hi)
                    out[~gap] = _positions(np, index, b) - _positions(np, index, a)
            answers = out.view("timedelta64[us]")
            answers[gap] = np.timedelta64("NaT")
            return answers
        starts, ends = list(starts), list(ends)
        _same_length(len(starts), len(ends), "ends")
        gaps = [_missing(x) or _missing(y) for x, y in zip(starts, ends, strict=True)]
        if any(gaps):  # answer the rest; a missing value's row stays missing
            kept = iter(self.elapsed_many(*_present(gaps, starts, ends)))
            return [None if gap else next(kept) for gap in gaps]
        # Python objects in and out: the scalar path per pair is the fastest there is (on the
        # calendar's wall clock when they are in its zone); converting every datetime to an
        # integer for numpy and back cost more than it saved.
        spans: list[timedelta] = []
        try:
            spans.extend(map(self.elapsed, starts, ends))
        except ValidationError:
            _name_bad(len(spans), starts, "starts", ends, "ends")
            raise
        return spans

    @overload
    def add_many(
        self, starts: Sequence[datetime], durations: Sequence[timedelta]
    ) -> list[datetime]: ...
    @overload
    def add_many(self, starts: Any, durations: Any) -> Any: ...  # numpy / pandas arrays

    def add_many(self, starts: Batch, durations: Batch) -> Any:
        """``add`` for many pairs at once: the notebook path.

        Takes sequences of aware datetimes and timedeltas and returns a list of datetimes (each
        in its start's zone), or takes arrays (numpy ``datetime64`` read as UTC, tz-aware
        pandas columns, ``timedelta64`` durations) and returns a numpy ``datetime64[us]``
        array in UTC. Answers are identical to ``add`` element by element. A missing value
        (``None``, ``NaT``, NaN) gives a missing answer for its row.
        """
        np = _find_numpy()
        arrays = np is not None and (_is_array(starts) or _is_array(durations))
        if arrays:
            a_np, gap_a = _us_array(np, starts, "starts")
            d_np, gap_d = _duration_array(np, durations)
            _same_length(len(a_np), len(d_np), "durations")
            gap = gap_a | gap_d
            out_np = np.zeros(len(a_np), dtype=np.int64)
            if not gap.all():
                out_np[~gap] = self._add_np(np, a_np[~gap], d_np[~gap])
            answers = out_np.view("datetime64[us]")
            answers[gap] = np.datetime64("NaT")
            return answers
        starts, durations = list(starts), list(durations)
        _same_length(len(starts), len(durations), "durations")
        gaps = [_missing(x) or _missing(y) for x, y in zip(starts, durations, strict=True)]
        if any(gaps):  # answer the rest; a missing value's row stays missing
            kept = iter(self.add_many(*_present(gaps, starts, durations)))
            return [None if gap else next(kept) for gap in gaps]
        instants: list[datetime] = []
        try:
            instants.extend(map(self.add, starts, durations))  # the scalar path (elapsed_many)
        except ValidationError:
            _name_bad(len(instants), starts, "starts")
            _duration(durations[len(instants)])  # "duration must be a timedelta, got int"
            raise
        return instants

    def _add_np(self, np: Any, a: Any, d: Any) -> Any:
        """Vectorised ``add_us`` over int64 microsecond arrays."""
        if not len(a):
            return a
        if int(a.max()) - int(a.min()) > _LONG_US:  # starts decades apart: each on its own
            pairs = zip(a.tolist(), d.tolist(), strict=True)
            return np.array([self.add_us(x, y) for x, y in pairs], dtype=np.int64)
        index = self._index_for(int(a.min()), int(a.max()))
        _, _, cum, cum_end, base = index.arrays()
        target = _positions(np, index, a) + d
        forward = np.searchsorted(cum_end, target, side="left")
        backward = np.searchsorted(cum, target, side="right") - 1
        pick = np.where(d > 0, forward, backward)
        found = (pick > 0) & (pick < len(cum))
        out = np.where(d == 0, a, target - base[np.clip(pick, 0, len(cum) - 1)])
        # An answer beyond the indexed range (a long duration) takes the growing scalar path.
        for k in np.flatnonzero(~found & (d != 0)).tolist():
            out[k] = self.add_us(int(a[k]), int(d[k]))
        return out


Batch = Sequence[datetime] | Sequence[timedelta] | Any
"""A list of datetimes (or timedeltas), or a numpy / pandas array of them."""


def _name_bad(k: int, *columns: Any) -> None:
    """Raise the error of element ``k`` under its list's name (``ends[1] ... is naive``)."""
    for values, name in zip(columns[::2], columns[1::2], strict=True):
        since_epoch(values[k], f"{name}[{k}]")


def _find_numpy() -> Any:
    try:
        import numpy as np  # noqa: PLC0415 - optional: the batch paths are faster with it
    except ImportError:  # pragma: no cover - numpy is in the test extra
        return None
    return np


def _positions(np: Any, index: _Index, t: Any) -> Any:
    """Vectorised ``_Index.position`` over an int64 array."""
    starts, ends, _, cum_end, base = index.arrays()
    i = np.searchsorted(starts, t, side="right") - 1
    return np.where(t < ends[i], base[i] + t, cum_end[i])


def _is_array(values: object) -> bool:
    return hasattr(values, "dtype")


def _same_length(n: int, m: int, other: str) -> None:
    if n != m:
        raise ValidationError(f"got {n} starts but {m} {other}; pass them in pairs")


_UNIT_US: Final = {"s": (US_PER_SECOND, 1), "ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}


def _missing(value: object) -> bool:
    """``None``, ``NaT`` or NaN: a value an analyst's column lacks."""
    return value is None or value != value  # noqa: PLR0124 - NaT and NaN are not themselves


def _present(gaps: list[bool], *columns: list[Any]) -> list[list[Any]]:
    return [[v for v, gap in zip(column, gaps, strict=True) if not gap] for column in columns]


def _us_array(np: Any, values: Any, name: str) -> tuple[Any, Any]:
    """Epoch microseconds (int64) of datetime64 or tz-aware pandas values, and the gaps.

    The gaps are where values are missing (``NaT``, ``None``); their microseconds are 0.
    """
    array = getattr(values, "array", values)  # a pandas Series holds a DatetimeArray
    if hasattr(array, "asi8") and hasattr(array, "tz"):  # pandas DatetimeArray / DatetimeIndex
        if array.tz is None:
            raise ValidationError(
                f"{name} holds naive pandas timestamps; tz_localize them to their zone first"
            )
        mul, div = _UNIT_US[getattr(array, "unit", "ns")]
        gap = np.asarray(array.isna(), dtype=bool)
        return np.where(gap, 0, np.asarray(array.asi8, dtype=np.int64) * mul // div), gap
    values = np.asarray(values)
    if values.dtype.kind == "M":  # numpy datetime64 carries no zone: it counts UTC instants
        gap = np.isnat(values)
        return np.where(gap, 0, values.astype("datetime64[us]").view(np.int64)), gap
    items = values.tolist()
    gap = np.array([_missing(v) for v in items], dtype=bool)
    present = [v for v, g in zip(items, gap.tolist(), strict=True) if not g]
    out = np.zeros(len(items), dtype=np.int64)
    out[~gap] = _us_list(present, name)
    return out, gap


def _duration_array(np: Any, values: Any) -> tuple[Any, Any]:
    """Durations as int64 microseconds, and where they are missing."""
    values = np.asarray(values)
    if values.dtype.kind == "m":
        gap = np.isnat(values)
        return np.where(gap, 0, values.astype("timedelta64[us]").view(np.int64)), gap
    items = values.tolist()
    gap = np.array([_missing(v) for v in items], dtype=bool)
    try:
        found = [v // MICROSECOND for v, g in zip(items, gap.tolist(), strict=True) if not g]
    except TypeError as exc:
        raise ValidationError("durations must be timedeltas") from exc
    out = np.zeros(len(items), dtype=np.int64)
    out[~gap] = found
    return out, gap


def _us_list(values: Iterable[Any], name: str) -> list[int]:
    """Microseconds since the epoch of aware datetimes; ``ValidationError`` names a naive one."""
    values = list(values)
    tz = _shared_zone(values)
    try:
        if tz is not None:  # one zone for all: subtract wall clocks (see _time.wall_epoch)
            walls = map(sub, values, repeat(wall_epoch(tz)))
            deltas = map(sub, walls, map(tz.utcoffset, values))
        else:
            deltas = map(sub, values, repeat(EPOCH))
        return list(map(floordiv, deltas, repeat(MICROSECOND)))
    except TypeError:
        for k, value in enumerate(values):
            require_aware(value, f"{name}[{k}]")
        raise


def _shared_zone(values: list[Any]) -> tzinfo | None:
    """The tzinfo all ``values`` carry if they are plain datetimes in one non-UTC zone."""
    if not values or not all(map(is_, map(type, values), repeat(datetime))):
        return None
    tz = values[0].tzinfo
    if tz is None or tz is UTC or not all(map(is_, map(_TZINFO, values), repeat(tz))):
        return None
    return tz  # type: ignore[no-any-return]


_TZINFO: Final = attrgetter("tzinfo")
