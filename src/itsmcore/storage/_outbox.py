"""The transactional outbox every store shares: its rows, its SQL, and the delivery markers.

A commit writes one outbox row per event it appends, in the same transaction as the event
(so a rolled-back, failed or lost-race commit leaves none). A dispatcher
(``itsmcore.notify``) later claims pending rows for a lease, records a *claimed* marker per
notification before handing it to a channel and a *handed* marker after, and marks the row
dispatched once every notification of it is handed. Each step is one statement, atomic on
its own, so a process killed between any two leaves the store in a state the next
dispatcher can read: a claimed marker without a handed one is a notification *in doubt*.

The SQL stores share ``SQLOutbox``; the in-memory store keeps the same rows in dicts
(``MemoryOutbox``), under its lock, with the same meaning.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from itsmcore.errors import StoreBusyError, ValidationError

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Sequence

    from itsmcore.storage._core import Pool, RecordWrite

__all__ = [
    "CLAIMED",
    "HANDED",
    "MemoryOutbox",
    "MemoryOutboxData",
    "Outbox",
    "OutboxRow",
    "SQLOutbox",
    "outbox_key",
]

CLAIMED: Final = "claimed"
"""A notification about to be handed to its channel (maybe handed: in doubt after a crash)."""
HANDED: Final = "handed"
"""A notification its channel accepted."""


class OutboxRow(NamedTuple):
    """One committed event offered to subscribers.

    ``key`` (``"incidents/INC1/2"``: kind, record id, version) is unique; ``payload`` is the
    event's stored JSON; ``created_at`` the event's time in microseconds since the epoch
    (UTC); ``dispatched_at`` (µs) is set once every notification of it was handed over.
    """

    seq: int
    key: str
    kind: str
    record_id: str
    version: int
    type: str
    payload: str
    created_at: int
    attempts: int = 0
    last_error: str | None = None
    dispatched_at: int | None = None


def outbox_key(kind: str, record_id: str, version: int) -> str:
    """The idempotency key of a record's event: ``kind/record id/version``.

    One key per event, whoever computes it: kinds are identifiers (no ``/``) and the
    version is the last segment, so two different events never share a key.
    """
    return f"{kind}/{record_id}/{version}"


def rows_of(change: RecordWrite) -> list[tuple[object, ...]]:
    """The outbox rows a record write adds: one per new event, for ``INSERT_SQL``."""
    kind, record_id = change.kind, change.record_id
    return [
        (outbox_key(kind, record_id, e.version), kind, record_id, e.version, e.type, e.data, e.at)
        for e in change.events
    ]


def insert_sql(mark: str) -> str:
    """The INSERT of one outbox row (``rows_of``'s tuples), with the driver's placeholder."""
    marks = ", ".join([mark] * 7)
    return (
        "INSERT INTO itsm_outbox (key, kind, record_id, version, type, payload, created_at) "  # noqa: S608 - placeholders
        f"VALUES ({marks})"
    )


_COLUMNS: Final = (
    "seq, key, kind, record_id, version, type, payload, created_at, attempts, last_error, "
    "dispatched_at"
)


def ddl(*, postgres: bool) -> list[str]:
    """The outbox and delivery tables (a schema migration: SQLite 3, PostgreSQL 4)."""
    seq = "BIGINT GENERATED ALWAYS AS IDENTITY" if postgres else "INTEGER"
    big = "BIGINT" if postgres else "INTEGER"
    return [
        f"""CREATE TABLE IF NOT EXISTS itsm_outbox (
            seq {seq} PRIMARY KEY, key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
            type TEXT NOT NULL, payload TEXT NOT NULL, created_at {big} NOT NULL,
            claim TEXT, claimed_until {big}, attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT, dispatched_at {big})""",
        # Pending rows only: dispatched ones stay (an audit of what went out) but cost the
        # claim nothing.
        (
            "CREATE INDEX IF NOT EXISTS itsm_outbox_pending ON itsm_outbox (seq) "
            "WHERE dispatched_at IS NULL"
        ),
        f"""CREATE TABLE IF NOT EXISTS itsm_deliveries (
            key TEXT PRIMARY KEY, outbox_key TEXT NOT NULL, state TEXT NOT NULL,
            claim TEXT NOT NULL, claimed_at {big} NOT NULL, handed_at {big})""",
    ]


class Outbox(Protocol):
    """A store's outbox, as a dispatcher uses it (``store.outbox()``)."""

    def pending(self) -> list[OutboxRow]:
        """Rows not dispatched yet, oldest first."""
        ...

    def rows(self) -> list[OutboxRow]:
        """Every row, dispatched or not, oldest first."""
        ...

    def claim(self, token: str, at: int, until: int, limit: int) -> list[OutboxRow]:
        """Take up to ``limit`` pending rows no live claim holds, for ``token`` until ``until``."""
        ...

    def deliveries(self, keys: Sequence[str]) -> dict[str, str]:
        """The markers (``CLAIMED``/``HANDED``) recorded for those notification keys."""
        ...

    def begin(self, key: str, outbox_key: str, token: str, at: int) -> bool:
        """Record ``key`` as claimed, if no marker exists and ``token`` still holds the row."""
        ...

    def handed(self, key: str, at: int) -> None:
        """Record ``key`` as handed to its channel."""
        ...

    def finish(self, outbox_key: str, token: str, at: int) -> None:
        """Mark the row dispatched (every notification of it handed)."""
        ...

    def purge(self, before: int) -> int:
        """Delete rows dispatched before ``before`` (µs) and their markers; how many rows."""
        ...

    def release(self, outbox_key: str, token: str, error: str | None) -> None:
        """Give the row back for the next dispatch, counting a failed attempt if ``error``."""
        ...


# --------------------------------------------------------------------------- SQL


class SQLOutbox:
    """The outbox of a SQLite or PostgreSQL store, through its connection pool.

    Every method is one autocommitted statement: atomic by itself, and durable when it
    returns (SQLite in WAL mode with ``synchronous=NORMAL`` survives a killed process).
    """

    def __init__(self, pool: Pool[Any], *, postgres: bool) -> None:
        self._pool = pool
        self._pg = postgres
        self._mark = "%s" if postgres else "?"

    def _run(self, work: Callable[[Any], Any]) -> Any:
        conn = self._pool.take()
        try:
            return work(conn)
        except sqlite3.OperationalError as exc:
            raise StoreBusyError(f"the outbox could not be reached now: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg") and _operational(exc):
                conn.close()
                raise StoreBusyError(f"the outbox could not be reached now: {exc}") from exc
            raise
        finally:
            self._pool.give(conn)

    def _select(self, where: str, params: Sequence[object] = ()) -> list[OutboxRow]:
        sql = f"SELECT {_COLUMNS} FROM itsm_outbox {where} ORDER BY seq"  # noqa: S608 - fixed text
        rows = self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [OutboxRow(*r) for r in rows]

    def pending(self) -> list[OutboxRow]:
        return self._select("WHERE dispatched_at IS NULL")

    def rows(self) -> list[OutboxRow]:
        return self._select("")

    def claim(self, token: str, at: int, until: int, limit: int) -> list[OutboxRow]:
        m = self._mark
        free = f"dispatched_at IS NULL AND (claimed_until IS NULL OR claimed_until <= {m})"
        # PostgreSQL: rows another dispatcher is claiming right now are skipped, and the
        # condition is checked again on the locked row; SQLite runs one writer at a time.
        # The pick is materialized once: a subquery under IN may run again per row and so
        # take more than ``limit`` rows.
        lock = " FOR UPDATE SKIP LOCKED" if self._pg else ""
        sql = (
            f"WITH picked AS MATERIALIZED (SELECT seq FROM itsm_outbox WHERE {free} "  # noqa: S608 - fixed text
            f"ORDER BY seq LIMIT {m}{lock}) "
            f"UPDATE itsm_outbox SET claim = {m}, claimed_until = {m} "
            f"WHERE seq IN (SELECT seq FROM picked) AND {free} RETURNING {_COLUMNS}"
        )
        rows = self._run(lambda conn: conn.execute(sql, (at, limit, token, until, at)).fetchall())
        return sorted((OutboxRow(*r) for r in rows), key=lambda r: r.seq)

    def deliveries(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        params: list[object]
        if self._pg:
            where, params = "key = ANY(%s)", [list(keys)]
        else:
            where, params = f"key IN ({','.join('?' * len(keys))})", list(keys)
        sql = f"SELECT key, state FROM itsm_deliveries WHERE {where}"  # noqa: S608 - placeholders
        rows = self._run(lambda conn: conn.execute(sql, params).fetchall())
        return {str(key): str(state) for key, state in rows}

    def begin(self, key: str, outbox_key: str, token: str, at: int) -> bool:
        m = self._mark
        sql = (
            "INSERT INTO itsm_deliveries (key, outbox_key, state, claim, claimed_at) "  # noqa: S608 - fixed text
            f"SELECT {m}, {m}, '{CLAIMED}', {m}, {m} "
            f"WHERE EXISTS (SELECT 1 FROM itsm_outbox WHERE key = {m} AND claim = {m}) "
            "ON CONFLICT (key) DO NOTHING"
        )
        params = (key, outbox_key, token, at, outbox_key, token)
        return bool(self._run(lambda conn: conn.execute(sql, params).rowcount == 1))

    def handed(self, key: str, at: int) -> None:
        m = self._mark
        sql = f"UPDATE itsm_deliveries SET state = '{HANDED}', handed_at = {m} WHERE key = {m}"  # noqa: S608 - fixed text
        self._run(lambda conn: conn.execute(sql, (at, key)))

    def finish(self, outbox_key: str, token: str, at: int) -> None:  # noqa: ARG002 - any claim
        m = self._mark
        sql = (
            f"UPDATE itsm_outbox SET dispatched_at = {m}, claim = NULL, claimed_until = NULL "  # noqa: S608 - fixed text
            f"WHERE key = {m} AND dispatched_at IS NULL"
        )
        self._run(lambda conn: conn.execute(sql, (at, outbox_key)))

    def release(self, outbox_key: str, token: str, error: str | None) -> None:
        m = self._mark
        sql = (
            "UPDATE itsm_outbox SET claim = NULL, claimed_until = NULL, "  # noqa: S608 - fixed text
            f"attempts = attempts + {m}, last_error = COALESCE({m}, last_error) "
            f"WHERE key = {m} AND claim = {m}"
        )
        params = (0 if error is None else 1, error, outbox_key, token)
        self._run(lambda conn: conn.execute(sql, params))

    def purge(self, before: int) -> int:
        m = self._mark
        old = f"SELECT key FROM itsm_outbox WHERE dispatched_at IS NOT NULL AND dispatched_at < {m}"  # noqa: S608 - fixed text

        def work(conn: Any) -> int:
            # Markers first: a crash between the two statements leaves rows whose markers
            # are gone, which is harmless for a dispatched row (it is never read again).
            conn.execute(f"DELETE FROM itsm_deliveries WHERE outbox_key IN ({old})", (before,))  # noqa: S608 - fixed text
            sql = "DELETE FROM itsm_outbox WHERE dispatched_at IS NOT NULL AND dispatched_at < "
            return int(conn.execute(sql + m, (before,)).rowcount)

        return int(self._run(work))


def _operational(exc: BaseException) -> bool:
    import psycopg  # noqa: PLC0415 - only reached with psycopg's own errors

    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled
    )


# --------------------------------------------------------------------------- in memory


class MemoryOutboxData:
    """The in-memory store's outbox rows and markers (guarded by the store's lock)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}  # key -> OutboxRow fields + [claim, until]
        self.deliveries: dict[str, str] = {}
        self.owner: dict[str, str] = {}  # notification key -> outbox key
        self.seq = 0

    def add(self, changes: Iterable[RecordWrite]) -> None:
        """Add the rows of a batch being written (the caller holds the store's lock)."""
        for change in changes:
            for event in change.events:
                key = outbox_key(change.kind, change.record_id, event.version)
                if key in self.rows:  # the SQL stores' UNIQUE key; a checked write cannot
                    raise ValidationError(f"outbox key {key!r} is taken")  # pragma: no cover
                self.seq += 1
                row = OutboxRow(
                    self.seq, key, change.kind, change.record_id, event.version, event.type,
                    event.data, event.at,
                )  # fmt: skip
                self.rows[key] = [*row, None, None]


class MemoryOutbox:
    """The in-memory store's outbox: the same rows and steps as ``SQLOutbox``."""

    def __init__(self, data: MemoryOutboxData, lock: threading.Lock) -> None:
        self._data = data
        self._lock = lock

    @staticmethod
    def _row(fields: list[Any]) -> OutboxRow:
        return OutboxRow(*fields[:11])

    def pending(self) -> list[OutboxRow]:
        with self._lock:
            return [self._row(f) for f in self._data.rows.values() if f[10] is None]

    def rows(self) -> list[OutboxRow]:
        with self._lock:
            return [self._row(f) for f in self._data.rows.values()]

    def claim(self, token: str, at: int, until: int, limit: int) -> list[OutboxRow]:
        out: list[OutboxRow] = []
        with self._lock:
            for fields in self._data.rows.values():
                if len(out) >= limit:
                    break
                if fields[10] is None and (fields[12] is None or fields[12] <= at):
                    fields[11], fields[12] = token, until
                    out.append(self._row(fields))
        return out

    def deliveries(self, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            known = self._data.deliveries
            return {k: known[k] for k in keys if k in known}

    def begin(self, key: str, outbox_key: str, token: str, at: int) -> bool:  # noqa: ARG002 - no audit
        with self._lock:
            row = self._data.rows.get(outbox_key)
            if key in self._data.deliveries or row is None or row[11] != token:
                return False
            self._data.deliveries[key] = CLAIMED
            self._data.owner[key] = outbox_key
            return True

    def handed(self, key: str, at: int) -> None:  # noqa: ARG002 - no audit in memory
        with self._lock:
            self._data.deliveries[key] = HANDED

    def finish(self, outbox_key: str, token: str, at: int) -> None:  # noqa: ARG002 - any claim
        with self._lock:
            fields = self._data.rows[outbox_key]
            if fields[10] is None:
                fields[10], fields[11], fields[12] = at, None, None

    def purge(self, before: int) -> int:
        with self._lock:
            rows = self._data.rows
            gone = [k for k, f in rows.items() if f[10] is not None and f[10] < before]
            for key in gone:
                del rows[key]
            markers = self._data.deliveries
            # Markers name their notification, not their row: keep those of rows kept.
            self._data.deliveries = {
                k: v for k, v in markers.items() if self._data.owner.get(k) in rows
            }
            self._data.owner = {k: o for k, o in self._data.owner.items() if o in rows}
            return len(gone)

    def release(self, outbox_key: str, token: str, error: str | None) -> None:
        with self._lock:
            fields = self._data.rows[outbox_key]
            if fields[11] == token:
                fields[11] = fields[12] = None
                if error is not None:
                    fields[8] += 1
                    fields[9] = error
