"""Knowledge search on every store: published only, ranked, in step with commits, safe input."""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itsmcore import ConcurrencyError, Incident, ValidationError
from itsmcore.knowledge import KnowledgeArticle, publish_revision, suggest
from itsmcore.search import MAX_QUERY, PREFIX_FROM, Bm25Index, Document, query_terms, words
from itsmcore.storage import InMemoryStore, SQLiteStore
from test_storage import InMemory, Postgres, SQLite

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
M = timedelta(minutes=1)


def article(
    record_id: str,
    title: str,
    body: str,
    keywords: Sequence[str] = (),
    *,
    publish: bool = True,
    **fields: Any,
) -> KnowledgeArticle:
    a = KnowledgeArticle.open(
        id=record_id, title=title, body=body, keywords=keywords, at=T0, by="amy", **fields
    )
    if publish:
        a = a.submit(at=T0 + M, by="amy").publish(at=T0 + 2 * M, by="bob")
    return a


CORPUS = [
    article("KB1", "VPN client cannot connect", "Restart the VPN client and renew the "
            "certificate.", ["vpn", "remote access"], service="vpn", category="network"),
    article("KB2", "Printer jams on tray 2", "Open tray 2 and remove the paper. Printer "
            "drivers need no change.", ["printer"], service="printing", category="hardware"),
    article("KB3", "Outlook cannot reach Exchange", "Check the connection to the mail server, "
            "then restart Outlook.", ["email", "outlook"], service="email"),
    article("KB4", "Password reset", "Use the self-service portal to reset a password; the "
            "VPN uses the same password.", ["password", "account"]),
    article("KB5", "VPN rollout plan (draft)", "Draft text about the VPN and certificates.",
            ["vpn"], publish=False),
]  # fmt: skip
PUBLISHED_IDS = {a.id for a in CORPUS if a.state == "published"}


def ids(records: Sequence[Any]) -> list[str]:
    return [r.id for r in records]


def matches(document: Document, terms: Sequence[str]) -> bool:
    """The oracle of what any store must find: a word equal to a term, or started by it."""
    found = set().union(*document.columns())
    return any(
        term in found or (len(term) >= PREFIX_FROM and any(w.startswith(term) for w in found))
        for term in terms
    )


HOSTILE = [
    '"',
    "'",
    '"vpn',
    'vpn"',
    "*",
    "vpn*",
    "NEAR(vpn client)",
    "vpn AND",
    "OR",
    "NOT vpn",
    "-vpn",
    "title:vpn",
    "{title keywords}: vpn",
    "^vpn",
    "vpn + client",
    "(",
    ")",
    "vpn)",
    "\x00",
    "vpn\x00client",
    "\ud800",
    "vpn\udfff",
    "\\",
    "\\'",
    "'; DROP TABLE itsm_records; --",
    "a:* & !b | (c <-> d)",
    "!!",
    "<->",
    "vpn:*",
    "%",
    "_",
    "vpn_client",
    "\U0001f600 vpn",
    "ǅ",
    "²",
    "ﬁ",
    "İstanbul",
    "\u200b",
    "\t\n\r",
    "",
    "   ",
    "x" * MAX_QUERY,
    "vpn " * 20_000,
    " ".join(f"w{i}" for i in range(5000)),
    "a" * 101,
    "é" * 300,
    "ß" * 70,
]
"""Query text users may type: search syntax of either database, NUL, lone surrogates, huge."""


class SearchContract:
    """The search every store serves; subclasses say which store."""

    def make_store(self, tmp_path: Path, kinds: Any = None) -> Any:
        raise NotImplementedError

    def fresh(self, tmp_path: Path) -> Any:
        place = tmp_path / uuid.uuid4().hex
        place.mkdir()
        return self.make_store(place)

    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        store = self.fresh(tmp_path)
        with store.unit_of_work() as uow:
            for a in CORPUS:
                uow.knowledge.add(a)
            uow.commit()
        return store

    def search(self, store: Any, text: str, **options: Any) -> list[str]:
        with store.unit_of_work() as uow:
            return ids(uow.knowledge.search(text, **options))

    def test_only_published_articles_are_found(self, store: Any) -> None:
        assert set(self.search(store, "vpn")) == {"KB1", "KB4"}  # not the draft KB5
        assert self.search(store, "rollout") == []

    def test_the_best_match_comes_first(self, store: Any) -> None:
        assert self.search(store, "vpn cannot connect")[0] == "KB1"
        assert self.search(store, "printer")[0] == "KB2"
        assert self.search(store, "outlook exchange mail")[0] == "KB3"
        # A title match outranks a mention in the body.
        assert self.search(store, "password vpn")[0] == "KB4"
        assert self.search(store, "vpn")[0] == "KB1"

    def test_words_match_the_words_they_start_and_case_and_accents_do_not_matter(
        self, store: Any
    ) -> None:
        assert self.search(store, "connection") == ["KB3"]  # only KB3 says "connection"
        assert set(self.search(store, "connect")) == {"KB1", "KB3"}  # connect, connection
        assert self.search(store, "co") == []  # short words match whole words only
        assert self.search(store, "PRÍNTER") == ["KB2"]
        assert self.search(store, "Outlook's") == ["KB3"]

    def test_limit_keeps_the_best(self, store: Any) -> None:
        everything = self.search(store, "vpn printer outlook password", limit=10)
        assert set(everything) == PUBLISHED_IDS
        assert self.search(store, "vpn printer outlook password", limit=2) == everything[:2]

    def test_scope_keeps_articles_for_that_service_or_for_none(self, store: Any) -> None:
        # KB4 is for no particular service: it applies to every service.
        assert set(self.search(store, "vpn", service="vpn")) == {"KB1", "KB4"}
        assert self.search(store, "vpn", service="email") == ["KB4"]
        assert self.search(store, "vpn", category="hardware") == ["KB4"]
        assert self.search(store, "printer", category="hardware", service="printing") == ["KB2"]

    def test_retired_articles_are_not_found(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            kb1 = uow.knowledge.get("KB1")
            uow.knowledge.save(kb1.retire(reason="obsolete", at=T0 + 9 * M, by="bob"))
            uow.commit()
        assert set(self.search(store, "vpn cannot connect")) == {"KB3", "KB4"}  # not KB1
        assert self.search(store, "certificate") == []

    def test_search_sees_committed_work_only(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            draft = uow.knowledge.get("KB5")
            review = draft.submit(at=T0 + 9 * M, by="amy")
            uow.knowledge.save(review.publish(at=T0 + 10 * M, by="bob"))
            assert "KB5" not in ids(uow.knowledge.search("rollout"))  # staged, not committed
            assert self.search(store, "rollout") == []  # nor seen by anyone else
            # left without commit: rolled back
        assert self.search(store, "rollout") == []
        with store.unit_of_work() as uow:
            draft = uow.knowledge.get("KB5")
            review = draft.submit(at=T0 + 9 * M, by="amy")
            uow.knowledge.save(review.publish(at=T0 + 10 * M, by="bob"))
            uow.rollback()
            uow.commit()
        assert self.search(store, "rollout") == []
        with store.unit_of_work() as uow:
            draft = uow.knowledge.get("KB5")
            review = draft.submit(at=T0 + 9 * M, by="amy")
            uow.knowledge.save(review.publish(at=T0 + 10 * M, by="bob"))
            uow.commit()
            assert ids(uow.knowledge.search("rollout")) == ["KB5"]
        assert self.search(store, "rollout") == ["KB5"]

    def test_a_failed_commit_changes_nothing_search_sees(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            kb5 = uow.knowledge.get("KB5")
            uow.knowledge.save(kb5.submit(at=T0 + 9 * M, by="amy"))
            uow.commit()
        with store.unit_of_work() as first, store.unit_of_work() as second:
            mine, theirs = first.knowledge.get("KB5"), second.knowledge.get("KB5")
            second.knowledge.save(theirs.send_back(reason="no", at=T0 + 10 * M, by="bob"))
            second.commit()
            first.knowledge.save(mine.publish(at=T0 + 10 * M, by="bob"))
            # Another article in the same commit: nothing of it may land either.
            kb1 = first.knowledge.get("KB1")
            first.knowledge.save(kb1.retire(reason="old", at=T0 + 10 * M, by="bob"))
            with pytest.raises(ConcurrencyError):
                first.commit()
        assert self.search(store, "rollout") == []
        assert self.search(store, "vpn cannot connect")[0] == "KB1"

    def test_a_revision_replaces_its_predecessor_in_one_commit(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            kb1 = uow.knowledge.get("KB1")
            revision = kb1.revise(
                id=uow.knowledge.new_id(), body="Reinstall the VPN client from the portal.",
                at=T0 + 9 * M, by="kim",
            )  # fmt: skip
            uow.knowledge.add(revision.submit(at=T0 + 10 * M, by="kim"))
            uow.commit()
        assert self.search(store, "vpn cannot connect")[0] == "KB1"
        assert self.search(store, "reinstall") == []  # the revision is not published yet
        with store.unit_of_work() as uow:
            revision = uow.knowledge.get(revision.id)
            new, old = publish_revision(
                revision, uow.knowledge.get("KB1"), at=T0 + 11 * M, by="bob"
            )
            uow.knowledge.save(new)
            uow.knowledge.save(old)
            uow.commit()
        assert self.search(store, "vpn cannot connect")[0] == revision.id
        assert "KB1" not in self.search(store, "vpn cannot connect")
        assert self.search(store, "reinstall") == [revision.id]
        with store.unit_of_work() as uow:
            assert ids(uow.knowledge.find(replaces="KB1")) == [revision.id]
            assert uow.knowledge.get(revision.id).version_number == 2

    def test_suggestions_for_an_incident_being_logged(self, store: Any) -> None:
        incident = Incident.open(
            id="INC1", title="Cannot connect to VPN from home",
            description="The client says the certificate expired.", caller="mia",
            impact=2, urgency=2, at=T0, by="desk", service="vpn",
        )  # fmt: skip
        with store.unit_of_work() as uow:
            assert ids(suggest(uow.knowledge, incident))[0] == "KB1"
            assert ids(suggest(uow.knowledge, incident, limit=1)) == ["KB1"]
            assert ids(suggest(uow.knowledge, "printer paper")) == ["KB2"]
            # The incident's service scopes the suggestions: the mail article is not for VPN.
            assert "KB3" not in ids(suggest(uow.knowledge, incident, limit=10))
            assert "KB3" in ids(suggest(uow.knowledge, "connection", limit=10))

    def test_hostile_queries_are_only_words(self, store: Any) -> None:
        for query in HOSTILE:
            found = self.search(store, query)
            assert set(found) <= PUBLISHED_IDS, query
            terms = query_terms(query)
            expected = {a.id for a in CORPUS if a.state == "published" and matches(
                a.search_document(), terms)}  # fmt: skip
            assert set(found) == expected, query
            if "vpn" in terms:
                assert "KB1" in found, query

    def test_any_text_is_a_safe_query(self, store: Any) -> None:
        vocabulary = ["vpn", "connect", "con", "print", "outlook", "password", "tray", "2"]
        syntax = ['"', "'", "*", "(", ")", ":", "&", "|", "!", "<->", "NEAR", "AND", "\x00",
                  "\ud800", "^", "-", "+", "\\"]  # fmt: skip
        mixed = st.lists(st.sampled_from(vocabulary + syntax), max_size=8).map("".join)
        spaced = st.lists(st.sampled_from(vocabulary + syntax), max_size=8).map(" ".join)

        @settings(max_examples=40)
        @given(query=st.one_of(mixed, spaced, st.text(max_size=40)))
        def check(query: str) -> None:
            found = self.search(store, query, limit=10)
            terms = query_terms(query)
            expected = {a.id for a in CORPUS if a.state == "published" and matches(
                a.search_document(), terms)}  # fmt: skip
            if query.isascii():  # beyond ASCII, engines may split rarer letters otherwise
                assert set(found) == expected, (query, terms)
            else:
                assert set(found) <= PUBLISHED_IDS

        check()

    @pytest.mark.parametrize(
        ("call", "message"),
        [
            (lambda r: r.search("x" * (MAX_QUERY + 1)), "at most 100,000"),
            (lambda r: r.search(None), "must be a string"),
            (lambda r: r.search(b"vpn"), "must be a string"),
            (lambda r: r.search("vpn", limit=0), "limit must be"),
            (lambda r: r.search("vpn", limit=True), "limit must be"),
            (lambda r: r.search("vpn", limit=10**6), "limit must be"),
            (lambda r: r.search("vpn", limit="5"), "limit must be"),
            (lambda r: r.search("vpn", body="x"), "cannot scope a search by 'body'"),
            (lambda r: r.search("vpn", opened_at="x"), "cannot scope"),
            (lambda r: r.search("vpn", service="a\x00b"), "NUL"),
            (lambda r: r.search("vpn", service="\ud800"), "not valid Unicode"),
            (lambda r: r.search("vpn", service="x" * 300), "at most 255"),
            (lambda r: r.search("vpn", service=7), "non-empty string"),
            (lambda r: r.search("vpn", state="nonsense"), "no knowledge workflow has a state"),
        ],
    )
    def test_bad_search_arguments_are_validation_errors(
        self, store: Any, call: Any, message: str
    ) -> None:
        with store.unit_of_work() as uow, pytest.raises(ValidationError, match=message):
            call(uow.knowledge)

    def test_kinds_that_are_not_searchable_say_so(self, store: Any) -> None:
        with store.unit_of_work() as uow, pytest.raises(ValidationError, match="not searchable"):
            uow.incidents.search("vpn")


class TestSearchInMemory(InMemory, SearchContract):
    pass


class _Reopened:
    """A database made without the knowledge kind, opened again with it."""

    def make_store(self, tmp_path: Path, kinds: Any = None) -> Any:
        raise NotImplementedError

    def test_a_store_made_without_knowledge_gains_search_when_it_serves_it(
        self, tmp_path: Path
    ) -> None:
        from itsmcore.repository import RecordKind  # noqa: PLC0415

        place = tmp_path / "later"
        place.mkdir()
        early = self.make_store(place, [RecordKind("incidents", Incident)])
        with early.unit_of_work() as uow:
            uow.incidents.add(
                Incident.open(
                    id="INC1", title="VPN down", caller="mia", impact=1, urgency=1, at=T0, by="desk"
                )
            )
            uow.commit()
        early.close()
        # The same database, now serving every kind.
        store = type(early)(early.path if isinstance(early, SQLiteStore) else early.dsn)
        with store.unit_of_work() as uow:
            uow.knowledge.add(CORPUS[0])
            uow.commit()
        with store.unit_of_work() as uow:
            assert ids(uow.knowledge.search("vpn")) == ["KB1"]
            assert uow.incidents.get("INC1").title == "VPN down"


class TestSearchInSQLite(SQLite, SearchContract, _Reopened):
    pass


class TestSearchInPostgres(Postgres, SearchContract, _Reopened):
    pass


# --------------------------------------------------------------------------- BM25 agreement

VOCABULARY = ["vpn", "client", "connect", "connection", "connected", "mail", "outlook",
              "printer", "tray", "restart", "net", "network", "ab", "abc", "abcd"]  # fmt: skip
QUERY_WORDS = [*VOCABULARY, "con", "conn", "net", "a", "ab", "prin", "xyz"]
phrase = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=12).map(" ".join)
corpora = st.lists(
    st.tuples(phrase, st.lists(st.sampled_from(VOCABULARY), max_size=3), phrase),
    min_size=1,
    max_size=8,
)
queries = st.lists(st.sampled_from(QUERY_WORDS), min_size=1, max_size=4).map(" ".join)


def _published(corpus: list[tuple[str, list[str], str]]) -> list[KnowledgeArticle]:
    return [article(f"KB{k}", t, b, kw) for k, (t, kw, b) in enumerate(corpus, start=1)]


@settings(max_examples=40)
@given(corpus=corpora, query=queries)
def test_the_memory_ranker_scores_as_sqlite_fts5_does(
    tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[str, list[str], str]], query: str
) -> None:
    """Bm25Index is FTS5's bm25() with the same weights, to the last bits."""
    articles = _published(corpus)
    store = SQLiteStore(tmp_path_factory.mktemp("bm25") / "kb.sqlite3")
    with store.unit_of_work() as uow:
        for a in articles:
            uow.knowledge.add(a)
        uow.commit()
    index = Bm25Index()
    for a in articles:
        document = a.search_document()
        assert document is not None
        index.put(a.id, document)
    terms = query_terms(query)
    mine = index.scores(terms)
    from itsmcore.storage._search import TextQuery  # noqa: PLC0415

    with sqlite3.connect(store.path) as conn:
        theirs = dict(
            conn.execute(
                "SELECT i.id, -bm25(itsm_search, 4.0, 2.0, 1.0) FROM itsm_search "
                "JOIN itsm_search_ids AS i ON i.docid = itsm_search.rowid "
                "WHERE itsm_search MATCH ?",
                (TextQuery(terms, 10).fts5(),),
            ).fetchall()
        )
    store.close()
    assert set(mine) == set(theirs)
    for key, score in mine.items():
        assert math.isclose(score, theirs[key], rel_tol=1e-12, abs_tol=1e-15), (key, query)


@settings(max_examples=30)
@given(corpus=corpora, query=queries)
def test_memory_and_sqlite_stores_agree_on_a_clear_best_article(
    tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[str, list[str], str]], query: str
) -> None:
    articles = _published(corpus)
    stores = [InMemoryStore(), SQLiteStore(tmp_path_factory.mktemp("agree") / "kb.sqlite3")]
    found = []
    for store in stores:
        with store.unit_of_work() as uow:
            for a in articles:
                uow.knowledge.add(a)
            uow.commit()
        with store.unit_of_work() as uow:
            found.append(ids(uow.knowledge.search(query, limit=len(articles))))
    memory, sqlite = found
    assert set(memory) == set(sqlite)  # the same articles match
    scores = sorted(stores[0]._search.scores(query_terms(query)).values(), reverse=True)
    if len(scores) == 1 or (len(scores) > 1 and scores[0] - scores[1] > 1e-9 * scores[0]):
        assert memory[0] == sqlite[0]
    assert memory == sqlite  # the whole order, ties broken by id alike
    stores[1].close()


def test_the_same_words_are_indexed_whatever_the_spelling() -> None:
    assert words("Ünïcode FAÇADE naïve") == words("unicode facade naive")
    assert words("VPN-client_v2") == ("vpn", "client", "v2")
    assert words("x" * 101 + " ok") == ("ok",)
    assert query_terms("vpn VPN Vpn client") == ("vpn", "client")
    assert len(query_terms(" ".join(f"w{i}" for i in range(200)))) == 64
