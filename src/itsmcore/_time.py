"""Aware-datetime helpers shared by every module that takes an instant.

The library counts time in integer microseconds since the Unix epoch (UTC): exact, cheap to
compare and free of float rounding. These helpers are the one place where datetimes cross
into and out of that representation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsmcore.errors import ValidationError

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


def to_us(value: datetime, name: str = "datetime") -> int:
    """Microseconds since the epoch of an aware datetime (``ValidationError`` if naive)."""
    try:
        return (value - EPOCH) // MICROSECOND
    except TypeError:
        require_aware(value, name)
        raise  # pragma: no cover - require_aware raised for every TypeError cause


def from_us(us: int, tz: tzinfo = UTC) -> datetime:
    """The aware datetime ``us`` microseconds after the epoch, shown in ``tz``."""
    # timedelta * int is about twice as fast as timedelta(microseconds=...): this is a hot path.
    instant = EPOCH + MICROSECOND * us
    return instant if tz is UTC else instant.astimezone(tz)


def to_utc(value: datetime, name: str = "datetime") -> datetime:
    """``value`` converted to UTC (``ValidationError`` if naive)."""
    return require_aware(value, name).astimezone(UTC)


def zone(key: str | tzinfo) -> tzinfo:
    """Resolve an IANA zone name (or pass a tzinfo through); unknown names raise."""
    if isinstance(key, tzinfo):
        return key
    if not isinstance(key, str) or not key:
        msg = f"time zone must be an IANA name such as 'Europe/Berlin', got {key!r}"
        raise ValidationError(msg)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            f"unknown time zone {key!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc
