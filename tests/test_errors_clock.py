from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from itsmcore import (
    Clock,
    ConcurrencyError,
    DefinitionError,
    InvalidTransitionError,
    ItsmError,
    ManualClock,
    NotFoundError,
    SystemClock,
    ValidationError,
)


def test_errors_refine_the_builtins_callers_already_catch() -> None:
    assert issubclass(ValidationError, ValueError)
    assert issubclass(DefinitionError, ValueError)
    assert issubclass(NotFoundError, KeyError)
    for cls in (ValidationError, DefinitionError, NotFoundError, ConcurrencyError):
        assert issubclass(cls, ItsmError)
    assert issubclass(InvalidTransitionError, ItsmError)


def test_structured_fields_and_actionable_messages() -> None:
    err = InvalidTransitionError("close", "NEW", ["assign", "cancel"])
    assert (err.trigger, err.state, err.allowed) == ("close", "NEW", ("assign", "cancel"))
    assert "assign, cancel" in str(err)
    terminal = InvalidTransitionError("reopen", "CLOSED", [])
    assert "terminal" in str(terminal)
    conflict = ConcurrencyError("INC1", expected=3, actual=4)
    assert (conflict.record_id, conflict.expected, conflict.actual) == ("INC1", 3, 4)
    assert "version 3" in str(conflict)
    assert "version 4" in str(conflict)
    missing = NotFoundError("INC9", kind="incident")
    assert str(missing) == "no incident with id 'INC9'"
    with pytest.raises(KeyError):
        raise missing


def test_manual_clock_moves_only_forward_and_reports_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock = ManualClock(datetime(2025, 3, 30, 1, 30, tzinfo=berlin))
    assert isinstance(clock, Clock)
    assert clock.now() == datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert clock.advance(timedelta(hours=1)) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert clock.set(datetime(2025, 4, 1, tzinfo=berlin)) == datetime(2025, 3, 31, 22, tzinfo=UTC)
    with pytest.raises(ValidationError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValidationError, match="backwards"):
        clock.set(datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError, match="naive"):
        clock.set(datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="naive"):
        ManualClock(datetime(2026, 1, 1))
    assert clock.now() == datetime(2025, 3, 31, 22, tzinfo=UTC)


def test_system_clock_is_aware() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert isinstance(SystemClock(), Clock)
