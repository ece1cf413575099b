"""Sources of "now": the library never reads the wall clock itself.

Every operation that happens takes an explicit ``at=``. Applications that want "now" inject a
``Clock``: ``SystemClock`` in production, ``ManualClock`` in tests and simulations.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from itsmcore._time import require_aware, to_utc
from itsmcore.errors import ValidationError

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` returning an aware datetime."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


@attrs.frozen
class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(UTC)


@attrs.define
class ManualClock:
    """A clock that moves only when told to: deterministic tests and replays.

    >>> from datetime import UTC, datetime, timedelta
    >>> clock = ManualClock(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    >>> clock.advance(timedelta(hours=2)).isoformat()
    '2025-03-03T11:00:00+00:00'
    """

    _now: datetime = attrs.field(alias="start", converter=to_utc)

    def now(self) -> datetime:
        """The instant the clock was last set or advanced to (UTC)."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (never backwards) and return the new instant."""
        if not isinstance(delta, timedelta):
            raise ValidationError(f"delta must be a timedelta, got {type(delta).__name__}")
        if delta < timedelta(0):
            raise ValidationError(f"a clock does not run backwards; got advance({delta!r})")
        self._now += delta
        return self._now

    def set(self, at: datetime) -> datetime:
        """Jump to ``at`` (aware, not earlier than now) and return it in UTC."""
        target = to_utc(require_aware(at, "at"), "at")
        if target < self._now:
            raise ValidationError(
                f"a clock does not run backwards: now is {self._now.isoformat()}, "
                f"asked for {target.isoformat()}"
            )
        self._now = target
        return self._now
