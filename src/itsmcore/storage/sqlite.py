"""A SQLite store (stdlib ``sqlite3``): the embedded default for demos and notebooks.

The database runs in WAL mode, so readers never wait for the writer. The schema is created
on first use and versioned. A commit takes the write lock (``BEGIN IMMEDIATE``), checks
every record's stored version, appends the events (keyed by ``(kind, record id, version)``,
so two writers can never both land) and updates the indexed row, all in one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from zlib import crc32

from itsmcore.errors import StoreBusyError, ValidationError
from itsmcore.storage import _outbox
from itsmcore.storage._core import (
    EventRow,
    Pool,
    PooledStore,
    RecordWrite,
    UnitOfWorkBase,
    conflict,
    fit_columns,
    insert_record,
    schema_key,
    seal,
    select_ids,
    update_record,
)
from itsmcore.storage._search import index_sqlite, search_sqlite, sqlite_tables

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from itsmcore.record import Column
    from itsmcore.repository import Query, RecordKind, UnitOfWork
    from itsmcore.storage._search import TextQuery

__all__ = ["SQLiteStore"]

SCHEMA_VERSION: Final = 3

_SCHEMA: Final = [
    """CREATE TABLE IF NOT EXISTS itsm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    # Indexed columns are added to itsm_records as record kinds declare them.
    """CREATE TABLE IF NOT EXISTS itsm_records (
        kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        PRIMARY KEY (kind, id))""",
    """CREATE TABLE IF NOT EXISTS itsm_events (
        kind TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
        type TEXT NOT NULL, schema_version INTEGER NOT NULL, at INTEGER NOT NULL,
        by TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (kind, record_id, version))""",
    """CREATE TABLE IF NOT EXISTS itsm_sequences (
        kind TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
]

_BUSY_TIMEOUT_S: Final = 30.0


class SQLiteStore(PooledStore):
    """Records and their histories in a SQLite file.

    ``":memory:"`` is refused: each unit of work opens its own connection, and those would
    not share an in-memory database (use ``InMemoryStore``). A commit waits up to
    ``timeout`` seconds (30 by default) for another writer's lock, then raises
    ``StoreBusyError``.

    >>> import tempfile, pathlib
    >>> from datetime import UTC, datetime
    >>> from itsmcore import Incident
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "desk.sqlite3"
    >>> store = SQLiteStore(path)
    >>> t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    >>> with store.unit_of_work() as uow:
    ...     uow.incidents.add(Incident.open(id="INC1", title="VPN down", caller="mia",
    ...                                     impact=2, urgency=1, at=t, by="desk"))
    ...     uow.commit()
    >>> with store.unit_of_work() as uow:
    ...     [i.id for i in uow.incidents.find(priority=2)]
    ['INC1']
    """

    def __init__(
        self,
        path: str | Path,
        *,
        kinds: Iterable[RecordKind[Any]] | None = None,
        timeout: float = _BUSY_TIMEOUT_S,
    ) -> None:
        if str(path) == ":memory:" or not str(path):
            raise ValidationError("SQLiteStore needs a file path; use InMemoryStore in memory")
        self.path = str(path)
        self._kinds = None if kinds is None else tuple(kinds)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise ValidationError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        self.timeout = float(timeout)
        """How long a commit waits for another writer's lock before ``StoreBusyError``."""
        self._keep(Pool(partial(_connect, self.path, self.timeout), _clean))
        self._schema: frozenset[object] = frozenset()
        self._schema_lock = threading.Lock()
        with _connect(self.path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM itsm_meta WHERE key='schema'").fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise ValidationError(
                    f"{self.path} has schema version {current}, newer than this release "
                    f"({SCHEMA_VERSION}); upgrade itsmcore"
                )
            if current < 2:  # every event row sealed (see storage._core.seal)
                _add_seals(conn)
            if current < 3:  # the transactional outbox (events committed before: none)
                for statement in _outbox.ddl(postgres=False):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO itsm_meta (key, value) VALUES ('schema', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        self._fit_schema()

    def _fit_schema(self) -> list[RecordKind[Any]]:
        """Add the indexed columns of every kind served that the table lacks (additive only)."""
        served, fitted = self._served()
        if fitted:
            return served
        key = schema_key(served)
        if key <= self._schema:
            self._fitted = tuple(served)
            return served
        with self._schema_lock, _connect(self.path) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _add_columns(conn, served)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._schema = self._schema | key
            self._fitted = tuple(served)
        return served

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work with its own connection; use it in a ``with`` block."""
        served = self._fit_schema()
        return UnitOfWorkBase(_SQLiteSession(self._pool), served)

    def outbox(self) -> _outbox.Outbox:
        """The outbox: one row per committed event, for ``itsmcore.notify`` to dispatch."""
        return _outbox.SQLOutbox(self._pool, postgres=False)


def _add_seals(conn: sqlite3.Connection) -> None:
    """Schema 2: a ``seal`` per event row, computed now for the rows already stored."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(itsm_events)")}
    if "seal" not in names:
        conn.execute("ALTER TABLE itsm_events ADD COLUMN seal TEXT")
    rows = conn.execute(
        "SELECT kind, record_id, version, type, schema_version, at, by, data FROM itsm_events "
        "WHERE seal IS NULL"
    ).fetchall()
    conn.executemany(
        "UPDATE itsm_events SET seal = ? WHERE kind = ? AND record_id = ? AND version = ?",
        [(seal(k, i, EventRow(*rest)), k, i, rest[0]) for k, i, *rest in rows],
    )


def _add_columns(conn: sqlite3.Connection, served: Sequence[RecordKind[Any]]) -> None:
    info = conn.execute("PRAGMA table_info(itsm_records)")
    existing = {row[1]: str(row[2]).upper() for row in info}
    fit_columns(conn.execute, existing, served, mark="?", events_sql=_EVENTS, ddl_type=_ddl)
    sqlite_tables(conn.execute, served)


def _ddl(column: Column) -> str:
    return column.sql_type


def _connect(path: str, timeout: float = _BUSY_TIMEOUT_S) -> sqlite3.Connection:
    # Autocommit mode: transactions are begun explicitly, so reads never hold locks. A pooled
    # connection serves one unit of work at a time, whichever thread runs it.
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process in WAL
    return conn


def _clean(conn: sqlite3.Connection) -> bool:
    if conn.in_transaction:  # a unit of work left mid-transaction: never reuse its state
        conn.execute("ROLLBACK")
    return True


_EVENTS: Final = (
    "SELECT version, type, schema_version, at, by, data, seal FROM itsm_events "
    "WHERE kind = ? AND record_id = ? ORDER BY version"
)


_OUTBOX_INSERT: Final = _outbox.insert_sql("?")

_MANY: Final = (
    "SELECT record_id, version, type, schema_version, at, by, data, seal FROM itsm_events "
)


def _checked(kind: str, record_id: str, rows: Iterable[Sequence[Any]]) -> list[EventRow]:
    """Event rows with whether each matches its seal.

    ``seal``'s digest, written out: the record's part of the text summed once (CRC-32
    continues from a running value: crc(a + b) = crc(b, crc(a))), then each row's text in
    one piece. ``tests/test_decoders.py`` holds it to ``seal``.
    """
    start = crc32(f"{kind}\x1f{record_id}\x1f".encode("utf-8", "surrogatepass"))
    out = []
    for v, t, s, at, by, data, stored in rows:
        text = f"{v}\x1f{t}\x1f{s}\x1f{at}\x1f{by}\x1f{data}".encode("utf-8", "surrogatepass")
        out.append(
            _new_row(EventRow, (v, t, s, at, by, data, stored == f"{crc32(text, start):08x}"))
        )
    return out


_new_row: Final[Any] = tuple.__new__  # EventRow(...) without its Python-level __new__


class _SQLiteSession:
    def __init__(self, pool: Pool[sqlite3.Connection]) -> None:
        self._pool = pool
        self._conn = pool.take()

    def load(self, kind: str, record_id: str) -> list[EventRow]:
        return _checked(kind, record_id, self._conn.execute(_EVENTS, (kind, record_id)))

    def load_many(self, kind: str, record_ids: Sequence[str]) -> dict[str, list[EventRow]]:
        found: dict[str, list[Sequence[Any]]] = {i: [] for i in record_ids}
        ids = list(found)
        for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            where = f"WHERE kind = ? AND record_id IN ({marks}) ORDER BY record_id, version"
            for row in self._conn.execute(_MANY + where, (kind, *chunk)):
                found[row[0]].append(row[1:])
        return {i: _checked(kind, i, rows) for i, rows in found.items()}

    def query(self, kind: str, query: Query) -> list[str]:
        conn = self._conn
        return select_ids(
            lambda sql, params: conn.execute(sql, params).fetchall(), kind, query, "?", arrays=False
        )

    def search(self, kind: str, query: TextQuery) -> list[str]:
        return search_sqlite(self._conn.execute, kind, query)

    def next_number(self, kind: str) -> int:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreBusyError(f"{exc}: could not take a record number") from exc
        try:
            (number,) = conn.execute(
                "INSERT INTO itsm_sequences (kind, value) VALUES (?, 1) "
                "ON CONFLICT (kind) DO UPDATE SET value = value + 1 RETURNING value",
                (kind,),
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return int(number)

    def write(self, changes: Sequence[RecordWrite]) -> None:
        try:
            self._write(changes)
        except sqlite3.OperationalError as exc:
            # The write lock stayed taken longer than the busy timeout: nothing was written.
            if "locked" in str(exc) or "busy" in str(exc):
                msg = f"{exc}: another writer held the SQLite write lock past the timeout"
                raise StoreBusyError(msg) from exc
            raise

    def _write(self, changes: Sequence[RecordWrite]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                _check_version(conn, change)
                kind, record_id = change.kind, change.record_id
                conn.executemany(
                    "INSERT INTO itsm_events (kind, record_id, version, type, schema_version,"
                    " at, by, data, seal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(kind, record_id, *e[:6], seal(kind, record_id, e)) for e in change.events],
                )
                conn.executemany(_OUTBOX_INSERT, _outbox.rows_of(change))
                version = change.base + len(change.events)
                if change.base == 0:  # _check_version found no row
                    sql, params = insert_record(change, version, "?")
                else:
                    sql, params = update_record(change, version, "?")
                conn.execute(sql, params)
                if change.searchable:
                    index_sqlite(conn.execute, change)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._pool.give(self._conn)


def _check_version(conn: sqlite3.Connection, change: RecordWrite) -> None:
    row = conn.execute(
        "SELECT version FROM itsm_records WHERE kind = ? AND id = ?",
        (change.kind, change.record_id),
    ).fetchone()
    actual = 0 if row is None else row[0]
    if actual != change.base:
        raise conflict(change, actual)
