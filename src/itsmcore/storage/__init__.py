"""Stores implementing the repository protocol: in memory, SQLite and PostgreSQL.

``InMemoryStore()`` and ``SQLiteStore(path)`` need nothing beyond the standard library;
``PostgresStore(dsn)`` needs the ``postgres`` extra (psycopg 3). Each has
``unit_of_work()``. A store on another database implements a ``Session`` and hands it to
``UnitOfWorkBase``, which all three stores share (see docs/storage.md).
"""

from itsmcore.storage._core import EventRow, RecordWrite, Session, UnitOfWorkBase, retry
from itsmcore.storage.memory import InMemoryStore
from itsmcore.storage.postgres import PostgresStore
from itsmcore.storage.sqlite import SQLiteStore

__all__ = [
    "EventRow",
    "InMemoryStore",
    "PostgresStore",
    "RecordWrite",
    "SQLiteStore",
    "Session",
    "UnitOfWorkBase",
    "retry",
]
