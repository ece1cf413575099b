"""Persistence as a protocol: repositories of records, and units of work over them.

A store (``itsmcore.storage``) keeps every record's full event history, append-only and
keyed by ``(record kind, record id, version)``, plus a row of indexed columns per record for
queries. Which columns a kind has is declared once, on the record class (``indexed``); the
stores' schemas, ``find``'s filters and the in-memory matching all derive from it, so a new
kind needs no change to any store. A ``UnitOfWork`` is one transaction: it hands out one
``Repository`` per registered record kind (``uow.incidents``, or typed:
``uow.repository(Incident)``), stages what is added and saved, and writes it all at
``commit()`` or nothing. Concurrency is optimistic: a save lands only if the stored version is
the one the record was loaded at; otherwise ``ConcurrencyError`` and nothing of the unit of
work is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Final, Generic, Protocol, Self, TypeVar

import attrs

from itsmcore._time import to_us
from itsmcore.change import Change
from itsmcore.cmdb import CIRecord, RelationshipRecord, ServiceRecord
from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.events import Event
from itsmcore.incident import Incident
from itsmcore.knowledge import KnowledgeArticle
from itsmcore.problem import Problem
from itsmcore.record import Column
from itsmcore.request import ServiceRequest
from itsmcore.search import Document

__all__ = [
    "Query",
    "RecordKind",
    "Repository",
    "UnitOfWork",
    "kinds",
    "register",
]

R = TypeVar("R")

_PAGING: Final = frozenset({"order_by", "descending", "limit", "offset"})
_MAX_INT: Final = 2**63 - 1


def _search_document(kind: RecordKind[Any]) -> Callable[[Any], Document | None] | None:
    """A kind's default ``document``: its class's ``search_document`` method, if any."""
    return getattr(kind.cls, "search_document", None)


@attrs.frozen
class RecordKind(Generic[R]):
    """How a record type is stored: its name on the unit of work, rebuilding, columns.

    ``name`` is the attribute on every unit of work (``uow.incidents``). ``replay`` rebuilds a
    record from its events (the class's own ``replay`` by default, which finds the workflow
    the record was opened with); ``columns`` are the indexed columns (the class's
    ``indexed`` by default). ``order_by`` is ``find``'s default order: the first range
    column (e.g. ``opened_at``), else the id. ``document`` makes the kind searchable: what
    a record reads as to search, or ``None`` while it is not to be found (the class's
    ``search_document`` method by default, if it has one).
    """

    name: str
    cls: type[R]
    replay: Callable[[Sequence[Event]], R] = attrs.field(default=None)
    columns: tuple[Column, ...] = attrs.field(default=None)
    prefix: str = attrs.field(default=None)
    """Record numbers' prefix (the class's ``number_prefix``, else the kind's name)."""
    width: int = 7
    """Record numbers' digits: ``INC0000001``."""
    document: Callable[[R], Document | None] | None = attrs.field(
        default=attrs.Factory(_search_document, takes_self=True),
        kw_only=True,
    )
    _filters: dict[str, tuple[Column, str]] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise DefinitionError(f"record kind name {self.name!r} must be an identifier")
        if self.replay is None:
            object.__setattr__(self, "replay", self.cls.replay)
        if self.columns is None:
            object.__setattr__(self, "columns", tuple(getattr(self.cls, "indexed", ())))
        object.__setattr__(self, "columns", tuple(self.columns))
        if self.prefix is None:
            prefix = getattr(self.cls, "number_prefix", None)
            object.__setattr__(self, "prefix", prefix or self.name.upper())
        if not isinstance(self.prefix, str) or not 0 < self.width <= 18:
            raise DefinitionError(f"{self.name}: record numbers need a prefix and 1-18 digits")
        filters: dict[str, tuple[Column, str]] = {}
        for column in self.columns:
            if not isinstance(column, Column):
                raise DefinitionError(f"{self.name}: columns are Column declarations")
            names = (
                {column.name: "="}
                if column.range is None
                else dict(zip(column.range, (">=", "<"), strict=True))
            )
            for name, op in names.items():
                if name in filters or name in _PAGING or name == "id":
                    raise DefinitionError(f"{self.name}: filter name {name!r} is used twice")
                filters[name] = (column, op)
        object.__setattr__(self, "_filters", filters)

    @property
    def column_names(self) -> frozenset[str]:
        """The names of the indexed columns."""
        return frozenset(c.name for c in self.columns)

    def number(self, value: int) -> str:
        """The record number ``value`` as an id: ``INC0000042``."""
        return f"{self.prefix}{value:0{self.width}d}"

    def values(self, record: R) -> dict[str, object]:
        """The indexed columns' stored values for ``record``."""
        return {c.name: c.value_of(record) for c in self.columns}

    @property
    def default_order(self) -> str:
        """The column ``find`` orders by when not told otherwise."""
        return next((c.name for c in self.columns if c.range is not None), "id")

    def _keyset(self, after: Any, order_by: str, offset: int) -> tuple[object, str] | None:
        """``(order value, id)`` of the record a page starts after."""
        if after is None:
            return None
        if not isinstance(after, self.cls):
            raise ValidationError(
                f"after= takes the last {self.cls.__name__} of the previous page, got "
                f"{type(after).__name__}"
            )
        if offset:
            raise ValidationError("page with after= or with offset=, not both")
        record_id: str = after.id  # type: ignore[attr-defined]
        return (record_id if order_by == "id" else self.values(after)[order_by], record_id)

    def query(self, **filters: Any) -> Query:
        """A ``Query`` from ``find``'s keyword arguments, each value checked against its column."""
        order_by = filters.pop("order_by", None)
        order_by = self.default_order if order_by is None else order_by
        if not isinstance(order_by, str) or (
            order_by != "id" and order_by not in self.column_names
        ):
            allowed = ", ".join(sorted(self.column_names | {"id"}))
            raise ValidationError(f"cannot order by {order_by!r}; use one of {allowed}")
        descending = filters.pop("descending", False)
        if not isinstance(descending, bool):
            raise ValidationError(f"descending must be True or False, got {descending!r}")
        limit, offset = filters.pop("limit", None), filters.pop("offset", 0)
        if limit is not None:
            limit = _count(limit, "limit")
        offset = _count(offset, "offset")
        after = self._keyset(filters.pop("after", None), order_by, offset)
        unknown = sorted(set(filters) - set(self._filters))
        if unknown:
            allowed = ", ".join(sorted(self._filters))
            raise ValidationError(f"unknown filters: {', '.join(unknown)}; filters: {allowed}")
        equal: list[tuple[str, tuple[object, ...]]] = []
        ranges: dict[str, list[object]] = {}
        for name, value in filters.items():
            if value is None:
                continue
            column, op = self._filters[name]
            if op == "=":
                items = value if _many(value) else [value]
                equal.append((column.name, tuple(_stored(column, name, v) for v in items)))
            else:
                bounds = ranges.setdefault(column.name, [None, None])
                bounds[0 if op == ">=" else 1] = _stored(column, name, value)
        return Query(
            equal=tuple(equal),
            ranges=tuple((name, low, high) for name, (low, high) in ranges.items()),
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
            after=after,
            columns=self.column_names,
        )


class _Reversed:
    """A sort key that compares in reverse (``None`` only ever meets ``None``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value) if self.value is not None else False

    def __gt__(self, other: _Reversed) -> bool:
        return bool(other.value > self.value) if self.value is not None else False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise ValidationError(f"{name} must be a whole number from 0 to 2**63-1, got {value!r}")
    return value


def _many(value: object) -> bool:
    return isinstance(value, list | tuple | set | frozenset)


def _stored(column: Column, name: str, value: object) -> object:
    """A filter value as the column stores it; ``ValidationError`` if it is of another type."""
    if column.parse is not None:
        value = column.parse(value)
    if column.type is str:
        ok = isinstance(value, str)
    elif column.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, datetime)
    if not ok:
        kind = "an aware datetime" if column.type is datetime else column.type.__name__
        raise ValidationError(f"filter {name}= takes {kind} values, got {value!r}")
    if isinstance(value, Enum) and column.type is str:
        value = value.value
    if column.type is datetime:
        return to_us(value, name)  # type: ignore[arg-type]
    if column.type is int and not -_MAX_INT <= value <= _MAX_INT:  # type: ignore[operator]
        raise ValidationError(f"filter {name}={value!r} is out of range")
    return column.stored(value)


_KINDS: dict[str, RecordKind[Any]] = {}


def register(kind: RecordKind[Any]) -> None:
    """Make a record kind available on every unit of work (``uow.<name>``) of every store.

    Kinds share one table of indexed columns: a column name two kinds declare must have the
    same type in both (``DefinitionError`` otherwise).
    """
    for other in _KINDS.values():
        if other.name == kind.name:
            continue
        theirs = {c.name: c.sql_type for c in other.columns}
        for column in kind.columns:
            if theirs.get(column.name, column.sql_type) != column.sql_type:
                raise DefinitionError(
                    f"{kind.name}.{column.name} is {column.sql_type} but {other.name} declares "
                    f"it {theirs[column.name]}; give one of them another name"
                )
    _KINDS[kind.name] = kind


def kinds() -> tuple[RecordKind[Any], ...]:
    """The registered record kinds."""
    return tuple(_KINDS.values())


register(RecordKind("incidents", Incident))
register(RecordKind("problems", Problem))
register(RecordKind("changes", Change))
register(RecordKind("knowledge", KnowledgeArticle))
register(RecordKind("cis", CIRecord))
register(RecordKind("services", ServiceRecord))
register(RecordKind("relationships", RelationshipRecord))
register(RecordKind("requests", ServiceRequest))


@attrs.frozen(kw_only=True)
class Query:
    """Filters, order and paging for ``Repository.find``, as the stores' columns hold them.

    ``equal`` lists ``(column, values)``: the column holds one of the values. ``ranges``
    lists ``(column, from, until)``: from inclusive, until exclusive, ``None`` for open.
    Records with a value in ``order_by`` come first (in either direction), then those
    without, by id. ``after`` is ``(order value, id)`` of the last record of the previous
    page: the page starts after it. ``columns`` are the kind's column names: a store builds
    SQL only from those.
    """

    equal: tuple[tuple[str, tuple[object, ...]], ...] = ()
    ranges: tuple[tuple[str, object, object], ...] = ()
    order_by: str = "id"
    descending: bool = False
    limit: int | None = None
    offset: int = 0
    after: tuple[object, str] | None = None
    columns: frozenset[str] = frozenset()

    def sort_key(self, record_id: str, values: Mapping[str, object]) -> tuple[Any, ...]:
        """Where a record falls in this query's order (ascending keys; see ``descending``).

        Not for SQL stores, which order with their indexes: for stores that sort in Python.
        """
        value = record_id if self.order_by == "id" else values.get(self.order_by)
        if self.descending:
            return (value is None, _Reversed(value), _Reversed(record_id))
        return (value is None, value, record_id)

    def is_after(self, record_id: str, values: Mapping[str, object]) -> bool:
        """Whether a record comes after ``after`` in this query's order."""
        if self.after is None:
            return True
        value, last_id = self.after
        return self.sort_key(record_id, values) > self.sort_key(last_id, {self.order_by: value})

    def matches(self, values: Mapping[str, object]) -> bool:
        """Whether a record with these stored column values passes every filter."""
        for name, allowed in self.equal:
            if values.get(name) not in allowed:
                return False
        for name, low, high in self.ranges:
            value = values.get(name)
            if value is None:
                return False
            if low is not None and value < low:  # type: ignore[operator]
                return False
            if high is not None and value >= high:  # type: ignore[operator]
                return False
        return True


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

    def find(self, **filters: Any) -> list[R]:
        """Committed records matching every filter given, ordered and paged.

        Filters are the kind's indexed columns (``state="new"``, ``priority=[1, 2]``) and
        their range names (``opened_from=``, ``opened_until=``); ``order_by``,
        ``descending``, ``limit`` and ``offset`` order and page; ``after=`` (the last record
        of the previous page) pages by keyset, as cheap on the last page as on the first.
        """
        ...

    def iterate(self, *, batch: int = 500, **filters: Any) -> Iterator[R]:
        """Every record ``find(**filters)`` would return, ``batch`` at a time (keyset pages).

        Memory stays bounded by the batch; run it inside the unit of work.
        """
        ...

    def history(self, record_id: str) -> tuple[Event, ...]:
        """The stored events of a record, oldest first."""
        ...

    def search(self, text: str, *, limit: int = 10, **scope: Any) -> list[R]:
        """Committed records of a searchable kind matching ``text``, best first.

        ``scope`` narrows by indexed text columns: ``service="vpn"`` keeps the records for
        that service and those for none. See :mod:`itsmcore.search` for how text matches.
        """
        ...

    def new_id(self) -> str:
        """The next record number of this kind (``INC0000001``, ``INC0000002`` …).

        Unique across units of work, threads and processes: the store hands each number out
        once, at once, whether or not the unit of work later commits (numbers may skip).
        """
        ...


class UnitOfWork(Protocol):
    """One transaction over one repository per registered record kind.

    Use it as a context manager; ``commit()`` writes everything staged, leaving without
    it (or with an exception) discards it. ``uow.incidents`` is the incident repository;
    ``uow.repository(Incident)`` is the same, typed.
    """

    incidents: Repository[Incident]
    problems: Repository[Problem]
    changes: Repository[Change]
    requests: Repository[ServiceRequest]
    knowledge: Repository[KnowledgeArticle]

    def repository(self, cls: type[R]) -> Repository[R]:
        """The repository of the kind registered for records of class ``cls``."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None:
        """Write every staged change at once, or raise and write nothing."""
        ...

    def rollback(self) -> None:
        """Discard every staged change."""
        ...


def kind_map(record_kinds: Iterable[RecordKind[Any]] | None) -> Mapping[str, RecordKind[Any]]:
    """The kinds a store serves by name: the given ones, or every registered one."""
    return {k.name: k for k in (kinds() if record_kinds is None else record_kinds)}
