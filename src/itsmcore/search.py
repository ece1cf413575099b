"""Full-text search, the part every store shares: words, documents, queries and BM25.

A searchable record kind says what a record reads as (a :class:`Document`: title, keywords,
body) or that it is not to be found now (``None``). Text is cut into words once, here, the
same way for every store: case folded, accents removed, split at anything that is not a
letter or digit. The stores index those words (SQLite FTS5, PostgreSQL ``tsvector``, the
in-memory :class:`Bm25Index`), so a word means the same in all three.

A query is the words of a user's text, any of which may match (``OR``); a word of three
characters or more also matches the words it starts (``connect`` finds ``connection``). A
query is built from its words only, never spliced from the user's text, so quotes, ``*``,
``NEAR``, ``:`` and the like are separators, not syntax. Documents matching more of the
rarer words, in the title more than in the keywords, and there more than in the body, rank
first: SQLite and :class:`Bm25Index` rank by the same BM25 formula (FTS5's ``bm25()``, with
:data:`WEIGHTS`), PostgreSQL by ``ts_rank`` with the same column weights.

>>> words("VPN-Client: can't connect (error 0x80070005), Ünïcode façade")
('vpn', 'client', 'can', 't', 'connect', 'error', '0x80070005', 'unicode', 'facade')
>>> query_terms('"vpn" OR * NEAR(  connect') == ('vpn', 'or', 'near', 'connect')
True
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left
from collections import Counter
from typing import TYPE_CHECKING, Final

import attrs

from itsmcore.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

__all__ = [
    "MAX_QUERY",
    "MAX_TERMS",
    "MAX_WORD",
    "PREFIX_FROM",
    "WEIGHTS",
    "Bm25Index",
    "Document",
    "query_terms",
    "words",
]

MAX_QUERY: Final = 100_000
"""The longest query text, in characters (as long as the longest text a record holds)."""
MAX_TERMS: Final = 64
"""A query keeps its first this many distinct words (an incident's description can be long)."""
MAX_WORD: Final = 100
"""Longer runs of letters and digits are not words (encoded blobs): neither indexed nor sought."""
PREFIX_FROM: Final = 3
"""A query word of at least this many characters also matches the words it starts."""
WEIGHTS: Final = (4.0, 2.0, 1.0)
"""How much a match counts in the title, the keywords and the body."""

_K1: Final = 1.2  # FTS5's bm25() constants
_B: Final = 0.75
_MIN_IDF: Final = 1e-6  # FTS5 floors the weight of a word most documents have at this
_WORD: Final = re.compile(r"[^\W_]+")  # runs of letters and digits


def words(text: str) -> tuple[str, ...]:
    """The words of ``text`` as every store indexes them: folded, unaccented, in order."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    else:
        text = text.lower()
    return tuple(w for w in _WORD.findall(text) if len(w) <= MAX_WORD)


def query_terms(text: object) -> tuple[str, ...]:
    """The distinct words a query looks for, first ones first, at most :data:`MAX_TERMS`.

    Raises:
        ValidationError: ``text`` is not a string, or longer than :data:`MAX_QUERY`.
    """
    if not isinstance(text, str):
        raise ValidationError(f"search text must be a string, got {type(text).__name__}")
    if len(text) > MAX_QUERY:
        raise ValidationError(
            f"search text is {len(text):,} characters long; at most {MAX_QUERY:,}"
        )
    return tuple(dict.fromkeys(words(text)))[:MAX_TERMS]


@attrs.frozen
class Document:
    """What a record reads as to search: its title, its keywords and its body."""

    title: str
    keywords: str
    body: str

    def columns(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The words of the title, the keywords and the body, as the stores index them."""
        return words(self.title), words(self.keywords), words(self.body)


@attrs.frozen
class _Entry:
    weighted: dict[str, float]
    """Per word, its count in each column times the column's weight, summed: what FTS5
    adds up per match. The weights are whole numbers, so the sums are exact."""
    length: int


class Bm25Index:
    """Documents by key, ranked by BM25 exactly as SQLite's FTS5 ``bm25()`` ranks them.

    Not thread-safe: the in-memory store uses it under its lock.

    >>> index = Bm25Index()
    >>> index.put("KB1", Document("VPN cannot connect", "vpn remote", "Restart the client."))
    >>> index.put("KB2", Document("Printer jams", "printer", "Open tray 2."))
    >>> index.search(query_terms("vpn connection"), limit=5)
    ['KB1']
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._postings: dict[str, set[Hashable]] = {}
        self._vocabulary: list[str] = []  # sorted, for prefix look-ups
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def put(self, key: Hashable, document: Document) -> None:
        """Index ``document`` under ``key``, replacing what was indexed there."""
        self.remove(key)
        columns = document.columns()
        weighted: dict[str, float] = {}
        for weight, column in zip(WEIGHTS, columns, strict=True):
            for word, count in Counter(column).items():
                weighted[word] = weighted.get(word, 0.0) + weight * count
        entry = _Entry(weighted, sum(map(len, columns)))
        self._entries[key] = entry
        self._tokens += entry.length
        for word in entry.weighted:
            holders = self._postings.get(word)
            if holders is None:
                holders = self._postings[word] = set()
                self._vocabulary.insert(bisect_left(self._vocabulary, word), word)
            holders.add(key)

    def remove(self, key: Hashable) -> None:
        """Forget what is indexed under ``key`` (nothing if nothing is)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._tokens -= entry.length
        for word in entry.weighted:
            holders = self._postings[word]
            holders.discard(key)
            if not holders:
                del self._postings[word]
                del self._vocabulary[bisect_left(self._vocabulary, word)]

    def _matching(self, term: str) -> list[str]:
        """The indexed words ``term`` matches: itself, and those it starts if long enough."""
        if len(term) < PREFIX_FROM:
            return [term] if term in self._postings else []
        vocabulary = self._vocabulary
        out = []
        for k in range(bisect_left(vocabulary, term), len(vocabulary)):
            if not vocabulary[k].startswith(term):
                break
            out.append(vocabulary[k])
        return out

    def scores(self, terms: Iterable[str]) -> dict[Hashable, float]:
        """Every document matching any of ``terms``, with its BM25 score (higher is better)."""
        rows = len(self._entries)
        if not rows:
            return {}
        average = self._tokens / rows
        scores: dict[Hashable, float] = {}
        for term in dict.fromkeys(terms):
            matched = self._matching(term)
            holders: set[Hashable] = set().union(*(self._postings[w] for w in matched))
            if not holders:
                continue
            hits = len(holders)
            idf = math.log((rows - hits + 0.5) / (hits + 0.5))
            if idf <= 0.0:
                idf = _MIN_IDF
            entries = self._entries
            for key in holders:
                entry = entries[key]
                weighted = entry.weighted
                freq = sum(weighted.get(w, 0.0) for w in matched)
                # FTS5's expression, operation for operation, so the two agree to the bit.
                norm = _K1 * (1 - _B + _B * entry.length / average)
                scores[key] = scores.get(key, 0.0) + idf * ((freq * (_K1 + 1.0)) / (freq + norm))
        return scores

    def search(
        self,
        terms: Iterable[str],
        *,
        limit: int,
        accept: Callable[[Hashable], bool] | None = None,
        order: Callable[[Hashable], str] = str,
    ) -> list[Hashable]:
        """The keys of the best ``limit`` documents for ``terms`` that ``accept`` lets through.

        Best first; equal scores in the order of ``order(key)`` (the record id).
        """
        found = [
            (score, key)
            for key, score in self.scores(terms).items()
            if accept is None or accept(key)
        ]
        found.sort(key=lambda pair: (-pair[0], order(pair[1])))
        return [key for _, key in found[:limit]]
