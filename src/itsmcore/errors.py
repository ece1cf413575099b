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
    "ClosedError",
    "ConcurrencyError",
    "CorruptionError",
    "DefinitionError",
    "DuplicateIdError",
    "FormError",
    "InvalidTransitionError",
    "ItsmError",
    "NotFoundError",
    "SegregationOfDutiesError",
    "StoreBusyError",
    "TransientError",
    "ValidationError",
]


class ItsmError(Exception):
    """Base class of every error itsmcore raises deliberately."""


class ValidationError(ItsmError, ValueError):
    """An argument is not acceptable: a naive datetime, an unknown label, an end before a start."""


class SegregationOfDutiesError(ValidationError):
    """Someone acting on their own record where the rules forbid it (approving their change)."""


class FormError(ValidationError):
    """A form value a catalog item refuses: missing, unknown, of the wrong type or out of range.

    Attributes:
        field: the name of the form field at fault.
        problem: what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"field {field!r}: {problem}")


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
        self,
        trigger: str,
        state: object,
        allowed: Iterable[str],
        reason: str = "",
        *,
        terminal: bool = True,
    ) -> None:
        self.trigger = trigger
        self.state = state
        self.allowed: tuple[str, ...] = tuple(allowed)
        self.reason = reason
        if self.allowed:
            options = ", ".join(self.allowed)
        elif terminal:
            options = "none (the state is terminal)"
        else:
            options = "none now (a guard refuses every way out of this state)"
        why = f" ({reason})" if reason else ""
        super().__init__(f"cannot {trigger!r} from state {state!s}{why}; allowed: {options}")


class TransientError(ItsmError):
    """An operation that may succeed if done again: a lost race, a lock wait that timed out.

    Nothing of the unit of work was written. Retry it in a new unit of work (or in the same
    one: after a failed commit it reads the store afresh); ``itsmcore.storage`` stores raise
    the subclasses below.
    """


class ConcurrencyError(TransientError):
    """A save lost an optimistic-concurrency race: the stored version moved on.

    Attributes:
        record_id: the record that was being saved.
        expected: the version the record was loaded at.
        actual: the version found in the store (``None`` when the race was lost on a lock,
            e.g. a deadlock the database broke, before the version could be read).
    """

    def __init__(self, record_id: Hashable, expected: int, actual: int | None) -> None:
        self.record_id = record_id
        self.expected = expected
        self.actual = actual
        found = (
            "another unit of work holds it (the database broke a deadlock)"
            if actual is None
            else f"the store holds version {actual}"
        )
        super().__init__(
            f"record {record_id!r} was loaded at version {expected} but {found}; reload it "
            "and apply the change again"
        )


class StoreBusyError(TransientError):
    """The store could not do it now: its write lock stayed taken, or the connection failed.

    Nothing was written; try again (the stores already wait for locks before raising this).
    """


class DuplicateIdError(ItsmError):
    """A new record was added under an id its kind already has in the store.

    Attributes:
        record_id: the id.
        kind: the record kind (``"incidents"``).
    """

    def __init__(self, record_id: Hashable, kind: str) -> None:
        self.record_id = record_id
        self.kind = kind
        super().__init__(
            f"{kind} already holds a record with id {record_id!r}; pick another id "
            "(or get() that one and save() it)"
        )


class CorruptionError(ItsmError):
    """Stored data that cannot be read back as it was written: the store, not the caller.

    Raised for rows that are not valid JSON, name an unknown event type, do not fit their
    event class, leave a gap in a history, or rebuild a record other than the row says.

    Attributes:
        kind: the record kind.
        record_id: the record.
        version: the stored event at fault (``None`` when it is the record as a whole).
    """

    def __init__(self, kind: str, record_id: Hashable, version: int | None, why: str) -> None:
        self.kind = kind
        self.record_id = record_id
        self.version = version
        where = f"{kind} {record_id!r}" + ("" if version is None else f", stored event {version}")
        super().__init__(f"{where}: {why}")


class ClosedError(ItsmError, RuntimeError):
    """A unit of work used after its ``with`` block (or a closed store): open a new one."""


class NotFoundError(ItsmError, KeyError):
    """No record with the requested id exists."""

    def __init__(self, record_id: Hashable, kind: str = "record") -> None:
        self.record_id = record_id
        self.kind = kind
        super().__init__(f"no {kind} with id {record_id!r}")

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and show it in quotes.
        return str(self.args[0])
