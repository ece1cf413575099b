"""Persistence as a protocol: repositories of records, and units of work over them.

A store (``itsmcore.storage``) keeps every record's full event history, append-only and
keyed by ``(record id, version)``, plus a row of indexed columns per record for queries. A
``UnitOfWork`` is one transaction: it hands out one ``Repository`` per registered record
kind (``uow.incidents``; problems and changes register the same way later), stages what
is added and saved, and writes it all at ``commit()`` or nothing. Concurrency is
optimistic: a save lands only if the stored version is the one the record was loaded at;
otherwise ``ConcurrencyError`` and nothing of the unit of work is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import attrs

from itsmcore._time import to_us
from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.incident import Incident

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from datetime import datetime

    from itsmcore.events import Event

__all__ = [
    "COLUMNS",
    "Query",
    "RecordKind",
    "Repository",
    "UnitOfWork",
    "kinds",
    "register",
]

R = TypeVar("R")

COLUMNS = ("state", "priority", "assignment_group", "assignee", "service", "ci", "opened_at")
"""The indexed columns every store keeps per record, for ``find``."""


@attrs.frozen
class RecordKind(Generic[R]):
    """How a record type is stored: its name on the unit of work, rebuilding, columns.

    ``replay`` rebuilds a record from its events (pass a customised workflow here, e.g.
    ``functools.partial(Incident.replay, workflow=mine)``); ``columns`` gives the values of
    :data:`COLUMNS` for a record (``None`` where a kind has no such field).
    """

    name: str
    cls: type[R]
    replay: Callable[[Sequence[Event]], R]
    columns: Callable[[R], Mapping[str, object]]

    def __attrs_post_init__(self) -> None:
        if not self.name.isidentifier():
            raise DefinitionError(f"record kind name {self.name!r} must be an identifier")


_KINDS: dict[str, RecordKind[Any]] = {}


def register(kind: RecordKind[Any]) -> None:
    """Make a record kind available on every unit of work (``uow.<name>``) of every store."""
    _KINDS[kind.name] = kind


def kinds() -> tuple[RecordKind[Any], ...]:
    """The registered record kinds."""
    return tuple(_KINDS.values())


def _incident_columns(record: Incident) -> dict[str, object]:
    return {
        "state": str(record.state),
        "priority": int(record.priority),
        "assignment_group": record.assignment_group,
        "assignee": record.assignee,
        "service": record.service,
        "ci": record.ci,
        "opened_at": to_us(record.opened_at),
    }


register(RecordKind("incidents", Incident, Incident.replay, _incident_columns))


@attrs.frozen(kw_only=True)
class Query:
    """Filters, order and paging for ``Repository.find``; ``None`` means any.

    ``state`` and ``priority`` take one value or several; ``opened_from`` is inclusive,
    ``opened_until`` exclusive.
    """

    state: tuple[str, ...] | None = None
    priority: tuple[int, ...] | None = None
    assignment_group: str | None = None
    assignee: str | None = None
    service: str | None = None
    ci: str | None = None
    opened_from: int | None = None
    opened_until: int | None = None
    order_by: str = "opened_at"
    descending: bool = False
    limit: int | None = None
    offset: int = 0


def make_query(**filters: Any) -> Query:
    """A ``Query`` from ``find``'s keyword arguments, validated."""

    def many(value: Any, convert: Callable[[Any], Any]) -> tuple[Any, ...] | None:
        if value is None:
            return None
        items = [value] if isinstance(value, str | int) else list(value)
        return tuple(convert(v) for v in items)

    order_by = filters.pop("order_by", "opened_at")
    if order_by not in (*COLUMNS, "id"):
        raise ValidationError(f"cannot order by {order_by!r}; use one of {', '.join(COLUMNS)}, id")
    limit, offset = filters.pop("limit", None), filters.pop("offset", 0)
    if (limit is not None and limit < 0) or offset < 0:
        raise ValidationError("limit and offset must not be negative")
    opened_from, opened_until = filters.pop("opened_from", None), filters.pop("opened_until", None)
    query = Query(
        state=many(filters.pop("state", None), str),
        priority=many(filters.pop("priority", None), int),
        assignment_group=filters.pop("assignment_group", None),
        assignee=filters.pop("assignee", None),
        service=filters.pop("service", None),
        ci=filters.pop("ci", None),
        opened_from=None if opened_from is None else to_us(opened_from, "opened_from"),
        opened_until=None if opened_until is None else to_us(opened_until, "opened_until"),
        order_by=order_by,
        descending=bool(filters.pop("descending", False)),
        limit=limit,
        offset=offset,
    )
    if filters:
        raise ValidationError(f"unknown filters: {', '.join(sorted(filters))}")
    return query


class Repository(Protocol[R]):
    """The records of one kind, as seen through one unit of work."""

    def get(self, record_id: str) -> R:
        """The record with this id (``NotFoundError`` if there is none)."""
        ...

    def add(self, record: R) -> None:
        """Stage a new record, written at commit."""
        ...

    def save(self, record: R) -> None:
        """Stage a changed record, loaded (or added) in this unit of work."""
        ...

    def find(
        self,
        *,
        state: str | Iterable[str] | None = None,
        priority: int | Iterable[int] | None = None,
        assignment_group: str | None = None,
        assignee: str | None = None,
        service: str | None = None,
        ci: str | None = None,
        opened_from: datetime | None = None,
        opened_until: datetime | None = None,
        order_by: str = "opened_at",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[R]:
        """Committed records matching every filter given, ordered and paged."""
        ...

    def history(self, record_id: str) -> tuple[Event, ...]:
        """The stored events of a record, oldest first."""
        ...


class UnitOfWork(Protocol):
    """One transaction over one repository per registered record kind.

    Use it as a context manager; ``commit()`` writes everything staged, leaving without
    it (or with an exception) discards it. ``uow.incidents`` is the incident repository.
    """

    incidents: Repository[Incident]

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None:
        """Write every staged change at once, or raise and write nothing."""
        ...

    def rollback(self) -> None:
        """Discard every staged change."""
        ...
