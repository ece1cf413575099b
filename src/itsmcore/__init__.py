"""itsmcore: IT service management as a small, exact, typed library."""

from itsmcore.calendar import BusinessCalendar
from itsmcore.clock import Clock, ManualClock, SystemClock
from itsmcore.errors import (
    ConcurrencyError,
    DefinitionError,
    InvalidTransitionError,
    ItsmError,
    NotFoundError,
    ValidationError,
)

__all__ = [
    "BusinessCalendar",
    "Clock",
    "ConcurrencyError",
    "DefinitionError",
    "InvalidTransitionError",
    "ItsmError",
    "ManualClock",
    "NotFoundError",
    "SystemClock",
    "ValidationError",
]
