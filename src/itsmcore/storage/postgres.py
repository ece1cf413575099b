"""A PostgreSQL store (psycopg 3, the ``postgres`` extra): for service desks built on itsmcore.

Schema and migrations are applied on first use, under an advisory lock so several processes
may start at once. A commit locks each saved record's row (``SELECT ... FOR UPDATE``),
checks its version, appends the events (primary key ``(kind, record id, version)``) and
updates the indexed row, in one transaction; a new record's id is claimed with
``INSERT ... ON CONFLICT DO NOTHING``, so two writers can never both create it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Final

from itsmcore.errors import ConcurrencyError, ValidationError
from itsmcore.repository import COLUMNS, Query, RecordKind, UnitOfWork
from itsmcore.storage._core import (
    Change,
    EventRow,
    Pool,
    PooledStore,
    UnitOfWorkBase,
    select_ids,
    update_record,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import psycopg

__all__ = ["PostgresStore"]

SCHEMA_VERSION: Final = 1
_LOCK_KEY: Final = 0x17_5C02E  # advisory lock id for schema changes

_MIGRATIONS: Final = {
    1: [
        """CREATE TABLE IF NOT EXISTS itsm_records (
            kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
            state TEXT, priority INTEGER, assignment_group TEXT, assignee TEXT,
            service TEXT, ci TEXT, opened_at BIGINT,
            PRIMARY KEY (kind, id))""",
        """CREATE TABLE IF NOT EXISTS itsm_events (
            kind TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
            type TEXT NOT NULL, schema_version INTEGER NOT NULL, at BIGINT NOT NULL,
            by TEXT NOT NULL, data JSONB NOT NULL,
            PRIMARY KEY (kind, record_id, version))""",
        *(
            f"CREATE INDEX IF NOT EXISTS itsm_records_{c} ON itsm_records (kind, {c})"
            for c in COLUMNS
        ),
    ],
}


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
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO itsm_meta (key, value) VALUES ('schema', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work with its own connection; use it in a ``with`` block."""
        return UnitOfWorkBase(_PostgresSession(self._pool), self._kinds)


_EVENTS: Final = (
    "SELECT version, type, schema_version, at, by, data::text FROM itsm_events "
    "WHERE kind = %s AND record_id = %s ORDER BY version"
)


def _connect(dsn: str) -> psycopg.Connection[Any]:
    return _psycopg().connect(dsn, autocommit=True)  # type: ignore[no-any-return]


def _clean(conn: psycopg.Connection[Any]) -> bool:
    # Broken, or left mid-transaction by its unit of work: never reuse its state.
    return not conn.closed and conn.info.transaction_status == _psycopg().pq.TransactionStatus.IDLE


class _PostgresSession:
    def __init__(self, pool: Pool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._conn: psycopg.Connection[Any] = pool.take()

    def load(self, kind: str, record_id: str) -> list[EventRow]:
        return [EventRow(*row) for row in self._conn.execute(_EVENTS, (kind, record_id))]

    def load_many(self, kind: str, record_ids: Sequence[str]) -> dict[str, list[EventRow]]:
        out: dict[str, list[EventRow]] = {i: [] for i in record_ids}
        rows = self._conn.execute(
            "SELECT record_id, version, type, schema_version, at, by, data::text "
            "FROM itsm_events WHERE kind = %s AND record_id = ANY(%s) "
            "ORDER BY record_id, version",
            (kind, list(out)),
        )
        for record_id, *rest in rows:
            out[record_id].append(EventRow(*rest))
        return out

    def query(self, kind: str, query: Query) -> list[str]:
        sql, params = select_ids(kind, query, "%s", arrays=True, no_limit=None)
        return [row[0] for row in self._conn.execute(sql, params)]

    def write(self, changes: Sequence[Change]) -> None:
        conn = self._conn
        with conn.transaction():
            for change in changes:
                _claim(conn, change)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO itsm_events (kind, record_id, version, type,"
                        " schema_version, at, by, data) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                        " %s::jsonb)",
                        [(change.kind, change.record_id, *e) for e in change.events],
                    )
                sql, params = update_record(change, change.base + len(change.events), "%s")
                conn.execute(sql, params)

    def close(self) -> None:
        self._pool.give(self._conn)


def _claim(conn: psycopg.Connection[Any], change: Change) -> None:
    """Lock the record's row at the expected version, or create it for a new record."""
    if change.base == 0:
        created = conn.execute(
            "INSERT INTO itsm_records (kind, id, version) VALUES (%s, %s, 0) "
            "ON CONFLICT (kind, id) DO NOTHING RETURNING id",
            (change.kind, change.record_id),
        ).fetchone()
        if created is not None:
            return
    row = conn.execute(
        "SELECT version FROM itsm_records WHERE kind = %s AND id = %s FOR UPDATE",
        (change.kind, change.record_id),
    ).fetchone()
    actual = 0 if row is None else row[0]
    if actual != change.base:
        raise ConcurrencyError(change.record_id, change.base, actual)
