"""Aware-datetime helpers shared by every module that takes an instant.

The library counts time in integer microseconds since the Unix epoch (UTC): exact, cheap to
compare and free of float rounding. These helpers are the one place where datetimes cross
into and out of that representation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsmcore.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_OFFSET = re.compile(r"(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The origin of the microsecond time line."""

MICROSECOND = timedelta(microseconds=1)
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND


def require_aware(value: object, name: str = "datetime") -> datetime:
    """Return ``value`` if it is a timezone-aware datetime, else raise ``ValidationError``."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{name} {value.isoformat()} is naive; pass an aware datetime "
            "(e.g. datetime(..., tzinfo=ZoneInfo('Europe/Berlin')) or tzinfo=UTC)"
        )
    return value


def wall_epoch(tz: tzinfo) -> datetime:
    """The epoch's wall-clock reading ``1970-01-01 00:00`` carrying ``tz`` (cached per zone).

    Two datetimes that carry the *same* tzinfo object subtract as wall clocks, without asking
    the zone for an offset, and ``tz.fromutc`` takes a UTC reading carrying ``tz``. Both are
    several times cheaper than CPython's general aware arithmetic (which converts each operand
    to UTC through ``utcoffset``), so the hot paths convert through this instead:

    * instant -> timeline: ``(value - wall_epoch(tz)) - tz.utcoffset(value)``
    * timeline -> instant: ``tz.fromutc(wall_epoch(tz) + delta)`` (what ``astimezone`` does)

    Only plain ``datetime`` instances may take that route: subclasses such as pandas'
    ``Timestamp`` subtract in UTC even when the zones are the same.
    """
    # Keyed by identity: some tzinfo types (dateutil's) are unhashable, equal zones need not
    # be the same object, and the entry's own reference keeps the id from being reused.
    epoch = WALL_EPOCHS.get(id(tz))
    if epoch is None:
        if len(WALL_EPOCHS) >= WALL_EPOCHS_MAX:  # unbounded zones must not leak memory
            WALL_EPOCHS.clear()
            WALL_EPOCHS[id(UTC)] = EPOCH
        epoch = WALL_EPOCHS[id(tz)] = datetime(1970, 1, 1, tzinfo=tz)
    return epoch


WALL_EPOCHS: dict[int, datetime] = {id(UTC): EPOCH}
"""``wall_epoch``'s cache by ``id(tz)``, read inline by hot paths; always holds ``UTC``."""
WALL_EPOCHS_MAX = 256


def since_epoch(value: datetime, name: str = "datetime") -> timedelta:
    """The time from the epoch to an aware datetime (``ValidationError`` if naive)."""
    try:
        tz = value.tzinfo
        if tz is not UTC and tz is not None and type(value) is datetime:
            offset = tz.utcoffset(value)
            if offset is not None:
                return value - wall_epoch(tz) - offset
        return value - EPOCH
    except (AttributeError, TypeError):
        require_aware(value, name)
        raise  # pragma: no cover - require_aware raised for every cause


def to_us(value: datetime, name: str = "datetime") -> int:
    """Microseconds since the epoch of an aware datetime (``ValidationError`` if naive)."""
    return since_epoch(value, name) // MICROSECOND


def from_us(us: int, tz: tzinfo = UTC) -> datetime:
    """The aware datetime ``us`` microseconds after the epoch, shown in ``tz``."""
    # timedelta * int is about twice as fast as timedelta(microseconds=...): this is a hot path.
    try:
        if tz is UTC:
            return EPOCH + MICROSECOND * us
        return tz.fromutc(wall_epoch(tz) + MICROSECOND * us)
    except OverflowError:
        raise ValidationError(
            f"the answer lies {us // US_PER_DAY:,} days from 1970, beyond the years 1 to 9999 "
            "a datetime can hold"
        ) from None


def to_utc(value: datetime, name: str = "datetime") -> datetime:
    """``value`` converted to UTC (``ValidationError`` if naive)."""
    return require_aware(value, name).astimezone(UTC)


def zone(key: str | tzinfo) -> tzinfo:
    """Resolve an IANA zone name, a fixed offset (``"+01:00"``) or a tzinfo; unknown raise.

    A pytz zone is read as the IANA zone of the same name: its own tzinfo, used on a naive
    wall time, would answer with the zone's local mean time (Berlin 0:53, Santiago -4:43)
    and shift every opening hour.
    """
    if isinstance(key, tzinfo):
        name = getattr(key, "zone", None)
        if isinstance(name, str) and hasattr(key, "localize"):  # pytz
            return zone(name)
        return key
    if not isinstance(key, str) or not key:
        msg = f"time zone must be an IANA name such as 'Europe/Berlin', got {key!r}"
        raise ValidationError(msg)
    offset = _OFFSET.fullmatch(key.strip())
    if offset is not None:
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta >= timedelta(hours=24):
            raise ValidationError(f"offset {key!r} is not less than a day")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # "Europe" is a directory
        raise ValidationError(
            f"unknown time zone {key!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc


# --------------------------------------------------------------------------- wall clocks


def earliest_instant(wall: datetime, tz: tzinfo) -> int:
    """The earliest instant (µs) at which ``tz``'s wall clock reads naive ``wall`` or later.

    A time that exists once is that instant; a repeated one (the fall-back hour) its first
    occurrence; one in a spring gap the jump itself. Calendars read opening hours and
    windows read their spans this way.
    """
    first = (wall.replace(tzinfo=tz) - EPOCH) // MICROSECOND
    if from_us(first, tz).replace(tzinfo=None) == wall:
        return first  # the wall time exists; fold=0 picked its first occurrence
    # A wall time in a spring gap: fold=0 read it with the offset before the jump, which
    # lands after the jump; fold=1 reads it with the offset after, which lands before.
    # The jump lies between the two; find it to the second (zone offsets are whole seconds).
    lo = (wall.replace(tzinfo=tz, fold=1) - EPOCH) // MICROSECOND // US_PER_SECOND
    hi = first // US_PER_SECOND
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if from_us(mid * US_PER_SECOND, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi * US_PER_SECOND


# --------------------------------------------------------------------------- spans
# Half-open (start, end) pairs of microseconds, sorted and disjoint unless said otherwise.

Span = tuple[int, int]


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted spans joined where they overlap or touch."""
    out: list[Span] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract_spans(spans: list[Span], holes: Sequence[Span]) -> list[Span]:
    """Sorted disjoint ``spans`` minus sorted disjoint ``holes``."""
    if not holes:
        return spans
    out = []
    k = 0
    for a, b in spans:
        while k < len(holes) and holes[k][1] <= a:
            k += 1
        j = k
        start = a
        while j < len(holes) and holes[j][0] < b:
            if holes[j][0] > start:
                out.append((start, holes[j][0]))
            start = max(start, holes[j][1])
            j += 1
        if start < b:
            out.append((start, b))
    return out


def intersect_spans(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The spans in both of two sorted disjoint span lists."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
