"""Aware-datetime helpers shared by every module that takes an instant.

The library counts time in integer microseconds since the Unix epoch (UTC): exact, cheap to
compare and free of float rounding. These helpers are the one place where datetimes cross
into and out of that representation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsmcore.errors import ValidationError

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
