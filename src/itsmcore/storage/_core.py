"""What every store shares: the unit of work, the repositories, and event (de)serialization.

A backend only loads rows, answers queries and writes a batch of changes atomically; the
unit of work above it tracks which version each record was loaded at, stages adds and
saves, and turns records into rows and back. So the stores cannot drift apart in meaning.
"""

from __future__ import annotations

import importlib
import json
import re
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC
from operator import is_
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, Protocol, Self, TypeVar

from itsmcore._time import EPOCH, MICROSECOND, to_us
from itsmcore.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptionError,
    DefinitionError,
    DuplicateIdError,
    NotFoundError,
    TransientError,
    ValidationError,
)
from itsmcore.events import event_types
from itsmcore.record import MAX_LABEL
from itsmcore.repository import Query, RecordKind, kind_map
from itsmcore.serialization import DECODE_ERRORS, event_data, event_from_data, exact_decoder
from itsmcore.storage._search import text_query

if TYPE_CHECKING:
    from itsmcore.events import Event
    from itsmcore.record import Column
    from itsmcore.repository import Repository
    from itsmcore.search import Document

R = TypeVar("R")

__all__ = [
    "EventRow",
    "Pool",
    "PooledStore",
    "RecordWrite",
    "Session",
    "UnitOfWorkBase",
    "retry",
    "select_ids",
]


class EventRow(NamedTuple):
    """One stored event: ``(version, type, schema version, at in µs, by, JSON data)``.

    ``intact`` is whether the row's seal matches it (see ``seal``): the store checks.
    """

    version: int
    type: str
    schema_version: int
    at: int
    by: str
    data: str
    intact: bool = True


def seal(kind: str, record_id: str, row: EventRow) -> str:
    """A stored event row's seal: a digest binding it to its record, position and content.

    An event copied whole from another record (or moved to another position) still reads
    as a valid event of its type; its seal, made for another record id or version, does
    not match, and loading the record fails naming it. Not a signature: it catches rows
    copied or edited by mistake, not forged on purpose.
    """
    text = (
        f"{kind}\x1f{record_id}\x1f{row.version}\x1f{row.type}\x1f{row.schema_version}\x1f"
        f"{row.at}\x1f{row.by}\x1f{row.data}"
    )
    # CRC-32: made for catching accidental changes, and cheaper than a cryptographic hash.
    return f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}"


class RecordWrite(NamedTuple):
    """What a commit writes for one record: new events on top of ``base`` and its columns."""

    kind: str
    record_id: str
    base: int
    events: list[EventRow]
    columns: dict[str, object]
    stored: dict[str, object] | None = None
    """The columns the stored row holds at ``base``, when known (the record was loaded)."""
    searchable: bool = False
    """Whether the kind is searchable: the store keeps its search entry in step."""
    document: Document | None = None
    """What search finds the record by now; ``None``: it is not to be found."""

    def changed_columns(self) -> list[str]:
        """The columns to write: all of them unless the stored ones are known.

        Setting an indexed column costs an index update even when its value is unchanged
        (in SQLite, and it rules out PostgreSQL's heap-only updates), so updates name only
        the columns whose values differ. The stored row is the one at ``base``: the write
        checks that version under lock before it updates anything.
        """
        stored = self.stored
        columns = self.columns
        if stored is None:
            return list(columns)
        return [c for c in columns if columns[c] != stored.get(c)]


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

    def write(self, changes: Sequence[RecordWrite]) -> None:
        """Write all changes in one transaction, or raise ``ConcurrencyError`` and none."""
        ...

    def next_number(self, kind: str) -> int:
        """The kind's next record number (1, 2 …), taken at once in its own transaction."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    # A session that can search also has ``search(kind, query: TextQuery) -> list[str]``
    # (ids, best first), and keeps each searchable ``RecordWrite``'s entry in ``write``.


# --------------------------------------------------------------------------- SQL


_IDENTIFIER: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")


def identifier(name: str) -> str:
    """``name`` if it may be spliced into SQL as a column name; ``ValidationError`` otherwise.

    Every column name in the stores' SQL passes through here, wherever it came from.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValidationError(f"{name!r} is not a column name")
    return name


def insert_record(change: RecordWrite, version: int, mark: str) -> tuple[str, tuple[object, ...]]:
    """The INSERT of a new record's row at ``version`` with its columns."""
    names = [identifier(n) for n in change.columns]
    sql = (
        f"INSERT INTO itsm_records (kind, id, version{''.join(', ' + n for n in names)}) "  # noqa: S608 - checked names
        f"VALUES ({', '.join([mark] * (len(names) + 3))})"
    )
    return sql, (change.kind, change.record_id, version, *change.columns.values())


def update_record(change: RecordWrite, version: int, mark: str) -> tuple[str, tuple[object, ...]]:
    """The UPDATE of a record's row to ``version`` and its changed columns.

    ``mark`` is the driver's placeholder.
    """
    names = [identifier(n) for n in change.changed_columns()]
    sets = "".join(f", {name} = {mark}" for name in names)
    sql = f"UPDATE itsm_records SET version = {mark}{sets} WHERE kind = {mark} AND id = {mark}"  # noqa: S608 - only fixed column names and placeholders
    columns = change.columns
    return sql, (version, *[columns.get(n) for n in names], change.kind, change.record_id)


Rows = Callable[[str, Sequence[object]], Sequence[Sequence[Any]]]
"""Run one SELECT with its parameters and return all its rows."""


def select_ids(rows: Rows, kind: str, query: Query, mark: str, *, arrays: bool) -> list[str]:
    """The ids ``query`` asks for, in its order, through ``rows`` (the store's SELECT).

    One builder for every SQL store, so their filters and order cannot drift apart. Records
    with a value in the order column come first, in index order, then those without one
    (by id): two index-ordered scans, never a sort of every matching row. ``after`` (the
    last record of the previous page) continues with a keyset condition, so a page costs
    the same wherever it starts; ``offset`` counts rows as SQL does. ``arrays`` passes a
    list of values as one parameter (``= ANY(%s)``, PostgreSQL). Every column name must be
    one of the kind's (``query.columns``) and an identifier, checked here.
    """

    def column(name: str) -> str:
        if name not in query.columns and name != "id":
            raise ValidationError(f"{name!r} is not an indexed column of {kind}")
        return identifier(name)

    clauses, params = _filters(kind, query, mark, column, arrays=arrays)
    out: list[str] = []
    skip, wanted = query.offset, query.limit
    for extra, extra_params, ordering in _phases(query, column(query.order_by), mark):
        if wanted is not None and len(out) >= wanted:
            break
        where = " AND ".join([*clauses, *extra])
        phase_params = [*params, *extra_params]
        if skip:  # an offset that may lie past this phase: count it first
            (count,) = rows(f"SELECT count(*) FROM itsm_records WHERE {where}", phase_params)[0]  # noqa: S608 - checked names
            if count <= skip:
                skip -= count
                continue
        limit = _MAX_ROWS if wanted is None else wanted - len(out)
        sql = (
            f"SELECT id FROM itsm_records WHERE {where} ORDER BY {ordering} "  # noqa: S608 - checked names
            f"LIMIT {mark} OFFSET {mark}"
        )
        out += [r[0] for r in rows(sql, [*phase_params, limit, skip])]
        skip = 0
    return out


def _filters(
    kind: str, query: Query, mark: str, column: Callable[[str], str], *, arrays: bool
) -> tuple[list[str], list[object]]:
    """The WHERE clauses and parameters of the query's filters."""
    clauses: list[str] = [f"kind = {mark}"]
    params: list[object] = [kind]
    for name, values in query.equal:
        name = column(name)  # noqa: PLW2901 - the same name, checked
        if len(values) == 1:
            clauses.append(f"{name} = {mark}")
            params.append(values[0])
        elif arrays:
            clauses.append(f"{name} = ANY({mark})")
            params.append(list(values))
        else:
            clauses.append(f"{name} IN ({','.join([mark] * len(values))})")
            params.extend(values)
    for name, low, high in query.ranges:
        for bound, op in ((low, ">="), (high, "<")):
            if bound is not None:
                clauses.append(f"{column(name)} {op} {mark}")
                params.append(bound)
    return clauses, params


def _phases(query: Query, order: str, mark: str) -> list[tuple[list[str], list[object], str]]:
    """``(extra clauses, their parameters, ORDER BY)`` per scan: by value, then the empty."""
    direction, beyond = ("DESC", "<") if query.descending else ("ASC", ">")
    after = query.after
    if order == "id":
        by_id = [] if after is None else [f"id {beyond} {mark}"]
        return [(by_id, [] if after is None else [after[1]], f"id {direction}")]
    by_value = f"{order} {direction}, id {direction}"
    empty: tuple[list[str], list[object], str] = ([f"{order} IS NULL"], [], f"id {direction}")
    if after is None:
        return [([f"{order} IS NOT NULL"], [], by_value), empty]
    if after[0] is not None:
        keyset = f"{order} IS NOT NULL AND ({order}, id) {beyond} ({mark}, {mark})"
        return [([keyset], [after[0], after[1]], by_value), empty]
    return [([f"{order} IS NULL AND id {beyond} {mark}"], [after[1]], f"id {direction}")]


_MAX_ROWS: Final = 2**62  # LIMIT for "all": both databases take a 64-bit count


def conflict(change: RecordWrite, actual: int) -> DuplicateIdError | ConcurrencyError:
    """The error for a write that found ``actual`` where it expected ``change.base``."""
    if change.base == 0:
        return DuplicateIdError(change.record_id, change.kind)
    return ConcurrencyError(change.record_id, change.base, actual)


def _write_order(change: RecordWrite) -> tuple[str, str]:
    return (change.kind, change.record_id)


# --------------------------------------------------------------------------- schema


Execute = Callable[[str, Sequence[object]], Iterable[Sequence[Any]]]
"""A database's ``execute(sql, params)`` returning its rows: sqlite3's and psycopg's alike."""


def fit_columns(
    execute: Execute,
    existing: Mapping[str, str],
    served: Iterable[RecordKind[Any]],
    *,
    mark: str,
    events_sql: str,
    ddl_type: Callable[[Column], str],
) -> None:
    """Add the indexed columns the records table lacks, index them, fill them for old rows.

    ``existing`` maps the table's columns to their reported types (``"TEXT"``/``"INTEGER"``);
    ``ddl_type`` is the type a new column is created with; ``events_sql`` loads one record's
    event rows. A column that exists with another type is a ``DefinitionError``: stores never
    drop or retype data. Run inside the schema transaction.
    """
    served = list(served)
    added: dict[str, Column] = {}
    refill: list[RecordKind[Any]] = []
    for kind in served:
        for column in kind.columns:
            have = existing.get(identifier(column.name))
            if have is None:
                added.setdefault(column.name, column)
            elif have != column.sql_type:
                raise DefinitionError(
                    f"{kind.name}.{column.name} is declared {column.sql_type} but the store "
                    f"holds it as {have}; give the column another name"
                )
        if any(c.name in added for c in kind.columns):
            refill.append(kind)
    for column in added.values():
        execute(f"ALTER TABLE itsm_records ADD COLUMN {column.name} {ddl_type(column)}", ())
    for kind in served:
        for column in kind.columns:
            name = column.name
            # (kind, column, id): filters, orders and keyset pages in one index scan. It
            # supersedes the (kind, column) index of stores made before it.
            execute(
                f"CREATE INDEX IF NOT EXISTS itsm_records_{name}_order "
                f"ON itsm_records (kind, {name}, id)",
                (),
            )
            execute(f"DROP INDEX IF EXISTS itsm_records_{name}", ())
    for kind in refill:  # rows stored before the column existed get their values now
        _refill(execute, kind, mark, events_sql)


def _refill(execute: Execute, kind: RecordKind[Any], mark: str, events_sql: str) -> None:
    """Write every stored record's indexed columns again, from its events."""
    sql = f"SELECT id FROM itsm_records WHERE kind = {mark}"  # noqa: S608 - a placeholder
    for (record_id,) in list(execute(sql, (kind.name,))):
        rows = [EventRow(*r[:6]) for r in execute(events_sql, (kind.name, record_id))]
        values = kind.values(kind.replay([decode(kind.name, record_id, row) for row in rows]))
        sets = ", ".join(f"{identifier(n)} = {mark}" for n in values)
        execute(
            f"UPDATE itsm_records SET {sets} WHERE kind = {mark} AND id = {mark}",  # noqa: S608 - checked names
            (*values.values(), kind.name, record_id),
        )


def schema_key(
    record_kinds: Iterable[RecordKind[Any]],
) -> frozenset[tuple[str, tuple[Column, ...]]]:
    """What a store's schema was last made to fit: each kind's name and columns."""
    return frozenset((k.name, k.columns) for k in record_kinds)


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
        self._closed = False

    def take(self) -> C:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def fresh(self) -> C:
        """A new connection, never a pooled one (to replace one found dead)."""
        return self._connect()

    def give(self, conn: C) -> None:
        if self._clean(conn):
            with self._lock:
                # A store closed (or collected) while a unit of work was open: no reuse.
                if not self._closed and len(self._idle) < self._size:
                    self._idle.append(conn)
                    return
        conn.close()

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PooledStore:
    """A store whose idle pooled connections close with it, or when it is collected."""

    _kinds: tuple[RecordKind[Any], ...] | None
    _fitted: tuple[RecordKind[Any], ...] = ()

    def _keep(self, pool: Pool[Any]) -> None:
        self._pool = pool
        self._close = weakref.finalize(self, pool.close_all)

    def _served(self) -> tuple[list[RecordKind[Any]], bool]:
        """The kinds served now, and whether the schema was already fitted to these very ones.

        Kinds are immutable: the same objects need no second look at their columns (hashing
        every column of every kind had cost each unit of work about 10 µs).
        """
        served = list(kind_map(self._kinds).values())
        fitted = self._fitted
        return served, len(served) == len(fitted) and all(map(is_, served, fitted))

    def close(self) -> None:
        """Close the pooled connections (units of work still open keep theirs)."""
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- (de)serialization


def encode(version: int, event: Event) -> EventRow:
    """An event as a row: its fields as JSON, its type and schema version alongside.

    Text no store could keep as it is (a NUL character, a lone surrogate) is a
    ``ValidationError`` here, before anything is written, whichever store writes it.
    """
    return EventRow(
        version,
        event.type,
        event.schema_version,
        to_us(event.at),
        event.by,
        json.dumps(event_data(event)),
    )


_SCAN: Final[Any] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__


def _orjson() -> Callable[[str], Any] | None:
    """The ``loads`` of orjson, if the optional extra ``itsmcore[fast]`` is installed.

    A JSON parser written in Rust: it reads an incident's opening in about a third of the
    standard library's time. Without it the standard library's parser reads every row.
    """
    try:
        module = importlib.import_module("orjson")
    except ImportError:
        return None
    loads: Callable[[str], Any] = module.loads
    return loads


_fast_loads = _orjson()


def _parse(text: str) -> Any:
    """``json.loads`` for the text the stores wrote, without the Python layers around it.

    The decoder's C scanner alone; anything unusual (a value that does not end the text, or
    no value) goes through ``json.loads``, which raises its own errors.
    """
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the decoder's error, with its position
    if end != len(text):
        return json.loads(text)
    return value


def _fast(row: EventRow) -> Event | None:
    """The row's event read by orjson, or ``None``: then the standard parser decides.

    orjson accepts less than ``json`` (no ``NaN``, no lone surrogates, no numbers beyond a
    double's range) and reads the rest alike, except whole numbers beyond 64 bits, which it
    gives as floats. So its data goes only through decoders that refuse a float in every
    field (``serialization.exact_decoder``): what such a decoder makes of orjson's data is
    what it makes of ``json``'s. Whatever orjson or the decoder refuses is decided again on
    ``json``'s data, with its errors; ``tests/test_decoders.py`` holds both to the same.
    """
    text = row.data
    if type(text) is not str:  # orjson reads bytes too, which the stores never write
        return None
    key = (row.type, row.schema_version)
    decoder = _exact.get(key, _exact)
    if decoder is _exact:
        decoder = _exact_decoder(key)
    if decoder is None:
        return None
    try:
        data = _fast_loads(text)  # type: ignore[misc]
        return decoder(data) if type(data) is dict else None
    except DECODE_ERRORS:
        return None


def _exact_decoder(key: tuple[str, int]) -> Callable[[Any], Event] | None:
    decoder = exact_decoder(*key)
    if decoder is not None or key[0] in event_types():  # an unknown type may come later
        _exact[key] = decoder
    return decoder


_exact: dict[tuple[str, int], Any] = {}


def decode(kind: str, record_id: str, row: EventRow) -> Event:
    """A row back into its event class (``CorruptionError`` naming the row if it cannot)."""
    event = None if _fast_loads is None else _fast(row)
    if event is None:
        try:
            data = _parse(row.data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise CorruptionError(
                kind, record_id, row.version, f"its data is not JSON ({str(exc)[:200]})"
            ) from None
        try:
            event = event_from_data(row.type, row.schema_version, data)
        except ValidationError as exc:
            raise CorruptionError(kind, record_id, row.version, str(exc)) from None
    at = event.at  # UTC, as Event converts it: the plain subtraction is exact
    if (
        (at - EPOCH) // MICROSECOND if at.tzinfo is UTC else to_us(at)
    ) != row.at or event.by != row.by:
        raise CorruptionError(
            kind, record_id, row.version, "its time or actor differ from the event's own"
        )
    return event


# --------------------------------------------------------------------------- unit of work


class _Repository:
    """One kind's records through one unit of work (see ``itsmcore.repository.Repository``)."""

    def __init__(self, uow: UnitOfWorkBase, kind: RecordKind[Any]) -> None:
        self._uow = uow
        self._kind = kind

    def _key(self, record_id: str) -> tuple[str, str]:
        return (self._kind.name, record_id)

    def _check(self, record: Any) -> str:
        """The record's id, if it is one this kind can store and load back."""
        self._uow.check_open()
        kind = self._kind
        if not isinstance(record, kind.cls):
            raise ValidationError(
                f"{kind.name} holds {kind.cls.__name__} records, not {type(record).__name__}"
            )
        history = record.history
        if not isinstance(history, tuple) or not history or history[0].id != record.id:
            raise ValidationError(
                f"{kind.name}: a record's history starts with the opening of its own id"
            )
        name = history[0].workflow
        if kind.replay == kind.cls.replay and record.workflow is not kind.cls.workflows().get(name):
            raise ValidationError(
                f"{kind.name} {record.id!r} runs on workflow {name!r}, which is not the one "
                f"registered under that name: {kind.cls.__name__}.register_workflow(...) it "
                "first, or it could not be loaded back"
            )
        return str(record.id)

    def _rebuild(self, record_id: str, rows: list[EventRow]) -> Any:
        kind = self._kind.name
        for expected, row in enumerate(rows, start=1):
            if row.version != expected:
                raise CorruptionError(kind, record_id, expected, "the stored history has a gap")
        events = [decode(kind, record_id, row) for row in rows]
        try:
            record = self._kind.replay(events)
        except ValidationError as exc:  # a history its events cannot have made
            raise CorruptionError(kind, record_id, None, str(exc)) from None
        if record.id != record_id:
            raise CorruptionError(kind, record_id, 1, f"it opens record {record.id!r}")
        for row in rows:  # last: a row that fails another check says what is wrong with it
            if not row.intact:
                raise CorruptionError(
                    kind,
                    record_id,
                    row.version,
                    "its seal does not match: the event was written for another record or "
                    "position, or changed since",
                )
        self._uow.loaded[self._key(record_id)] = record
        return record

    def _stored(self, record_id: str) -> Any:
        """The record as the store holds it, read now (``NotFoundError`` if it has none)."""
        _check_id(record_id)
        rows = self._uow.session.load(self._kind.name, record_id)
        if not rows:
            raise NotFoundError(record_id, kind=self._kind.cls.__name__.lower())
        return self._rebuild(record_id, rows)

    def get(self, record_id: str) -> Any:
        self._uow.check_open()
        _check_id(record_id)
        staged = self._uow.staged.get(self._key(record_id))
        if staged is not None:
            return staged[1]
        return self._stored(record_id)

    def add(self, record: Any) -> None:
        record_id = self._check(record)
        key = self._key(record_id)
        if key in self._uow.loaded or key in self._uow.staged:
            raise ValidationError(f"{record_id!r} is already in this unit of work; save it")
        self._uow.staged[key] = (0, record)

    def save(self, record: Any) -> None:
        """Stage ``record``: the one this unit of work knows of it, with events added.

        A record loaded in an earlier unit of work (a web form's) is compared with the
        stored one here; it lands if it extends the stored history.
        """
        record_id = self._check(record)
        key = self._key(record_id)
        staged = self._uow.staged.get(key)
        if staged is not None:
            base, known = staged
        else:
            known = self._uow.loaded.get(key)
            if known is None:
                known = self._stored(record_id)  # saved from an earlier unit of work
            base = known.version
        history = record.history
        if history[: known.version] != known.history:
            # It does not extend what is stored (or staged): someone changed it in between.
            common = next(
                (k for k, (a, b) in enumerate(zip(history, known.history, strict=False)) if a != b),
                min(len(history), known.version),
            )
            raise ConcurrencyError(record_id, common, known.version)
        if record.version > base or staged is not None:
            self._uow.staged[key] = (base, record)

    def find(self, **filters: Any) -> list[Any]:
        self._uow.check_open()
        query = self._kind.query(**filters)
        session = self._uow.session
        ids = session.query(self._kind.name, query)
        rows = session.load_many(self._kind.name, ids)
        out = []
        for record_id in ids:
            if not rows.get(record_id):
                continue
            record = self._rebuild(record_id, rows[record_id])
            if not query.matches(self._kind.values(record)):
                raise CorruptionError(
                    self._kind.name,
                    record_id,
                    None,
                    "its indexed columns are out of step with its events (it was found by "
                    "values its history does not have)",
                )
            out.append(record)
        return out

    def search(self, text: str, *, limit: int = 10, **scope: Any) -> list[Any]:
        self._uow.check_open()
        query = text_query(self._kind, text, limit, scope)
        session = self._uow.session
        search = getattr(session, "search", None)
        if search is None:
            raise ValidationError(f"{type(session).__name__} keeps no search index")
        if not query.terms:
            return []
        ids = search(self._kind.name, query)
        rows = session.load_many(self._kind.name, ids)
        document = self._kind.document
        assert document is not None  # noqa: S101 - text_query checked it
        out = []
        for record_id in ids:
            if rows.get(record_id):
                record = self._rebuild(record_id, rows[record_id])
                if document(record) is not None:  # unless retired since the index was read
                    out.append(record)
        return out

    def new_id(self) -> str:
        self._uow.check_open()
        return self._kind.number(self._uow.session.next_number(self._kind.name))

    def iterate(self, *, batch: int = 500, **filters: Any) -> Iterator[Any]:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValidationError(f"batch must be a whole number above 0, got {batch!r}")
        if "limit" in filters or "offset" in filters or "after" in filters:
            raise ValidationError("iterate() pages by itself: no limit, offset or after")
        after = None
        while True:
            page = self.find(**filters, limit=batch, after=after)
            yield from page
            if len(page) < batch:
                return
            after = page[-1]

    def history(self, record_id: str) -> tuple[Event, ...]:
        self._uow.check_open()
        _check_id(record_id)
        rows = self._uow.session.load(self._kind.name, record_id)
        if not rows:
            raise NotFoundError(record_id, kind=self._kind.cls.__name__.lower())
        return tuple(decode(self._kind.name, record_id, row) for row in rows)


def _check_id(record_id: object) -> None:
    if not isinstance(record_id, str):
        raise ValidationError(f"record ids are strings, got {type(record_id).__name__}")


class UnitOfWorkBase:
    """One transaction over every registered record kind; a context manager.

    It ends when its ``with`` block does: every later call raises ``ClosedError``.
    """

    def __init__(self, session: Session, record_kinds: Iterable[RecordKind[Any]] | None) -> None:
        self.session = session
        # Each record as last read or committed here: its version is the stored row's, and
        # so are its columns.
        self.loaded: dict[tuple[str, str], Any] = {}
        self.staged: dict[tuple[str, str], tuple[int, Any]] = {}
        self._kinds = dict(kind_map(record_kinds))
        self._closed = False
        # Repositories are made on first use (``uow.incidents``): most units of work use one.

    def check_open(self) -> None:
        """``ClosedError`` if the unit of work has ended."""
        if self._closed:
            raise ClosedError(
                "this unit of work has ended (its with block is over); open a new one with "
                "store.unit_of_work()"
            )

    def repository(self, cls: type[R]) -> Repository[R]:
        """The repository of the kind registered for records of class ``cls``."""
        for name, kind in self._kinds.items():
            if kind.cls is cls:
                return getattr(self, name)  # type: ignore[no-any-return]
        known = ", ".join(k.cls.__name__ for k in self._kinds.values())
        raise ValidationError(f"no record kind holds {cls!r} records here; known: {known}")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set yet: a kind's first use, or a kind nobody registered.
        kinds = self.__dict__.get("_kinds")
        if kinds is not None and name in kinds:
            repository = _Repository(self, kinds[name])
            setattr(self, name, repository)
            return repository
        raise AttributeError(
            f"no record kind {name!r} is registered; known: {', '.join(self._kinds)}"
        )

    def __enter__(self) -> Self:
        self.check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._closed:
            return
        self._closed = True
        self.staged.clear()
        self.session.close()

    def commit(self) -> None:
        """Write every staged change in one transaction, or raise and write nothing.

        After a failed commit nothing stays staged and records are read from the store
        again, so the unit of work can redo its change (``get``, change, ``save``, commit).
        """
        self.check_open()
        changes = []
        for (kind, record_id), (base, record) in self.staged.items():
            new = record.history[base:]
            rows = [encode(base + k, e) for k, e in enumerate(new, start=1)]
            to_columns = self._kinds[kind].values
            document = self._kinds[kind].document
            prior = self.loaded.get((kind, record_id))
            stored = (
                to_columns(prior) if base and prior is not None and prior.version == base else None
            )
            columns = to_columns(record)
            for name, value in columns.items():
                if isinstance(value, str) and len(value) > MAX_LABEL:
                    raise ValidationError(
                        f"{kind} {record_id!r}: {name} is {len(value):,} characters long; "
                        f"indexed fields hold at most {MAX_LABEL}"
                    )
            write = RecordWrite(kind, record_id, base, rows, columns, stored)
            if document is not None:  # a searchable kind: its entry follows the record
                write = write._replace(searchable=True, document=document(record))
            changes.append(write)
        if changes:
            # One order for every unit of work, so two writing overlapping records lock them
            # in the same order and cannot deadlock each other.
            changes.sort(key=_write_order)
            try:
                self.session.write(changes)
            except BaseException:
                self.staged.clear()
                self.loaded.clear()  # what was read may be stale now: read it again
                raise
        for (kind, record_id), (_, record) in self.staged.items():
            self.loaded[kind, record_id] = record
        self.staged.clear()

    def rollback(self) -> None:
        """Discard every staged change (what was committed stays)."""
        self.check_open()
        self.staged.clear()


# --------------------------------------------------------------------------- retrying

T = TypeVar("T")


class _Store(Protocol):
    def unit_of_work(self) -> Any: ...


def retry(store: _Store, work: Callable[[Any], T], *, attempts: int = 5) -> T:
    """Run ``work(uow)`` in a unit of work and commit; after a lost race, run it again.

    ``work`` reads what it needs, changes it and saves it (it does not commit): on a
    ``TransientError`` (a ``ConcurrencyError``, a ``StoreBusyError``) nothing was written,
    and ``work`` runs again in a fresh unit of work, on what the store holds now, up to
    ``attempts`` times in all; the last error is raised if every attempt lost. Returns what
    ``work`` returned in the attempt that committed.

    >>> from datetime import UTC, datetime
    >>> from itsmcore import Incident
    >>> from itsmcore.storage import InMemoryStore
    >>> store = InMemoryStore()
    >>> t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    >>> def log(uow):
    ...     record = Incident.open(id=uow.incidents.new_id(), title="VPN down",
    ...                            caller="mia", impact=2, urgency=2, at=t, by="desk")
    ...     uow.incidents.add(record)
    ...     return record.id
    >>> retry(store, log)
    'INC0000001'
    >>> def start(uow):
    ...     uow.incidents.save(uow.incidents.get("INC0000001").start(at=t, by="sam"))
    >>> retry(store, start)
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValidationError(f"attempts must be a whole number above 0, got {attempts!r}")
    for attempt in range(1, attempts + 1):
        with store.unit_of_work() as uow:
            try:
                result = work(uow)
                uow.commit()
            except TransientError:
                if attempt == attempts:
                    raise
                continue
            return result
    raise AssertionError  # pragma: no cover - the loop returns or raises
