"""An in-memory store: thread-safe, for tests, demos and embedding without a database.

It keeps the same rows a database would (events serialized as JSON), so it behaves exactly
like the SQL stores, down to refusing a corrupted row.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Self

from itsmcore.repository import kind_map
from itsmcore.search import Bm25Index
from itsmcore.storage._core import EventRow, RecordWrite, UnitOfWorkBase, conflict
from itsmcore.storage._outbox import MemoryOutbox, MemoryOutboxData, Outbox
from itsmcore.storage._search import index_memory, search_memory

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from itsmcore.repository import Query, RecordKind, UnitOfWork
    from itsmcore.storage._search import TextQuery

__all__ = ["InMemoryStore"]


class InMemoryStore:
    """Records and their histories in this process's memory.

    >>> from datetime import UTC, datetime
    >>> from itsmcore import Incident
    >>> store = InMemoryStore()
    >>> t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    >>> with store.unit_of_work() as uow:
    ...     uow.incidents.add(Incident.open(id="INC1", title="VPN down", caller="mia",
    ...                                     impact=1, urgency=1, at=t, by="desk"))
    ...     uow.commit()
    >>> with store.unit_of_work() as uow:
    ...     uow.incidents.get("INC1").priority.name
    'P1'
    """

    def __init__(self, *, kinds: Iterable[RecordKind[Any]] | None = None) -> None:
        self._kinds = None if kinds is None else tuple(kinds)
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], list[EventRow]] = {}
        self._columns: dict[tuple[str, str], dict[str, object]] = {}
        self._numbers: dict[str, int] = {}
        self._search = Bm25Index()
        self._outbox = MemoryOutboxData()

    def close(self) -> None:
        """Nothing to release; here so every store can be closed alike."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work (one transaction); use it in a ``with`` block."""
        return UnitOfWorkBase(_MemorySession(self), kind_map(self._kinds).values())

    def outbox(self) -> Outbox:
        """The outbox: one row per committed event, for ``itsmcore.notify`` to dispatch."""
        return MemoryOutbox(self._outbox, self._lock)


class _MemorySession:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def load(self, kind: str, record_id: str) -> list[EventRow]:
        with self._store._lock:  # noqa: SLF001 - the store's own session
            return list(self._store._events.get((kind, record_id), ()))  # noqa: SLF001

    def load_many(self, kind: str, record_ids: Sequence[str]) -> dict[str, list[EventRow]]:
        with self._store._lock:  # noqa: SLF001
            events = self._store._events  # noqa: SLF001
            return {i: list(events.get((kind, i), ())) for i in record_ids}

    def query(self, kind: str, query: Query) -> list[str]:
        with self._store._lock:  # noqa: SLF001
            rows = [
                (record_id, columns)
                for (k, record_id), columns in self._store._columns.items()  # noqa: SLF001
                if k == kind and query.matches(columns)
            ]

        # Like the SQL stores: None last in both directions, ties broken by id in the order's
        # direction, pages after a keyset.
        rows = [row for row in rows if query.is_after(*row)]
        rows.sort(key=lambda row: query.sort_key(*row))
        end = None if query.limit is None else query.offset + query.limit
        return [record_id for record_id, _ in rows[query.offset : end]]

    def search(self, kind: str, query: TextQuery) -> list[str]:
        with self._store._lock:  # noqa: SLF001
            return search_memory(self._store._search, self._store._columns, kind, query)  # noqa: SLF001

    def next_number(self, kind: str) -> int:
        store = self._store
        with store._lock:  # noqa: SLF001
            number = store._numbers[kind] = store._numbers.get(kind, 0) + 1  # noqa: SLF001
        return number

    def write(self, changes: Sequence[RecordWrite]) -> None:
        store = self._store
        with store._lock:  # noqa: SLF001
            for change in changes:  # check everything before writing anything
                actual = len(store._events.get((change.kind, change.record_id), ()))  # noqa: SLF001
                if actual != change.base:
                    raise conflict(change, actual)
            store._outbox.add(changes)  # noqa: SLF001 - in the same lock: all or nothing
            for change in changes:
                key = (change.kind, change.record_id)
                store._events.setdefault(key, []).extend(change.events)  # noqa: SLF001
                store._columns[key] = dict(change.columns)  # noqa: SLF001
                if change.searchable:
                    index_memory(store._search, change)  # noqa: SLF001

    def close(self) -> None:
        pass
