"""The error hierarchy: one base class, each subclass also the builtin it refines.

Callers can catch ``ItsmError`` for everything the library raises on purpose, or keep
their existing ``except ValueError`` / ``except KeyError`` clauses: ``ValidationError`` and
``DefinitionError`` are ValueErrors, ``NotFoundError`` is a ``KeyError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable

__all__ = [
    "ConcurrencyError",
    "DefinitionError",
    "InvalidTransitionError",
    "ItsmError",
    "NotFoundError",
    "ValidationError",
]


class ItsmError(Exception):
    """Base class of every error itsmcore raises deliberately."""


class ValidationError(ItsmError, ValueError):
    """An argument is not acceptable: a naive datetime, an unknown label, an end before a start."""


class DefinitionError(ItsmError, ValueError):
    """A lifecycle, calendar or SLA definition that cannot work as written.

    Raised when the definition is built, not when it is first used, so a broken
    definition fails at import time rather than in production.
    """


class InvalidTransitionError(ItsmError):
    """A lifecycle trigger that is not possible from the record's current state.

    Attributes:
        trigger: the trigger that was refused.
        state: the state the record was in (unchanged).
        allowed: the triggers that *are* possible from that state.
    """

    def __init__(
        self, trigger: str, state: object, allowed: Iterable[str], reason: str = ""
    ) -> None:
        self.trigger = trigger
        self.state = state
        self.allowed: tuple[str, ...] = tuple(allowed)
        self.reason = reason
        options = ", ".join(self.allowed) if self.allowed else "none (the state is terminal)"
        why = f" ({reason})" if reason else ""
        super().__init__(f"cannot {trigger!r} from state {state!s}{why}; allowed: {options}")


class ConcurrencyError(ItsmError):
    """A save lost an optimistic-concurrency race: the stored version moved on.

    Attributes:
        record_id: the record that was being saved.
        expected: the version the record was loaded at.
        actual: the version found in the store.
    """

    def __init__(self, record_id: Hashable, expected: int, actual: int) -> None:
        self.record_id = record_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"record {record_id!r} was loaded at version {expected} but the store holds "
            f"version {actual}; reload it and apply the change again"
        )


class NotFoundError(ItsmError, KeyError):
    """No record with the requested id exists."""

    def __init__(self, record_id: Hashable, kind: str = "record") -> None:
        self.record_id = record_id
        self.kind = kind
        super().__init__(f"no {kind} with id {record_id!r}")

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and show it in quotes.
        return str(self.args[0])
