"""Stores implementing the repository protocol: in memory, SQLite and PostgreSQL.

``InMemoryStore()`` and ``SQLiteStore(path)`` need nothing beyond the standard library;
``PostgresStore(dsn)`` needs the ``postgres`` extra (psycopg 3). Each has
``unit_of_work()``.
"""

from itsmcore.storage.memory import InMemoryStore
from itsmcore.storage.postgres import PostgresStore
from itsmcore.storage.sqlite import SQLiteStore

__all__ = ["InMemoryStore", "PostgresStore", "SQLiteStore"]
