"""What every store shares: the unit of work, the repositories, and event (de)serialization.

A backend only loads rows, answers queries and writes a batch of changes atomically; the
unit of work above it tracks which version each record was loaded at, stages adds and
saves, and turns records into rows and back. So the stores cannot drift apart in meaning.
"""

from __future__ import annotations

import json
import threading
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, Self, TypeVar

import attrs
import cattrs

from itsmcore._time import to_us
from itsmcore.errors import NotFoundError, ValidationError
from itsmcore.events import Event, event_type
from itsmcore.repository import COLUMNS, Query, RecordKind, kinds, make_query

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "Change",
    "EventRow",
    "Pool",
    "PooledStore",
    "Session",
    "UnitOfWorkBase",
    "select_ids",
]


class EventRow(NamedTuple):
    """One stored event: ``(version, type, schema version, at in µs, by, JSON data)``."""

    version: int
    type: str
    schema_version: int
    at: int
    by: str
    data: str


class Change(NamedTuple):
    """What a commit writes for one record: new events on top of ``base`` and its columns."""

    kind: str
    record_id: str
    base: int
    events: list[EventRow]
    columns: dict[str, object]
    stored: dict[str, object] | None = None
    """The columns the stored row holds at ``base``, when known (the record was loaded)."""

    def changed_columns(self) -> list[str]:
        """The columns to write: all of them unless the stored ones are known.

        Setting an indexed column costs an index update even when its value is unchanged
        (in SQLite, and it rules out PostgreSQL's heap-only updates), so updates name only
        the columns whose values differ. The stored row is the one at ``base``: the write
        checks that version under lock before it updates anything.
        """
        stored = self.stored
        if stored is None:
            return list(COLUMNS)
        columns = self.columns
        return [c for c in COLUMNS if columns.get(c) != stored.get(c)]


class Session(Protocol):
    """A backend's connection for one unit of work."""

    def load(self, kind: str, record_id: str) -> list[EventRow]:
        """The record's rows, oldest first; empty if there is no such record."""
        ...

    def load_many(self, kind: str, record_ids: Sequence[str]) -> dict[str, list[EventRow]]:
        """Rows of several records."""
        ...

    def query(self, kind: str, query: Query) -> list[str]:
        """Ids of the records matching ``query``, ordered and paged."""
        ...

    def write(self, changes: Sequence[Change]) -> None:
        """Write all changes in one transaction, or raise ``ConcurrencyError`` and none."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# --------------------------------------------------------------------------- SQL


def update_record(change: Change, version: int, mark: str) -> tuple[str, tuple[object, ...]]:
    """The UPDATE of a record's row to ``version`` and its changed columns.

    ``mark`` is the driver's placeholder. Column names come from :data:`COLUMNS` only.
    """
    names = change.changed_columns()
    sets = "".join(f", {name} = {mark}" for name in names)
    sql = f"UPDATE itsm_records SET version = {mark}{sets} WHERE kind = {mark} AND id = {mark}"  # noqa: S608 - only fixed column names and placeholders
    columns = change.columns
    return sql, (version, *[columns.get(n) for n in names], change.kind, change.record_id)


def select_ids(
    kind: str, query: Query, mark: str, *, arrays: bool, no_limit: object
) -> tuple[str, list[object]]:
    """The SQL (with ``mark`` placeholders) and parameters selecting the ids ``query`` asks for.

    One builder for every SQL store, so their filters cannot drift apart. ``arrays`` passes a
    list of values as one parameter (``= ANY(%s)``, PostgreSQL) instead of one per value;
    ``no_limit`` is the database's LIMIT for "all". Column names come from
    :data:`itsmcore.repository.COLUMNS`, checked by ``make_query``.
    """
    clauses: list[str] = [f"kind = {mark}"]
    params: list[object] = [kind]
    for column, values in (("state", query.state), ("priority", query.priority)):
        if values is None:
            continue
        if arrays:
            clauses.append(f"{column} = ANY({mark})")
            params.append(list(values))
        else:
            clauses.append(f"{column} IN ({','.join([mark] * len(values))})")
            params.extend(values)
    for column in ("assignment_group", "assignee", "service", "ci"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    for bound, op in ((query.opened_from, ">="), (query.opened_until, "<")):
        if bound is not None:
            clauses.append(f"opened_at {op} {mark}")
            params.append(bound)
    order, direction = query.order_by, "DESC" if query.descending else "ASC"
    sql = (
        f"SELECT id FROM itsm_records WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed names
        f"ORDER BY {order} IS NULL, {order} {direction}, id {direction} "
        f"LIMIT {mark} OFFSET {mark}"
    )
    params += [no_limit if query.limit is None else query.limit, query.offset]
    return sql, params


# --------------------------------------------------------------------------- connections


class _Connection(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Connection)


class Pool(Generic[C]):
    """Idle connections kept for the next unit of work: opening one costs more than a commit.

    ``connect`` opens a connection; ``clean`` readies a returned one for reuse (rolling back
    a transaction a unit of work left open) and says whether it may be reused at all.
    """

    def __init__(self, connect: Callable[[], C], clean: Callable[[C], bool], size: int = 8) -> None:
        self._connect = connect
        self._clean = clean
        self._size = size
        self._idle: list[C] = []
        self._lock = threading.Lock()

    def take(self) -> C:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def give(self, conn: C) -> None:
        if self._clean(conn):
            with self._lock:
                if len(self._idle) < self._size:
                    self._idle.append(conn)
                    return
        conn.close()

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PooledStore:
    """A store whose idle pooled connections close with it, or when it is collected."""

    def _keep(self, pool: Pool[Any]) -> None:
        self._pool = pool
        self._close = weakref.finalize(self, pool.close_all)

    def close(self) -> None:
        """Close the pooled connections (units of work still open keep theirs)."""
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- (de)serialization

# Without detailed validation cattrs structures about a third faster; decode names the row
# and the event type in its own error instead.
_converter = cattrs.Converter(detailed_validation=False)
_converter.register_unstructure_hook(datetime, lambda d: d.isoformat())
_converter.register_structure_hook(datetime, lambda v, _: datetime.fromisoformat(v))
_resolved: set[type] = set()


def encode(version: int, event: Event) -> EventRow:
    """An event as a row: its fields as JSON, its type and schema version alongside."""
    data = _converter.unstructure(event)
    return EventRow(version, event.type, event.version, to_us(event.at), event.by, json.dumps(data))


def decode(kind: str, record_id: str, row: EventRow) -> Event:
    """A row back into its event class (``ValidationError`` naming the row if it cannot)."""
    try:
        cls = event_type(row.type)
    except ValidationError as exc:
        raise ValidationError(f"{_where(kind, record_id, row)}: {exc}") from None
    if cls not in _resolved:
        attrs.resolve_types(cls)
        _resolved.add(cls)
    try:
        data = json.loads(row.data)
    except ValueError as exc:
        where = _where(kind, record_id, row)
        raise ValidationError(f"{where}: its data is not JSON ({exc})") from None
    if row.schema_version != cls.version:
        upcast = getattr(cls, "upcast", None)
        if upcast is None:
            where = _where(kind, record_id, row)
            raise ValidationError(
                f"{where}: schema version {row.schema_version} of {row.type!r} cannot be "
                f"read by this release (version {cls.version}); it needs an upcast"
            )
        data = upcast(data, row.schema_version)
    try:
        return _converter.structure(data, cls)
    except (ValueError, TypeError, KeyError, AttributeError, cattrs.BaseValidationError) as exc:
        where = _where(kind, record_id, row)
        raise ValidationError(f"{where}: its data does not fit {row.type!r} ({exc!r})") from None


def _where(kind: str, record_id: str, row: EventRow) -> str:
    return f"{kind} {record_id!r}, stored event {row.version}"


# --------------------------------------------------------------------------- unit of work


class _Repository:
    """One kind's records through one unit of work (see ``itsmcore.repository.Repository``)."""

    def __init__(self, uow: UnitOfWorkBase, kind: RecordKind[Any]) -> None:
        self._uow = uow
        self._kind = kind

    def _key(self, record_id: str) -> tuple[str, str]:
        return (self._kind.name, record_id)

    def _check(self, record: Any) -> str:
        if not isinstance(record, self._kind.cls):
            raise ValidationError(
                f"{self._kind.name} holds {self._kind.cls.__name__} records, "
                f"not {type(record).__name__}"
            )
        return str(record.id)

    def _rebuild(self, record_id: str, rows: list[EventRow]) -> Any:
        events = [decode(self._kind.name, record_id, row) for row in rows]
        for expected, row in enumerate(rows, start=1):
            if row.version != expected:
                raise ValidationError(
                    f"{self._kind.name} {record_id!r}: stored history has a gap at {expected}"
                )
        record = self._kind.replay(events)
        self._uow.loaded[self._key(record_id)] = record
        return record

    def get(self, record_id: str) -> Any:
        staged = self._uow.staged.get(self._key(record_id))
        if staged is not None:
            return staged[1]
        rows = self._uow.session.load(self._kind.name, record_id)
        if not rows:
            raise NotFoundError(record_id, kind=self._kind.cls.__name__.lower())
        return self._rebuild(record_id, rows)

    def add(self, record: Any) -> None:
        record_id = self._check(record)
        key = self._key(record_id)
        if key in self._uow.loaded or key in self._uow.staged:
            raise ValidationError(f"{record_id!r} is already in this unit of work; save it")
        self._uow.staged[key] = (0, record)

    def save(self, record: Any) -> None:
        record_id = self._check(record)
        key = self._key(record_id)
        staged = self._uow.staged.get(key)
        loaded = self._uow.loaded.get(key)
        if staged is None and loaded is None:
            raise ValidationError(
                f"{record_id!r} was not loaded in this unit of work: get() it, change it, save it"
            )
        base = staged[0] if staged is not None else loaded.version  # type: ignore[union-attr]
        known = staged[1].version if staged is not None else base
        if record.version < known:
            raise ValidationError(f"{record_id!r} version {record.version} is older than {known}")
        if loaded is not None and record.history[loaded.version - 1] != loaded.history[-1]:
            raise ValidationError(f"{record_id!r} is not a later version of the record loaded")
        if record.version > base or staged is not None:
            self._uow.staged[key] = (base, record)

    def find(self, **filters: Any) -> list[Any]:
        query = make_query(**filters)
        session = self._uow.session
        ids = session.query(self._kind.name, query)
        rows = session.load_many(self._kind.name, ids)
        return [
            self._rebuild(record_id, rows[record_id]) for record_id in ids if rows.get(record_id)
        ]

    def history(self, record_id: str) -> tuple[Event, ...]:
        rows = self._uow.session.load(self._kind.name, record_id)
        if not rows:
            raise NotFoundError(record_id, kind=self._kind.cls.__name__.lower())
        return tuple(decode(self._kind.name, record_id, row) for row in rows)


class UnitOfWorkBase:
    """One transaction over every registered record kind; a context manager."""

    def __init__(self, session: Session, record_kinds: Iterable[RecordKind[Any]] | None) -> None:
        self.session = session
        # Each record as last read or committed here: its version is the stored row's, and
        # so are its columns.
        self.loaded: dict[tuple[str, str], Any] = {}
        self.staged: dict[tuple[str, str], tuple[int, Any]] = {}
        self._kinds = {k.name: k for k in (kinds() if record_kinds is None else record_kinds)}
        for name, kind in self._kinds.items():
            setattr(self, name, _Repository(self, kind))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set in __init__: a kind nobody registered.
        raise AttributeError(
            f"no record kind {name!r} is registered; known: {', '.join(self._kinds)}"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()
        self.session.close()

    def commit(self) -> None:
        """Write every staged change in one transaction, or raise and write nothing."""
        changes = []
        for (kind, record_id), (base, record) in self.staged.items():
            new = record.history[base:]
            rows = [encode(base + k, e) for k, e in enumerate(new, start=1)]
            to_columns = self._kinds[kind].columns
            prior = self.loaded.get((kind, record_id))
            stored = (
                dict(to_columns(prior))
                if base and prior is not None and prior.version == base
                else None
            )
            changes.append(Change(kind, record_id, base, rows, dict(to_columns(record)), stored))
        if changes:
            self.session.write(changes)
        for (kind, record_id), (_, record) in self.staged.items():
            self.loaded[kind, record_id] = record
        self.staged.clear()

    def rollback(self) -> None:
        """Discard every staged change (what was committed stays)."""
        self.staged.clear()
