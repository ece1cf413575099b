"""Knowledge management: articles, their review and versions, suggestions and deflection.

A knowledge article is written as a draft, reviewed by someone other than its author, and
published; a published article is found by the stores' full-text search
(``uow.knowledge.search("vpn cannot connect")``) until it is retired. ``KnowledgeArticle``
is a record on the engine of :mod:`itsmcore.record`; linking to problems (known errors) and
incidents, commenting and editing are the shared capabilities.

Versions: a published article is never edited in place. :meth:`KnowledgeArticle.revise`
drafts its next version as a new article (its own id, ``version_number`` one higher,
``replaces`` naming the article it revises), which goes through review like any draft;
:func:`publish_revision` publishes it and retires the version it replaces in one step, so
saved in one unit of work, search finds exactly one version at every moment.

The functions at the end serve the desk: :func:`suggest` finds published articles for an
incident being logged, :func:`resolve_with` resolves an incident with an article, and
:func:`count_deflections` counts the incidents resolved that way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Protocol, Self, TypeVar

import attrs

from itsmcore.capabilities import (
    Commentable,
    Commented,
    Editable,
    FieldsUpdated,
    Linkable,
    Linked,
    Unlinked,
)
from itsmcore.errors import SegregationOfDutiesError, ValidationError
from itsmcore.events import Event, utc
from itsmcore.record import (
    Column,
    Opened,
    applies,
    label,
    optional_label,
    state_of,
    text,
    verb,
)
from itsmcore.search import MAX_QUERY, Document
from itsmcore.workflow import ACTIVE, MET, Transition, Workflow

__all__ = [
    "KNOWLEDGE_WORKFLOW",
    "ArticleState",
    "Deflections",
    "KnowledgeArticle",
    "Searchable",
    "count_deflections",
    "publish_revision",
    "resolve_with",
    "resolved_with",
    "suggest",
]


class ArticleState(StrEnum):
    """Where a knowledge article is in its life."""

    DRAFT = "draft"
    REVIEW = "review"
    PUBLISHED = "published"
    RETIRED = "retired"


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class ArticleDrafted(Opened):
    """An article (or the next version of one) was drafted."""

    type: ClassVar[str] = "knowledge.drafted"
    title: str
    body: str
    keywords: tuple[str, ...]
    service: str | None
    category: str | None
    author: str
    version_number: int
    replaces: str | None
    problems: tuple[str, ...]
    incidents: tuple[str, ...]


@attrs.frozen(kw_only=True)
class ArticleSubmitted(Event):
    """The draft was sent for review, to a named reviewer or to whoever takes it."""

    type: ClassVar[str] = "knowledge.submitted"
    reviewer: str | None


@attrs.frozen(kw_only=True)
class ArticleSentBack(Event):
    """The review sent the article back to its author, saying why."""

    type: ClassVar[str] = "knowledge.sent_back"
    reason: str


@attrs.frozen(kw_only=True)
class ArticlePublished(Event):
    """The review approved the article: readers (and search) find it from now on."""

    type: ClassVar[str] = "knowledge.published"


@attrs.frozen(kw_only=True)
class ArticleRetired(Event):
    """The article was withdrawn: out of date, wrong, or superseded by a newer version."""

    type: ClassVar[str] = "knowledge.retired"
    reason: str
    superseded_by: str | None = None


@attrs.frozen(kw_only=True)
class KeywordsSet(Event):
    """The draft's keywords were replaced."""

    type: ClassVar[str] = "knowledge.keywords_set"
    keywords: tuple[str, ...]


@attrs.frozen(kw_only=True)
class ArticleCommented(Commented):
    """A comment or review note."""

    type: ClassVar[str] = "knowledge.commented"


@attrs.frozen(kw_only=True)
class ArticleLinked(Linked):
    """The article now points at a problem (a known error) or an incident."""

    type: ClassVar[str] = "knowledge.linked"


@attrs.frozen(kw_only=True)
class ArticleUnlinked(Unlinked):
    """The article no longer points at that record."""

    type: ClassVar[str] = "knowledge.unlinked"


@attrs.frozen(kw_only=True)
class ArticleUpdated(FieldsUpdated):
    """The draft's title, body, service or category were edited."""

    type: ClassVar[str] = "knowledge.updated"


# --------------------------------------------------------------------------- lifecycle

_DRAFT, _REVIEW = ArticleState.DRAFT, ArticleState.REVIEW
_PUBLISHED, _RETIRED = ArticleState.PUBLISHED, ArticleState.RETIRED
_LIVE: Final = (_DRAFT, _REVIEW, _PUBLISHED)


def knowledge_workflow(*, name: str = "knowledge") -> Workflow:
    """The article lifecycle: draft, review, published, retired; review can send it back.

    Only a draft is edited (a published article is revised as a new version); any article
    not yet retired can be retired, be linked and take comments. Tags: Draft and Review are
    ``active`` (work to do), Published and Retired are ``met``.
    """
    return Workflow(
        name=name,
        states=tuple(ArticleState),
        initial=_DRAFT,
        terminal=(_RETIRED,),
        transitions=(
            Transition("submit", _DRAFT, _REVIEW),
            Transition("send_back", _REVIEW, _DRAFT),
            Transition("publish", _REVIEW, _PUBLISHED),
            Transition("retire", _LIVE, _RETIRED),
            Transition("update", _DRAFT),
            Transition("set_keywords", _DRAFT),
            Transition("comment", _LIVE),
            Transition("link", _LIVE),
            Transition("unlink", _LIVE),
        ),
        tags={ACTIVE: (_DRAFT, _REVIEW), MET: (_PUBLISHED, _RETIRED)},
    )


KNOWLEDGE_WORKFLOW: Final = knowledge_workflow()
"""The default article lifecycle."""


def _keywords(values: object) -> tuple[str, ...]:
    """Keywords as given, each a label, without repeats; a lone string is refused."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError(f"keywords are a collection of words, got {values!r}")
    return tuple(dict.fromkeys(label(k, "keyword") for k in values))


# --------------------------------------------------------------------------- the record


@attrs.frozen(kw_only=True, slots=False)
class KnowledgeArticle(Commentable, Linkable, Editable):
    """A knowledge article: its text, its review, its version and what it is linked to.

    Open a draft with :meth:`open`; ``submit`` it for review; a reviewer other than the
    author ``publish``-es it (or ``send_back``-s it with a reason); ``retire`` it when it no
    longer holds. Each verb takes keyword-only ``at=`` and ``by=``.
    """

    kind: ClassVar[str] = "knowledge"
    number_prefix: ClassVar[str | None] = "KB"
    state_enum: ClassVar[type[StrEnum]] = ArticleState
    default_workflow: ClassVar[Workflow] = KNOWLEDGE_WORKFLOW
    link_fields: ClassVar[Mapping[str, str]] = {"problem": "problems", "incident": "incidents"}
    editable: ClassVar[tuple[str, ...]] = ("title", "body", "service", "category")
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("knowledge")),
        Column("service", str),
        Column("category", str),
        Column("author", str),
        Column("replaces", str),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    title: str
    body: str
    keywords: tuple[str, ...] = ()
    service: str | None = None
    """The service the article applies to (``None``: any)."""
    category: str | None = None
    """The incident category it applies to (``None``: any)."""
    author: str
    reviewer: str | None = None
    """Who was asked to review it, and once published, who approved it."""
    feedback: str | None = None
    """Why the last review sent it back (cleared when it is submitted again)."""
    version_number: int = 1
    replaces: str | None = None
    """The article this version revises (the previous version), if any."""
    superseded_by: str | None = None
    """The version that replaced this one, once retired for it."""
    published_at: datetime | None = None
    retired_at: datetime | None = None
    retire_reason: str | None = None
    problems: tuple[str, ...] = ()
    incidents: tuple[str, ...] = ()

    @classmethod
    def open(
        cls,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        title: str,
        body: str,
        at: datetime,
        by: str,
        keywords: Iterable[str] = (),
        service: str | None = None,
        category: str | None = None,
        author: str | None = None,
        workflow: Workflow = KNOWLEDGE_WORKFLOW,
    ) -> Self:
        """Draft a new article; its author is ``by`` unless named.

        Raises:
            ValidationError: an empty id, title, body or keyword, or a lone string as
                ``keywords``.
        """
        workflow = cls._workflow(workflow)
        event = ArticleDrafted(
            at=at,
            by=by,
            state=workflow.initial,
            workflow=workflow.name,
            id=label(id, "id"),
            title=text(title, "title"),
            body=text(body, "body"),
            keywords=_keywords(keywords),
            service=optional_label(service, "service"),
            category=optional_label(category, "category"),
            author=label(by if author is None else author, "author"),
            version_number=1,
            replaces=None,
            problems=(),
            incidents=(),
        )
        return cls._opened(event, workflow)

    def revise(
        self,
        *,
        id: str,  # noqa: A002
        at: datetime,
        by: str,
        title: str | None = None,
        body: str | None = None,
        keywords: Iterable[str] | None = None,
    ) -> Self:
        """Draft the next version of this published article as a new article ``id``.

        The draft starts from this version's text, keywords, service, category and links
        (``title``, ``body`` and ``keywords`` replace them when given), has
        ``version_number`` one higher, ``replaces`` this article's id, and ``by`` as its
        author. It is reviewed like any draft; publish it with :func:`publish_revision`.

        Raises:
            ValidationError: this article is not published, the new id is its own, or
                ``at`` is before it was published.
        """
        if self.state != _PUBLISHED or self.published_at is None:
            raise ValidationError(
                f"{self.id} is {self.state}: only a published article is revised (edit a "
                "draft with update())"
            )
        new_id = label(id, "id")
        if new_id == self.id:
            raise ValidationError(f"the next version of {self.id} needs an id of its own")
        if utc(at) < self.published_at:
            raise ValidationError(f"{self.id} was published after {at.isoformat()}")
        event = ArticleDrafted(
            at=at,
            by=by,
            state=self.workflow.initial,
            workflow=self.workflow.name,
            id=new_id,
            title=self.title if title is None else text(title, "title"),
            body=self.body if body is None else text(body, "body"),
            keywords=self.keywords if keywords is None else _keywords(keywords),
            service=self.service,
            category=self.category,
            author=label(by, "author"),
            version_number=self.version_number + 1,
            replaces=self.id,
            problems=self.problems,
            incidents=self.incidents,
        )
        return self._opened(event, self.workflow)

    def search_document(self) -> Document | None:
        """What search reads of this article: its text while published, else ``None``."""
        if self.state != _PUBLISHED:
            return None
        return Document(self.title, " ".join(self.keywords), self.body)

    # ----------------------------------------------------------------------- verbs

    def _not_the_author(self, person: str, role: str) -> None:
        if person == self.author:
            raise SegregationOfDutiesError(
                f"segregation of duties: {person} wrote {self.id} and cannot {role} it; "
                "another person reviews it"
            )

    @verb
    def submit(self, *, at: datetime, by: str, reviewer: str | None = None) -> Self:
        """Draft → Review, optionally naming the reviewer (never the author).

        Raises:
            SegregationOfDutiesError: the reviewer named is the author.
        """
        self._check("submit", at)  # the lifecycle first: there may be nothing to submit
        named = optional_label(reviewer, "reviewer")
        if named is not None:
            self._not_the_author(named, "review")
        return self._do("submit", ArticleSubmitted, at, by, reviewer=named)

    @verb
    def send_back(self, *, reason: str, at: datetime, by: str) -> Self:
        """Review → Draft: the review found something to change; the reason is kept."""
        return self._do("send_back", ArticleSentBack, at, by, reason=text(reason, "reason"))

    @verb
    def publish(self, *, at: datetime, by: str) -> Self:
        """Review → Published: ``by`` approves it and becomes its reviewer.

        Raises:
            SegregationOfDutiesError: ``by`` is the author.
        """
        self._check("publish", at)  # the lifecycle first: there may be nothing to approve
        self._not_the_author(by, "approve")
        return self._do("publish", ArticlePublished, at, by)

    @verb
    def retire(
        self, *, reason: str, at: datetime, by: str, superseded_by: str | None = None
    ) -> Self:
        """Withdraw the article, saying why (and which version replaces it, if one does)."""
        successor = optional_label(superseded_by, "superseded_by")
        if successor == self.id:
            raise ValidationError(f"{self.id} cannot supersede itself")
        return self._do(
            "retire", ArticleRetired, at, by,
            reason=text(reason, "reason"), superseded_by=successor,
        )  # fmt: skip

    @verb
    def set_keywords(self, *, keywords: Iterable[str], at: datetime, by: str) -> Self:
        """Replace the draft's keywords (words search weighs above the body's)."""
        return self._do("set_keywords", KeywordsSet, at, by, keywords=_keywords(keywords))

    # ----------------------------------------------------------------------- appliers

    @applies(ArticleSubmitted, sets=("reviewer", "feedback"))
    def _on_submitted(self, e: ArticleSubmitted) -> Mapping[str, Any]:
        return {"reviewer": e.reviewer, "feedback": None}

    @applies(ArticleSentBack, sets=("feedback",))
    def _on_sent_back(self, e: ArticleSentBack) -> Mapping[str, Any]:
        return {"feedback": e.reason}

    @applies(ArticlePublished, sets=("reviewer", "published_at"))
    def _on_published(self, e: ArticlePublished) -> Mapping[str, Any]:
        return {"reviewer": e.by, "published_at": e.at}

    @applies(ArticleRetired, sets=("retired_at", "retire_reason", "superseded_by"))
    def _on_retired(self, e: ArticleRetired) -> Mapping[str, Any]:
        return {"retired_at": e.at, "retire_reason": e.reason, "superseded_by": e.superseded_by}

    @applies(KeywordsSet, sets=("keywords",))
    def _on_keywords(self, e: KeywordsSet) -> Mapping[str, Any]:
        return {"keywords": e.keywords}


def publish_revision(
    revision: KnowledgeArticle, current: KnowledgeArticle, *, at: datetime, by: str
) -> tuple[KnowledgeArticle, KnowledgeArticle]:
    """Publish ``revision`` and retire ``current``, the version it replaces, for it.

    Save both in one unit of work: search then swaps the versions in one transaction. If
    ``current`` is no longer published (someone retired it already) it is returned as it
    is. Returns ``(published revision, current)``.

    Raises:
        ValidationError: ``revision`` does not replace ``current``, or another version
            superseded ``current`` already (two revisions drafted side by side: the second
            is revised from the first instead, so one version is published at a time).
        SegregationOfDutiesError: ``by`` wrote the revision.
    """
    if revision.replaces != current.id:
        raise ValidationError(
            f"{revision.id} replaces {revision.replaces or 'no article'}, not {current.id}"
        )
    if current.superseded_by not in (None, revision.id):
        raise ValidationError(
            f"{current.id} was superseded by {current.superseded_by} already: revise that "
            "version instead"
        )
    published = revision.publish(at=at, by=by)
    if current.state == _PUBLISHED:
        current = current.retire(
            reason=f"superseded by version {revision.version_number} ({revision.id})",
            superseded_by=revision.id,
            at=at,
            by=by,
        )
    return published, current


# --------------------------------------------------------------------------- the desk
# Incidents are any records that link to knowledge articles: this module does not import
# the incident practice (practices sit side by side in the layer map).

_KNOWLEDGE: Final = "knowledge"
_I = TypeVar("_I", bound=Linkable)


class Searchable(Protocol):
    """What :func:`suggest` searches: a store's ``uow.knowledge`` repository."""

    def search(self, text: str, *, limit: int = 10, **scope: Any) -> list[Any]:
        """Published articles for ``text``, best first."""
        ...


def suggest(
    articles: Searchable,
    incident_or_text: object,
    *,
    limit: int = 5,
    service: str | None = None,
    category: str | None = None,
) -> list[KnowledgeArticle]:
    """Published articles for an incident being logged (or any text), best first.

    An incident is read for its title and description, and its service and category
    unless ``service`` / ``category`` are given: an article for another service or category
    is not suggested, one for none applies everywhere. ``articles`` is the knowledge
    repository of a unit of work (``uow.knowledge``).
    """
    if isinstance(incident_or_text, str):
        query = incident_or_text
    else:
        title = getattr(incident_or_text, "title", None)
        if not isinstance(title, str):
            raise ValidationError(
                "suggest() takes text or a record with a title (an incident), got "
                f"{type(incident_or_text).__name__}"
            )
        description = getattr(incident_or_text, "description", "") or ""
        query = f"{title}\n{description}"[:MAX_QUERY]  # the leading words are the ones kept
        service = service if service is not None else getattr(incident_or_text, "service", None)
        category = category if category is not None else getattr(incident_or_text, "category", None)
    scope = {k: v for k, v in (("service", service), ("category", category)) if v is not None}
    found: list[KnowledgeArticle] = articles.search(query, limit=limit, **scope)
    return found


def _knowledge_links(record: Linkable) -> str:
    links: Mapping[str, str] = getattr(record, "link_fields", {})
    field = links.get(_KNOWLEDGE)
    if field is None:
        raise ValidationError(f"{type(record).__name__} records do not link to knowledge")
    return field


def resolve_with(
    incident: _I,
    article: KnowledgeArticle,
    *,
    at: datetime,
    by: str,
    code: str = "solution_provided",
    notes: str | None = None,
) -> tuple[_I, KnowledgeArticle]:
    """Resolve ``incident`` with a published article: the deflection the desk counts.

    The incident links the article, then resolves (with ``code`` and ``notes``, which
    name the article unless given); the article links the incident back. Both are changed
    with their own verbs; save both. Returns ``(incident, article)``.

    Raises:
        ValidationError: the article is not published, or the incident takes no knowledge
            links.
        InvalidTransitionError: the incident cannot be resolved now.
    """
    if article.state != _PUBLISHED:
        raise ValidationError(f"{article.id} is {article.state}: resolve with a published article")
    resolved = incident
    if article.id not in getattr(incident, _knowledge_links(incident)):
        resolved = resolved.link(kind=_KNOWLEDGE, target=article.id, at=at, by=by)
    resolved = resolved.fire(
        "resolve",
        code=code,
        notes=notes if notes is not None else f"Resolved with {article.id}: {article.title}",
        at=at,
        by=by,
    )
    if incident.id not in article.incidents:
        article = article.link(kind="incident", target=incident.id, at=at, by=by)
    return resolved, article


def resolved_with(incident: Linkable) -> tuple[str, ...]:
    """The articles ``incident`` was linked to when it was last resolved (``()`` if none).

    Read from its history: a link made after the resolution does not count, nor one removed
    before it; an incident not resolved now (reopened, canceled, active) has none.
    """
    _knowledge_links(incident)
    met = incident.workflow.tagged(MET)
    if incident.state not in met:
        return ()
    linked: dict[str, None] = {}  # in the order linked
    at_resolution: tuple[str, ...] = ()
    was_met = False
    for event in incident.history:
        if isinstance(event, Linked) and event.kind == _KNOWLEDGE:
            linked[event.target] = None
        elif isinstance(event, Unlinked) and event.kind == _KNOWLEDGE:
            linked.pop(event.target, None)
        is_met = event.state in met
        if is_met and not was_met:
            at_resolution = tuple(linked)
        was_met = is_met
    return at_resolution


@attrs.frozen
class Deflections:
    """How many incidents knowledge resolved, out of how many resolved."""

    incidents: int
    """Incidents counted."""
    resolved: int
    """Of those, resolved (or closed) now."""
    deflected: int
    """Of those, resolved with a knowledge article."""
    rate: float
    """``deflected / resolved`` (0.0 when none is resolved)."""
    by_article: tuple[tuple[str, int], ...]
    """Deflections per article, most first (an incident with two articles counts for each)."""


def count_deflections(
    incidents: Iterable[Linkable], *, articles: Iterable[str] | None = None
) -> Deflections:
    """Count the incidents resolved with a knowledge article (see :func:`resolved_with`).

    With ``articles``, only those article ids count (e.g. the ones suggested, or one team's).
    A pure function of the incidents' histories.
    """
    wanted = None if articles is None else frozenset(articles)
    counted = resolved = deflected = 0
    per_article: Counter[str] = Counter()
    for incident in incidents:
        counted += 1
        if incident.state not in incident.workflow.tagged(MET):
            continue
        resolved += 1
        used = [a for a in resolved_with(incident) if wanted is None or a in wanted]
        if used:
            deflected += 1
            per_article.update(used)
    return Deflections(
        incidents=counted,
        resolved=resolved,
        deflected=deflected,
        rate=deflected / resolved if resolved else 0.0,
        by_article=tuple(sorted(per_article.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
