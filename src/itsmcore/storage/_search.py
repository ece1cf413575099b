"""Full-text search in the stores: the index tables, their upkeep at commit, the ranked query.

A searchable kind's records are indexed in the transaction that commits them: a commit
writes the document of each record that is to be found (a published article) and removes
the one of each record that is not (a draft, a retired article), so the index never holds
what the records do not say, and a unit of work that does not commit changes nothing.

- SQLite: an FTS5 table (``itsm_search``: title, keywords, body) whose rowids are kept per
  record in ``itsm_search_ids``; ranked by ``bm25()`` with :data:`itsmcore.search.WEIGHTS`.
- PostgreSQL: ``itsm_search`` with one ``tsvector`` per record (the title weighted A, the
  keywords B, the body D, in the ``simple`` configuration: no stemming, no stop words, as in
  the other stores), under a GIN index; ranked by ``ts_rank`` with the same weights.
- In memory: :class:`itsmcore.search.Bm25Index`, ranking as FTS5 does.

Every store is handed the words :func:`itsmcore.search.words` made, joined by spaces, and a
query made of those words only: the user's text never reaches SQL or a query syntax.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from itsmcore.errors import ValidationError
from itsmcore.record import label
from itsmcore.search import PREFIX_FROM, WEIGHTS, Bm25Index, query_terms

if TYPE_CHECKING:
    from itsmcore.repository import RecordKind
    from itsmcore.storage._core import RecordWrite

__all__ = [
    "MAX_LIMIT",
    "TextQuery",
    "index_memory",
    "index_postgres",
    "index_sqlite",
    "postgres_tables",
    "search_memory",
    "search_postgres",
    "search_sqlite",
    "sqlite_tables",
    "text_query",
]

MAX_LIMIT: Final = 1000
"""The most records one search returns."""

Execute = Callable[[str, Sequence[object]], Any]


@attrs.frozen
class TextQuery:
    """A checked search: its words, how many records at most, and its scope.

    ``scope`` lists ``(column, value)``: a record is in scope when its column holds the
    value or nothing (an article for no particular service applies to every service).
    """

    terms: tuple[str, ...]
    limit: int
    scope: tuple[tuple[str, str], ...] = ()

    def in_scope(self, values: Mapping[str, object]) -> bool:
        """Whether a record with these stored column values is in scope."""
        return all(values.get(name) in (None, value) for name, value in self.scope)

    def fts5(self) -> str:
        """The FTS5 MATCH expression: any of the words, each quoted, long ones as prefixes."""
        return " OR ".join(f'"{t}"*' if len(t) >= PREFIX_FROM else f'"{t}"' for t in self.terms)

    def tsquery(self) -> str:
        """The PostgreSQL ``to_tsquery`` text: any of the words, long ones as prefixes."""
        return " | ".join(f"'{t}':*" if len(t) >= PREFIX_FROM else f"'{t}'" for t in self.terms)


def text_query(
    kind: RecordKind[Any], text: object, limit: object, scope: Mapping[str, object]
) -> TextQuery:
    """A :class:`TextQuery` from ``search()``'s arguments, each checked.

    Raises:
        ValidationError: the kind is not searchable, the text is not a string or is too
            long, ``limit`` is not 1 to :data:`MAX_LIMIT`, or a scope names no text column
            of the kind or holds no value such a column keeps.
    """
    if kind.document is None:
        raise ValidationError(f"{kind.name} records are not searchable")
    terms = query_terms(text)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    columns = {c.name: c for c in kind.columns if c.type is str}
    checked = []
    for name, value in scope.items():
        column = columns.get(name)
        if column is None:
            allowed = ", ".join(sorted(columns)) or "none"
            raise ValidationError(f"cannot scope a search by {name!r}; scopes: {allowed}")
        if value is None:
            continue
        if column.parse is not None:
            value = column.parse(value)  # noqa: PLW2901 - the same value, as stored
        if isinstance(value, enum.Enum):
            value = value.value  # noqa: PLW2901
        checked.append((name, label(value, name)))
    return TextQuery(terms, limit, tuple(checked))


def _texts(change: RecordWrite) -> tuple[str, str, str]:
    assert change.document is not None  # noqa: S101 - the callers check
    title, keywords, body = change.document.columns()
    return " ".join(title), " ".join(keywords), " ".join(body)


# --------------------------------------------------------------------------- SQLite

_SQLITE_TABLES: Final = (
    # Explicit INTEGER PRIMARY KEY: a docid VACUUM never renumbers.
    """CREATE TABLE IF NOT EXISTS itsm_search_ids (
        docid INTEGER PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL, UNIQUE (kind, id))""",
    # Words arrive folded and unaccented already: the tokenizer only splits at spaces.
    """CREATE VIRTUAL TABLE IF NOT EXISTS itsm_search USING fts5(
        title, keywords, body, tokenize = 'unicode61 remove_diacritics 0')""",
)


def sqlite_tables(execute: Execute, served: Iterable[RecordKind[Any]]) -> None:
    """Create the search tables if a kind served is searchable (in the schema transaction)."""
    if any(kind.document is not None for kind in served):
        for statement in _SQLITE_TABLES:
            execute(statement, ())


def index_sqlite(execute: Execute, change: RecordWrite) -> None:
    """Keep a record's search entry in step with ``change``, in the commit's transaction."""
    found = execute(
        "SELECT docid FROM itsm_search_ids WHERE kind = ? AND id = ?",
        (change.kind, change.record_id),
    ).fetchone()
    if found is not None:
        execute("DELETE FROM itsm_search WHERE rowid = ?", (found[0],))
    if change.document is None:
        if found is not None:
            execute("DELETE FROM itsm_search_ids WHERE docid = ?", (found[0],))
        return
    if found is None:
        docid = execute(
            "INSERT INTO itsm_search_ids (kind, id) VALUES (?, ?)", (change.kind, change.record_id)
        ).lastrowid
    else:
        docid = found[0]
    execute(
        "INSERT INTO itsm_search (rowid, title, keywords, body) VALUES (?, ?, ?, ?)",
        (docid, *_texts(change)),
    )


def _scope_sql(query: TextQuery, mark: str, ids: str) -> tuple[str, str, list[object]]:
    """The join on the records table and the conditions a scope adds, with parameters."""
    if not query.scope:
        return "", "", []
    join = f" JOIN itsm_records AS r ON r.kind = {ids}.kind AND r.id = {ids}.id"
    where = "".join(
        f" AND (r.{name} = {mark} OR r.{name} IS NULL)" for name, _ in query.scope
    )  # names: the kind's own column names (text_query), identifiers by Column's rule
    return join, where, [value for _, value in query.scope]


def search_sqlite(rows: Execute, kind: str, query: TextQuery) -> list[str]:
    """Ids of the best ``query.limit`` records of ``kind`` for ``query``, best first."""
    join, where, params = _scope_sql(query, "?", "i")
    weights = ", ".join(map(str, WEIGHTS))
    sql = (
        "SELECT i.id FROM itsm_search JOIN itsm_search_ids AS i ON i.docid = itsm_search.rowid"  # noqa: S608 - fixed names and placeholders
        f"{join} WHERE itsm_search MATCH ? AND i.kind = ?{where} "
        f"ORDER BY bm25(itsm_search, {weights}), i.id LIMIT ?"
    )
    return [r[0] for r in rows(sql, (query.fts5(), kind, *params, query.limit))]


# --------------------------------------------------------------------------- PostgreSQL

_POSTGRES_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS itsm_search (
        kind TEXT NOT NULL, id TEXT NOT NULL, document tsvector NOT NULL,
        PRIMARY KEY (kind, id))""",
    "CREATE INDEX IF NOT EXISTS itsm_search_document ON itsm_search USING GIN (document)",
)
# ts_rank's weights are listed {D, C, B, A}: the body (D), the keywords (B), the title (A)
# weigh as WEIGHTS says.
_BODY, _KEYWORDS, _TITLE = (w / WEIGHTS[0] for w in reversed(WEIGHTS))
_PG_WEIGHTS: Final = f"{{{_BODY}, {_BODY}, {_KEYWORDS}, {_TITLE}}}"
_VECTOR: Final = (
    "setweight(to_tsvector('simple', %s), 'A') || setweight(to_tsvector('simple', %s), 'B')"
    " || setweight(to_tsvector('simple', %s), 'D')"
)


def postgres_tables(execute: Execute, served: Iterable[RecordKind[Any]]) -> None:
    """Create the search table if a kind served is searchable (in the schema transaction)."""
    if any(kind.document is not None for kind in served):
        for statement in _POSTGRES_TABLES:
            execute(statement, ())


def index_postgres(execute: Execute, change: RecordWrite) -> None:
    """Keep a record's search entry in step with ``change``, in the commit's transaction."""
    if change.document is None:
        execute(
            "DELETE FROM itsm_search WHERE kind = %s AND id = %s", (change.kind, change.record_id)
        )
        return
    execute(
        f"INSERT INTO itsm_search (kind, id, document) VALUES (%s, %s, {_VECTOR}) "  # noqa: S608 - a fixed expression
        "ON CONFLICT (kind, id) DO UPDATE SET document = excluded.document",
        (change.kind, change.record_id, *_texts(change)),
    )


def search_postgres(rows: Execute, kind: str, query: TextQuery) -> list[str]:
    """Ids of the best ``query.limit`` records of ``kind`` for ``query``, best first."""
    join, where, params = _scope_sql(query, "%s", "s")
    sql = (
        f"SELECT s.id FROM itsm_search AS s{join} "  # noqa: S608 - fixed names and placeholders
        "CROSS JOIN to_tsquery('simple', %s) AS q "
        f"WHERE s.kind = %s AND s.document @@ q{where} "
        f"ORDER BY ts_rank('{_PG_WEIGHTS}', s.document, q, 1) DESC, s.id COLLATE \"C\" LIMIT %s"
    )
    return [r[0] for r in rows(sql, (query.tsquery(), kind, *params, query.limit))]


# --------------------------------------------------------------------------- memory


def index_memory(index: Bm25Index, change: RecordWrite) -> None:
    """Keep a record's entry in the in-memory index in step with ``change`` (under the lock)."""
    key = (change.kind, change.record_id)
    if change.document is None:
        index.remove(key)
    else:
        index.put(key, change.document)


def search_memory(
    index: Bm25Index, columns: Mapping[tuple[str, str], Mapping[str, object]], kind: str,
    query: TextQuery,
) -> list[str]:  # fmt: skip
    """Ids of the best ``query.limit`` records of ``kind`` for ``query``, best first."""

    def accept(key: object) -> bool:
        return key[0] == kind and query.in_scope(columns.get(key, {}))  # type: ignore[index, call-overload]

    found = index.search(query.terms, limit=query.limit, accept=accept, order=_record_id)
    return [_record_id(key) for key in found]


def _record_id(key: object) -> str:
    return key[1]  # type: ignore[index, no-any-return]
