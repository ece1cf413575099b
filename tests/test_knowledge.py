"""Knowledge management: the article lifecycle, versions, and segregation of review."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from itsmcore import (
    Incident,
    IncidentState,
    InvalidTransitionError,
    SegregationOfDutiesError,
    ValidationError,
)
from itsmcore.knowledge import (
    KNOWLEDGE_WORKFLOW,
    ArticleState,
    Deflections,
    KnowledgeArticle,
    count_deflections,
    publish_revision,
    resolve_with,
    resolved_with,
)
from itsmcore.repository import RecordKind
from itsmcore.testing import RecordKindContract, _ticket, histories
from test_storage import InMemory, Postgres, SQLite

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
M = timedelta(minutes=1)
DRAFT, REVIEW = ArticleState.DRAFT, ArticleState.REVIEW
PUBLISHED, RETIRED = ArticleState.PUBLISHED, ArticleState.RETIRED
AUTHOR, REVIEWER = "amy", "bob"


def drafted(**fields: Any) -> KnowledgeArticle:
    spec = {
        "id": "KB1",
        "title": "VPN client cannot connect",
        "body": "Restart the VPN client, then check the certificate has not expired.",
        "keywords": ["vpn", "remote access"],
        "service": "vpn",
        "at": T0,
        "by": AUTHOR,
    }
    return KnowledgeArticle.open(**(spec | fields))


def later(a: KnowledgeArticle) -> datetime:
    return a.updated_at + M


def in_review(a: KnowledgeArticle) -> KnowledgeArticle:
    return a.submit(reviewer=REVIEWER, at=later(a), by=AUTHOR)


def published(a: KnowledgeArticle) -> KnowledgeArticle:
    a = in_review(a)
    return a.publish(at=later(a), by=REVIEWER)


REACH: dict[ArticleState, Callable[[KnowledgeArticle], KnowledgeArticle]] = {
    DRAFT: lambda a: a,
    REVIEW: in_review,
    PUBLISHED: published,
    RETIRED: lambda a: published(a).retire(reason="obsolete", at=later(a) + 5 * M, by=REVIEWER),
}
VERBS: dict[str, Callable[[KnowledgeArticle], KnowledgeArticle]] = {
    "submit": lambda a: a.submit(at=later(a), by=AUTHOR),
    "send_back": lambda a: a.send_back(reason="add screenshots", at=later(a), by=REVIEWER),
    "publish": lambda a: a.publish(at=later(a), by=REVIEWER),
    "retire": lambda a: a.retire(reason="obsolete", at=later(a), by=REVIEWER),
    "update": lambda a: a.update(body="Reinstall the client.", at=later(a), by=AUTHOR),
    "set_keywords": lambda a: a.set_keywords(keywords=["vpn"], at=later(a), by=AUTHOR),
    "comment": lambda a: a.comment(text="looks good", at=later(a), by=REVIEWER),
    "link": lambda a: a.link(kind="problem", target="PRB1", at=later(a), by=AUTHOR),
}
# The documented lifecycle as a table: state -> verb -> state after it (None: refused).
EXPECTED: dict[ArticleState, dict[str, ArticleState | None]] = {
    DRAFT: {"submit": REVIEW, "send_back": None, "publish": None, "retire": RETIRED,
            "update": DRAFT, "set_keywords": DRAFT, "comment": DRAFT, "link": DRAFT},
    REVIEW: {"submit": None, "send_back": DRAFT, "publish": PUBLISHED, "retire": RETIRED,
             "update": None, "set_keywords": None, "comment": REVIEW, "link": REVIEW},
    PUBLISHED: {"submit": None, "send_back": None, "publish": None, "retire": RETIRED,
                "update": None, "set_keywords": None, "comment": PUBLISHED, "link": PUBLISHED},
    RETIRED: dict.fromkeys(VERBS),
}  # fmt: skip


@pytest.mark.parametrize("state", list(ArticleState))
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_the_lifecycle_table(state: ArticleState, verb: str) -> None:
    article = REACH[state](drafted())
    assert article.state is state
    expected = EXPECTED[state][verb]
    if expected is None:
        with pytest.raises(InvalidTransitionError):
            VERBS[verb](article)
    else:
        assert VERBS[verb](article).state is expected


def test_the_author_cannot_review_or_approve_their_own_article() -> None:
    draft = drafted()
    with pytest.raises(SegregationOfDutiesError, match="amy wrote KB1"):
        draft.submit(reviewer=AUTHOR, at=later(draft), by=AUTHOR)
    review = draft.submit(at=later(draft), by=AUTHOR)
    with pytest.raises(SegregationOfDutiesError):
        review.publish(at=later(review), by=AUTHOR)
    # A refused approval is still a ValidationError to callers that catch those.
    with pytest.raises(ValidationError):
        review.publish(at=later(review), by=AUTHOR)
    done = review.publish(at=later(review), by="kim")
    assert (done.state, done.reviewer, done.published_at) == (PUBLISHED, "kim", later(review))


def test_a_named_author_is_the_one_segregation_checks() -> None:
    draft = drafted(by="desk", author="amy")
    review = draft.submit(at=later(draft), by="desk")
    with pytest.raises(SegregationOfDutiesError):
        review.publish(at=later(review), by="amy")
    assert review.publish(at=later(review), by="desk").state is PUBLISHED


def test_a_review_sends_it_back_with_a_reason_cleared_on_the_next_submit() -> None:
    review = in_review(drafted())
    back = review.send_back(reason="add screenshots", at=later(review), by=REVIEWER)
    assert (back.state, back.feedback) == (DRAFT, "add screenshots")
    back = back.update(body="Restart the client (screenshot 1).", at=later(back), by=AUTHOR)
    again = back.submit(at=later(back), by=AUTHOR)
    assert (again.state, again.feedback, again.reviewer) == (REVIEW, None, None)


def test_only_a_draft_is_edited_and_published_text_changes_by_revision() -> None:
    live = published(drafted())
    with pytest.raises(InvalidTransitionError):
        live.update(title="New title", at=later(live), by=AUTHOR)
    revision = live.revise(id="KB2", body="Use the new client.", at=later(live), by="kim")
    assert revision.state is DRAFT
    assert (revision.version_number, revision.replaces, revision.author) == (2, "KB1", "kim")
    assert (revision.title, revision.keywords, revision.service) == (
        live.title, live.keywords, live.service,
    )  # fmt: skip
    assert revision.body == "Use the new client."
    review = revision.submit(at=later(revision), by="kim")
    new, old = publish_revision(review, live, at=later(review), by=AUTHOR)
    assert (new.state, new.reviewer) == (PUBLISHED, AUTHOR)
    assert (old.state, old.superseded_by) == (RETIRED, "KB2")
    assert old.search_document() is None
    assert new.search_document() is not None
    third = new.revise(id="KB3", at=later(new), by=AUTHOR)
    assert (third.version_number, third.replaces) == (3, "KB2")


def test_revisions_are_refused_where_they_make_no_sense() -> None:
    draft = drafted()
    with pytest.raises(ValidationError, match="only a published article is revised"):
        draft.revise(id="KB2", at=later(draft), by=AUTHOR)
    live = published(draft)
    with pytest.raises(ValidationError, match="id of its own"):
        live.revise(id="KB1", at=later(live), by=AUTHOR)
    with pytest.raises(ValidationError, match="published after"):
        live.revise(id="KB2", at=T0, by=AUTHOR)
    other = published(drafted(id="KB9"))
    revision = in_review(live.revise(id="KB2", at=later(live), by="kim"))
    with pytest.raises(ValidationError, match="replaces KB1, not KB9"):
        publish_revision(revision, other, at=later(revision), by=AUTHOR)
    with pytest.raises(SegregationOfDutiesError):
        publish_revision(revision, live, at=later(revision), by="kim")


def test_two_revisions_of_one_version_cannot_both_be_published() -> None:
    live = published(drafted())
    first = in_review(live.revise(id="KB2", at=later(live), by="kim"))
    second = in_review(live.revise(id="KB3", at=later(live), by="kim"))
    new, old = publish_revision(first, live, at=later(second), by=REVIEWER)
    with pytest.raises(ValidationError, match="superseded by KB2 already"):
        publish_revision(second, old, at=later(new), by=REVIEWER)


def test_a_revision_whose_predecessor_is_already_retired_still_publishes() -> None:
    live = published(drafted())
    revision = in_review(live.revise(id="KB2", at=later(live), by="kim"))
    gone = live.retire(reason="wrong", at=later(live), by=REVIEWER)
    new, old = publish_revision(revision, gone, at=later(revision) + M, by=REVIEWER)
    assert new.state is PUBLISHED
    assert old is gone


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"body": "   "}, "body must be a non-empty string"),
        ({"title": ""}, "title must be a non-empty string"),
        ({"keywords": "vpn"}, "keywords are a collection"),
        ({"keywords": ["vpn", ""]}, "keyword must be a non-empty string"),
        ({"keywords": ["a\x00b"]}, "NUL"),
        ({"service": "x" * 300}, "at most 255"),
    ],
)
def test_bad_article_input_is_a_validation_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        drafted(**fields)


def test_keywords_keep_their_order_without_repeats() -> None:
    assert drafted(keywords=["vpn", "remote", "vpn"]).keywords == ("vpn", "remote")


def test_retiring_names_a_successor_other_than_itself() -> None:
    live = published(drafted())
    with pytest.raises(ValidationError, match="cannot supersede itself"):
        live.retire(reason="x", superseded_by="KB1", at=later(live), by=REVIEWER)


def test_the_workflow_tags_say_what_is_work_and_what_is_done() -> None:
    assert KNOWLEDGE_WORKFLOW.tagged("active") == {DRAFT, REVIEW}
    assert KNOWLEDGE_WORKFLOW.tagged("met") == {PUBLISHED, RETIRED}
    assert drafted().is_active
    assert not published(drafted()).is_active


# --------------------------------------------------------------------------- state machine

ACTORS = (AUTHOR, REVIEWER, "kim")


class ArticleMachine(RuleBasedStateMachine):
    """Random verbs by random people: allowed moves succeed, refused ones change nothing."""

    article: KnowledgeArticle
    numbers: int

    @initialize()
    def start(self) -> None:
        self.article = drafted()
        self.numbers = 1

    def attempt(self, verb: str, change: Callable[[KnowledgeArticle], KnowledgeArticle],
                expected: ArticleState | None, *, segregated: bool = False) -> None:  # fmt: skip
        before = self.article
        allowed = expected is not None and not segregated
        try:
            after = change(before)
        except SegregationOfDutiesError:
            assert segregated, verb
            assert expected is not None  # the lifecycle is checked first
            assert self.article == before
            return
        except InvalidTransitionError as exc:
            assert expected is None, verb
            assert exc.state == before.state  # noqa: PT017 - a rule of the machine, not one call
            assert self.article == before
            return
        assert allowed, verb
        assert after.state is expected
        # A save that changes nothing records nothing (update's rule for every practice).
        unchanged = verb == "update" and after.body == before.body
        assert after.version == before.version + (0 if unchanged else 1)
        self.article = after

    def at(self) -> datetime:
        return later(self.article)

    @rule(reviewer=st.sampled_from((None, *ACTORS)), by=st.sampled_from(ACTORS))
    def submit(self, reviewer: str | None, by: str) -> None:
        self.attempt(
            "submit",
            lambda a: a.submit(reviewer=reviewer, at=self.at(), by=by),
            EXPECTED[self.article.state]["submit"],
            segregated=reviewer == self.article.author,
        )

    @rule(by=st.sampled_from(ACTORS))
    def publish(self, by: str) -> None:
        self.attempt(
            "publish",
            lambda a: a.publish(at=self.at(), by=by),
            EXPECTED[self.article.state]["publish"],
            segregated=by == self.article.author,
        )

    @rule(verb=st.sampled_from(("send_back", "retire", "update", "set_keywords", "comment",
                                "link")))  # fmt: skip
    def act(self, verb: str) -> None:
        self.attempt(verb, VERBS[verb], EXPECTED[self.article.state][verb])

    @rule(by=st.sampled_from(ACTORS), reviewer=st.sampled_from(ACTORS))
    def revise(self, by: str, reviewer: str) -> None:
        current = self.article
        self.numbers += 1
        new_id = f"KB{self.numbers}"
        if current.state is not PUBLISHED:
            with pytest.raises(ValidationError):
                current.revise(id=new_id, at=self.at(), by=by)
            return
        draft = current.revise(id=new_id, at=self.at(), by=by)
        review = draft.submit(at=later(draft), by=by)
        if reviewer == by:
            with pytest.raises(SegregationOfDutiesError):
                publish_revision(review, current, at=later(review), by=reviewer)
            return
        new, old = publish_revision(review, current, at=later(review), by=reviewer)
        assert (old.state, old.superseded_by, old.version) == (RETIRED, new_id, current.version + 1)
        assert new.version_number == current.version_number + 1
        assert new.replaces == current.id
        self.article = new

    @rule()
    def backwards_in_time_is_refused(self) -> None:
        before = self.article
        with pytest.raises(ValidationError):
            before.comment(text="late", at=before.updated_at - M, by="x")
        assert self.article == before

    @invariant()
    def replay_rebuilds_it(self) -> None:
        assert KnowledgeArticle.replay(self.article.history) == self.article
        assert self.article.version == len(self.article.history)

    @invariant()
    def search_reads_it_exactly_while_published(self) -> None:
        a = self.article
        assert (a.search_document() is not None) == (a.state is PUBLISHED)

    @invariant()
    def nobody_approved_their_own_article(self) -> None:
        a = self.article
        if a.state is PUBLISHED or a.published_at is not None:
            assert a.reviewer != a.author
        if a.state is REVIEW:
            assert a.feedback is None


TestArticleMachine = ArticleMachine.TestCase


# --------------------------------------------------------------------------- stores

KNOWLEDGE: RecordKind[KnowledgeArticle] = RecordKind("knowledge", KnowledgeArticle)
LINKS: dict[str, Callable[[Callable[[Any], Any]], dict[str, Any]]] = {
    "set_keywords": lambda pick: {"keywords": [pick(["vpn", "mail"]), "remote"]},
    "link": lambda pick: {"kind": pick(["problem", "incident"]), "target": pick(["P1", "I1"])},
    "unlink": lambda pick: {"kind": pick(["problem", "incident"]), "target": pick(["P1", "I1"])},
}


class _Articles(RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = KNOWLEDGE

    def records(self) -> st.SearchStrategy[Any]:
        return histories(KnowledgeArticle, arguments=LINKS, max_events=12)


class TestArticlesInMemory(InMemory, _Articles):
    pass


class TestArticlesInSQLite(SQLite, _Articles):
    pass


class TestArticlesInPostgres(Postgres, _Articles):
    pass


# --------------------------------------------------------------------------- deflection


def logged(record_id: str = "INC1", **fields: Any) -> Incident:
    spec = {"id": record_id, "title": "VPN cannot connect", "caller": "mia", "impact": 2,
            "urgency": 2, "at": T0, "by": "desk"}  # fmt: skip
    return Incident.open(**(spec | fields))


def inc_later(i: Incident) -> datetime:
    return i.updated_at + M


def test_resolving_with_an_article_links_both_and_names_it() -> None:
    kb = published(drafted())
    incident = logged().start(at=T0 + M, by="sam")
    resolved, kb = resolve_with(incident, kb, at=T0 + 9 * M, by="sam")
    assert resolved.state is IncidentState.RESOLVED
    assert resolved.knowledge == ("KB1",)
    assert resolved.resolution_code == "solution_provided"
    assert resolved.resolution_notes == "Resolved with KB1: VPN client cannot connect"
    assert kb.incidents == ("INC1",)
    assert [e.type for e in resolved.history[-2:]] == ["incident.linked", "incident.resolved"]
    assert resolved_with(resolved) == ("KB1",)
    # Linked already (the agent attached it while working): not linked twice.
    again, kb = resolve_with(
        logged("INC2").link(kind="knowledge", target="KB1", at=T0, by="sam"), kb,
        code="workaround_provided", notes="Worked around", at=T0 + 9 * M, by="sam",
    )  # fmt: skip
    assert again.knowledge == ("KB1",)
    assert (again.resolution_code, again.resolution_notes) == (
        "workaround_provided",
        "Worked around",
    )
    assert kb.incidents == ("INC1", "INC2")


def test_resolving_with_an_article_is_refused_when_it_cannot_be_done() -> None:
    draft = drafted()
    incident = logged()
    with pytest.raises(ValidationError, match="resolve with a published article"):
        resolve_with(incident, draft, at=T0 + M, by="sam")
    kb = published(draft)
    canceled = incident.cancel(reason="duplicate", at=T0 + M, by="sam")
    with pytest.raises(InvalidTransitionError):
        resolve_with(canceled, kb, at=T0 + 9 * M, by="sam")
    with pytest.raises(ValidationError, match="do not link to knowledge"):
        resolve_with(_ticket("T1"), kb, at=T0 + 9 * M, by="sam")
    with pytest.raises(ValidationError, match="resolution code"):
        resolve_with(incident, kb, code="magic", at=T0 + 9 * M, by="sam")


def test_what_counts_is_the_article_linked_when_it_was_resolved() -> None:
    kb1 = published(drafted())
    resolved, _ = resolve_with(logged(), kb1, at=T0 + 5 * M, by="sam")
    assert resolved_with(resolved) == ("KB1",)
    # Closed afterwards: still resolved with it.
    assert resolved_with(resolved.close(at=T0 + 6 * M, by="sam")) == ("KB1",)
    # Linked only after the resolution: not resolved with it.
    plain = logged().resolve(code="solution_provided", notes="rebooted", at=T0 + 5 * M, by="sam")
    late = plain.link(kind="knowledge", target="KB1", at=T0 + 6 * M, by="sam")
    assert (late.knowledge, resolved_with(late)) == (("KB1",), ())
    # Unlinked before the resolution: not resolved with it.
    tried = logged().link(kind="knowledge", target="KB1", at=T0, by="sam")
    tried = tried.unlink(kind="knowledge", target="KB1", at=T0 + 5 * M, by="sam")
    tried = tried.resolve(code="solution_provided", notes="other fix", at=T0 + 6 * M, by="sam")
    assert resolved_with(tried) == ()
    # Reopened: not resolved now; resolved again with the article still linked: counts.
    reopened = resolved.reopen(reason="back again", at=T0 + 6 * M, by="mia")
    assert resolved_with(reopened) == ()
    again = reopened.resolve(code="solution_provided", notes="same", at=T0 + 7 * M, by="sam")
    assert resolved_with(again) == ("KB1",)
    # Unlinked after the resolution: it was still resolved with it.
    kept = resolved.unlink(kind="knowledge", target="KB1", at=T0 + 6 * M, by="sam")
    assert resolved_with(kept) == ("KB1",)
    # Canceled with an article linked: not a resolution.
    dropped = logged().link(kind="knowledge", target="KB1", at=T0, by="sam")
    assert resolved_with(dropped.cancel(reason="dup", at=T0 + 5 * M, by="sam")) == ()


def test_counting_deflections_over_a_set_of_incidents() -> None:
    kb1 = published(drafted())
    kb2 = published(drafted(id="KB2", title="Printer jams", keywords=["printer"]))
    one, kb1 = resolve_with(logged("INC1"), kb1, at=T0 + 5 * M, by="sam")
    two, kb1 = resolve_with(logged("INC2"), kb1, at=T0 + 5 * M, by="sam")
    three, kb2 = resolve_with(logged("INC3"), kb2, at=T0 + 5 * M, by="sam")
    both = logged("INC4").link(kind="knowledge", target="KB2", at=T0, by="sam")
    both, kb1 = resolve_with(both, kb1, at=T0 + 5 * M, by="sam")
    plain = logged("INC5").resolve(code="user_error", notes="typo", at=T0 + 5 * M, by="sam")
    active = logged("INC6")
    report = count_deflections([one, two, three, both, plain, active])
    assert report == Deflections(
        incidents=6, resolved=5, deflected=4, rate=4 / 5,
        by_article=(("KB1", 3), ("KB2", 2)),
    )  # fmt: skip
    only_kb2 = count_deflections([one, two, three, both, plain, active], articles=["KB2"])
    assert (only_kb2.deflected, only_kb2.rate, only_kb2.by_article) == (2, 2 / 5, (("KB2", 2),))
    assert count_deflections([]) == Deflections(0, 0, 0, 0.0, ())
    assert count_deflections([active]).rate == 0.0


KNOWLEDGE_LINKS = {
    "link": lambda pick: {"kind": pick(["knowledge", "problem"]), "target": pick(["KB1", "KB2"])},
    "unlink": lambda pick: {"kind": "knowledge", "target": pick(["KB1", "KB2"])},
}


@given(
    st.lists(
        histories(Incident, arguments=KNOWLEDGE_LINKS, max_events=14),
        max_size=6,
        unique_by=lambda i: i.id,
    )
)
def test_deflections_are_read_as_the_record_was_at_its_resolution(
    incidents: list[Incident],
) -> None:
    report = count_deflections(incidents)
    assert 0 <= report.deflected <= report.resolved <= report.incidents == len(incidents)
    assert 0.0 <= report.rate <= 1.0
    for incident in incidents:
        # The oracle: the record itself, as it was after the last move into a met state.
        steps = incident.timeline()
        met = incident.workflow.tagged("met")
        expected: tuple[str, ...] = ()
        if incident.state in met:
            for k, (_, snapshot) in enumerate(steps):
                if snapshot.state in met and (k == 0 or steps[k - 1][1].state not in met):
                    expected = snapshot.knowledge
        assert resolved_with(incident) == expected
    assert sum(n for _, n in report.by_article) == sum(len(resolved_with(i)) for i in incidents)
