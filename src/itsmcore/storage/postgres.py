"""A PostgreSQL store (psycopg 3, the ``postgres`` extra): for service desks built on itsmcore.

Schema and migrations are applied on first use, under an advisory lock so several processes
may start at once. A commit locks each saved record's row (``SELECT ... FOR UPDATE``),
checks its version, appends the events (primary key ``(kind, record id, version)``) and
updates the indexed row, in one transaction; a new record's id is claimed with
``INSERT ... ON CONFLICT DO NOTHING``, so two writers can never both create it.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

from itsmcore.errors import ConcurrencyError, StoreBusyError, ValidationError
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
    select_ids,
    update_record,
)
from itsmcore.storage._search import index_postgres, postgres_tables, search_postgres

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import psycopg

    from itsmcore.record import Column
    from itsmcore.repository import Query, RecordKind, UnitOfWork
    from itsmcore.storage._search import TextQuery

__all__ = ["PostgresStore"]

SCHEMA_VERSION: Final = 4
_LOCK_KEY: Final = 0x17_5C02E  # advisory lock id for schema changes

_MIGRATIONS: Final = {
    1: [
        # Indexed columns are added to itsm_records as record kinds declare them.
        """CREATE TABLE IF NOT EXISTS itsm_records (
            kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
            PRIMARY KEY (kind, id))""",
        """CREATE TABLE IF NOT EXISTS itsm_events (
            kind TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
            type TEXT NOT NULL, schema_version INTEGER NOT NULL, at BIGINT NOT NULL,
            by TEXT NOT NULL, data JSONB NOT NULL,
            PRIMARY KEY (kind, record_id, version))""",
    ],
    2: [
        """CREATE TABLE IF NOT EXISTS itsm_sequences (
            kind TEXT PRIMARY KEY, value BIGINT NOT NULL)""",
    ],
    3: [  # every event row sealed (see storage._core.seal), the stored ones now
        "ALTER TABLE itsm_events ADD COLUMN IF NOT EXISTS seal TEXT",
        "UPDATE itsm_events SET seal = {seal} WHERE seal IS NULL",
    ],
    4: _outbox.ddl(postgres=True),  # the transactional outbox (events committed before: none)
}
# The seal, computed by the server over the data as it keeps it (JSONB's own text), so that
# writing and checking read the same text; an event copied from another record or position
# keeps a seal made for its old place.
_SEAL: Final = (
    "md5(concat_ws(chr(31), {kind}, {record_id}, {version}::text, {type},"
    " {schema_version}::text, {at}::text, {by}, {data}::text))"
)
_ROW_SEAL: Final = _SEAL.format(
    kind="kind", record_id="record_id", version="version", type="type",
    schema_version="schema_version", at="at", by="by", data="data",
)  # fmt: skip
_INTACT: Final = f"seal IS NOT NULL AND seal = {_ROW_SEAL}"
"""Whether a row's stored seal is the one its place and content make (every load asks)."""


def _psycopg() -> Any:
    try:
        import psycopg  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - installed with the test extra
        raise ImportError("PostgresStore needs psycopg: pip install 'itsmcore[postgres]'") from exc
    return psycopg


class PostgresStore(PooledStore):
    """Records and their histories in a PostgreSQL database.

    ``dsn`` is a libpq connection string (``"host=/run/postgresql dbname=desk"``) or URL.
    Each unit of work opens its own connection.
    """

    def __init__(self, dsn: str, *, kinds: Iterable[RecordKind[Any]] | None = None) -> None:
        self.dsn = dsn
        self._kinds = None if kinds is None else tuple(kinds)
        self._keep(Pool(partial(_connect, dsn), _clean))
        self._schema: frozenset[object] = frozenset()
        self._schema_lock = threading.Lock()
        psycopg = _psycopg()
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS itsm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = conn.execute("SELECT value FROM itsm_meta WHERE key = 'schema'").fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise ValidationError(
                    f"the database has schema version {current}, newer than this release "
                    f"({SCHEMA_VERSION}); upgrade itsmcore"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement.replace("{seal}", _ROW_SEAL))
            conn.execute(
                "INSERT INTO itsm_meta (key, value) VALUES ('schema', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
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
        with self._schema_lock, _psycopg().connect(self.dsn) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            _add_columns(conn, served)
            self._schema = self._schema | key
            self._fitted = tuple(served)
        return served

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work with its own connection; use it in a ``with`` block."""
        served = self._fit_schema()
        return UnitOfWorkBase(_PostgresSession(self._pool), served)

    def outbox(self) -> _outbox.Outbox:
        """The outbox: one row per committed event, for ``itsmcore.notify`` to dispatch."""
        return _outbox.SQLOutbox(self._pool, postgres=True)


# What information_schema reports, as the declared column types.
_PG_TYPES: Final = {"text": "TEXT", "character varying": "TEXT", "integer": "INTEGER",
                    "bigint": "INTEGER", "smallint": "INTEGER"}  # fmt: skip


def _add_columns(conn: psycopg.Connection[Any], served: Sequence[RecordKind[Any]]) -> None:
    info = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'itsm_records'"
    )
    existing = {name: _PG_TYPES.get(kind, kind) for name, kind in info}
    fit_columns(conn.execute, existing, served, mark="%s", events_sql=_EVENTS, ddl_type=_ddl)
    postgres_tables(conn.execute, served)


def _ddl(column: Column) -> str:
    return "TEXT" if column.sql_type == "TEXT" else "BIGINT"  # microseconds overflow INTEGER


_EVENTS: Final = (
    f"SELECT version, type, schema_version, at, by, data::text, {_INTACT} FROM itsm_events "  # noqa: S608 - a fixed expression
    "WHERE kind = %s AND record_id = %s ORDER BY version"
)


def _connect(dsn: str) -> psycopg.Connection[Any]:
    return _psycopg().connect(dsn, autocommit=True)  # type: ignore[no-any-return]


def _clean(conn: psycopg.Connection[Any]) -> bool:
    # Broken, or left mid-transaction by its unit of work: never reuse its state.
    return not conn.closed and conn.info.transaction_status == _psycopg().pq.TransactionStatus.IDLE


_T = TypeVar("_T")


class _PostgresSession:
    def __init__(self, pool: Pool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._conn: psycopg.Connection[Any] = pool.take()
        self._fresh = True  # nothing done on this connection in this unit of work yet

    def _call(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work``; a pooled connection that died while idle is replaced once.

        After a server restart every idle pooled connection is dead, and the first
        statement on one fails. Nothing of the unit of work has happened yet then, so a new
        connection can do it. Any other lost connection is a ``StoreBusyError``.
        """
        psycopg = _psycopg()
        try:
            result = work(self._conn)
        except psycopg.OperationalError as exc:
            if not (self._fresh and self._conn.closed):
                raise _translate(exc) from exc
            self._conn.close()
            self._conn = self._pool.fresh()
            try:
                result = work(self._conn)
            except psycopg.OperationalError as again:
                raise _translate(again) from again
        self._fresh = False
        return result

    def load(self, kind: str, record_id: str) -> list[EventRow]:
        return self._call(
            lambda conn: list(map(EventRow._make, conn.execute(_EVENTS, (kind, record_id))))
        )

    def load_many(self, kind: str, record_ids: Sequence[str]) -> dict[str, list[EventRow]]:
        out: dict[str, list[EventRow]] = {i: [] for i in record_ids}
        rows = self._call(
            lambda conn: conn.execute(
                "SELECT record_id, version, type, schema_version, at, by, data::text, "  # noqa: S608 - a fixed expression
                f"{_INTACT} FROM itsm_events WHERE kind = %s AND record_id = ANY(%s) "
                "ORDER BY record_id, version",
                (kind, list(out)),
            ).fetchall()
        )
        for record_id, *rest in rows:
            out[record_id].append(EventRow(*rest))
        return out

    def query(self, kind: str, query: Query) -> list[str]:
        return self._call(
            lambda conn: select_ids(
                lambda sql, params: conn.execute(sql, params).fetchall(),
                kind,
                query,
                "%s",
                arrays=True,
            )
        )

    def search(self, kind: str, query: TextQuery) -> list[str]:
        return self._call(
            lambda conn: search_postgres(
                lambda sql, params: conn.execute(sql, params).fetchall(), kind, query
            )
        )

    def next_number(self, kind: str) -> int:
        return self._call(lambda conn: _next_number(conn, kind))

    def write(self, changes: Sequence[RecordWrite]) -> None:
        psycopg = _psycopg()
        try:
            self._call(lambda conn: _write(conn, changes))
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            # Rows are locked in one order (see UnitOfWorkBase.commit); should the database
            # still break a lock cycle, this unit of work lost a race like any other.
            first = changes[0]
            raise ConcurrencyError(first.record_id, first.base, None) from exc

    def close(self) -> None:
        self._pool.give(self._conn)


def _next_number(conn: psycopg.Connection[Any], kind: str) -> int:
    """Take the kind's next number in its own (autocommitted) statement: a row lock, briefly."""
    row: Any = conn.execute(
        "INSERT INTO itsm_sequences (kind, value) VALUES (%s, 1) "
        "ON CONFLICT (kind) DO UPDATE SET value = itsm_sequences.value + 1 RETURNING value",
        (kind,),
    ).fetchone()
    return int(row[0])


_INSERT_EVENT: Final = (
    "INSERT INTO itsm_events (kind, record_id, version, type, schema_version, at, by, data,"  # noqa: S608 - a fixed expression
    " seal) SELECT k, r, v, t, s, a, b, d, "
    + _SEAL.format(kind="k", record_id="r", version="v", type="t", schema_version="s",
                   at="a", by="b", data="d")
    + " FROM (VALUES (%s, %s, %s::integer, %s, %s::integer, %s::bigint, %s, %s::jsonb))"
    " AS e(k, r, v, t, s, a, b, d)"
)  # fmt: skip


_OUTBOX_INSERT: Final = _outbox.insert_sql("%s")

# An event and its outbox row in one statement (the CTE's insert runs though nothing reads
# it): one round trip where two took two, and all of it or none.
_INSERT_EVENT_AND_OUTBOX: Final = f"WITH e AS ({_INSERT_EVENT}) {_OUTBOX_INSERT}"


def _write(conn: psycopg.Connection[Any], changes: Sequence[RecordWrite]) -> None:
    with conn.transaction():
        for change in changes:
            version = change.base + len(change.events)
            written = _claim(conn, change, version)
            kind, record_id = change.kind, change.record_id
            rows = [
                (kind, record_id, *e[:6], *outbox)
                for e, outbox in zip(change.events, _outbox.rows_of(change), strict=True)
            ]
            if len(rows) == 1:  # most commits: executemany's pipeline costs more for one
                conn.execute(_INSERT_EVENT_AND_OUTBOX, rows[0])
            else:
                with conn.cursor() as cur:
                    cur.executemany(_INSERT_EVENT_AND_OUTBOX, rows)
            if not written:
                sql, params = update_record(change, version, "%s")
                conn.execute(sql, params)
            if change.searchable:
                index_postgres(conn.execute, change)


def _translate(exc: BaseException) -> BaseException:
    """A psycopg operational error as the library's: a lost race, or the store is busy."""
    errors: Any = _psycopg().errors
    if isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure):
        return exc  # type: ignore[no-any-return]  # write() turns these into a ConcurrencyError naming the record
    return StoreBusyError(f"PostgreSQL could not do it now: {str(exc).strip()[:300]}")


def _claim(conn: psycopg.Connection[Any], change: RecordWrite, version: int) -> bool:
    """Lock the record's row at the expected version, or create it for a new record.

    A new record's row is written whole, at ``version`` with its columns (``True``): one
    statement where creating it and then updating it took two.
    """
    if change.base == 0:
        sql, params = insert_record(change, version, "%s")
        created = conn.execute(
            f"{sql} ON CONFLICT (kind, id) DO NOTHING RETURNING id", params
        ).fetchone()
        if created is not None:
            return True
    row = conn.execute(
        "SELECT version FROM itsm_records WHERE kind = %s AND id = %s FOR UPDATE",
        (change.kind, change.record_id),
    ).fetchone()
    actual = 0 if row is None else row[0]
    if actual != change.base:
        raise conflict(change, actual)
    return False
