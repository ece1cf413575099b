"""Change enablement: the record, its types, approvals, risk and review.

A change adds, modifies or removes something that could affect services. ``Change`` is a
record on the engine of :mod:`itsmcore.record` with ServiceNow's states and one lifecycle per
:class:`ChangeType`, chosen when the change is opened and kept through every store:

* standard (from a pre-approved :class:`StandardChangeTemplate`): New, Scheduled, Implement,
  Review, Closed;
* normal: New, Assess (technical approval), Authorize (the CAB), Scheduled, Implement,
  Review, Closed;
* emergency: New, Authorize (the emergency CAB), Scheduled, Implement, Review (mandatory),
  Closed.

Approvals are data (:class:`ApprovalLevel`: N of a group's members, levels in sequence per
state); votes are events, and segregation of duties is checked on every vote. Risk comes
from a :class:`RiskModel` (a weighted questionnaire and rules; the higher level wins, and the
record keeps why). Scheduling against maintenance and blackout windows lives in
:mod:`itsmcore.scheduling`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final, Self

import attrs

from itsmcore._time import to_utc
from itsmcore.capabilities import (
    DEFAULT_MATRIX,
    Assignable,
    Assigned,
    Cancelable,
    Canceled,
    Commentable,
    Commented,
    Editable,
    FieldsUpdated,
    Linkable,
    Linked,
    Prioritized,
    Reprioritized,
    Unlinked,
)
from itsmcore.errors import DefinitionError, SegregationOfDutiesError, ValidationError
from itsmcore.events import Event
from itsmcore.priority import Impact, Level, Priority, PriorityMatrix, Urgency
from itsmcore.record import (
    Column,
    Opened,
    applies,
    label,
    member,
    optional_label,
    state_of,
    text,
    verb,
)
from itsmcore.workflow import ACTIVE, CANCELED, MET, Transition, Workflow

__all__ = [
    "CHANGE_WORKFLOWS",
    "ApprovalLevel",
    "Change",
    "ChangeMeasures",
    "ChangeState",
    "ChangeType",
    "CloseCode",
    "Decision",
    "RiskLevel",
    "RiskModel",
    "RiskRule",
    "StandardChangeTemplate",
    "Vote",
    "change_measures",
    "change_workflow",
]


class ChangeState(StrEnum):
    """Where a change is (ServiceNow's states)."""

    NEW = "new"
    ASSESS = "assess"
    AUTHORIZE = "authorize"
    SCHEDULED = "scheduled"
    IMPLEMENT = "implement"
    REVIEW = "review"
    CLOSED = "closed"
    CANCELED = "canceled"


class ChangeType(StrEnum):
    """How a change is approved: pre-approved, by the CAB, or by the emergency CAB."""

    STANDARD = "standard"
    NORMAL = "normal"
    EMERGENCY = "emergency"


class CloseCode(StrEnum):
    """How the implementation went."""

    SUCCESSFUL = "successful"
    SUCCESSFUL_WITH_ISSUES = "successful_with_issues"
    UNSUCCESSFUL = "unsuccessful"
    BACKED_OUT = "backed_out"


_FAILED: Final = frozenset({CloseCode.UNSUCCESSFUL, CloseCode.BACKED_OUT})


class RiskLevel(StrEnum):
    """Change risk, lowest to highest: ``RiskLevel.order`` compares them."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    VERY_HIGH = "very_high"

    @property
    def rank(self) -> int:
        """0 for low ... 3 for very high."""
        return _RISK_ORDER.index(self)


_RISK_ORDER: Final = (RiskLevel.LOW, RiskLevel.MODERATE, RiskLevel.HIGH, RiskLevel.VERY_HIGH)


class Decision(StrEnum):
    """An approver's vote."""

    APPROVE = "approve"
    REJECT = "reject"


# --------------------------------------------------------------------------- approvals


def _name(value: object) -> str:
    return label(value, "name")


def _stage(value: object) -> ChangeState:
    return member(ChangeState, value, "stage")


def _risk(value: object) -> RiskLevel:
    return member(RiskLevel, value, "risk level")


def _members(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise DefinitionError("approvers are a collection of names, not one string")
    out = tuple(label(v, "approver") for v in value)
    if not out or len(set(out)) != len(out):
        raise DefinitionError(f"approvers must be distinct names, at least one: {out!r}")
    return out


@attrs.frozen
class ApprovalLevel:
    """One approval step: ``required`` approvals from ``approvers``, in a change state.

    Levels of the same state run in sequence, in the order the change lists them (a
    technical level, then the CAB). A level is approved once ``required`` members approve,
    and rejected as soon as enough reject that ``required`` can no longer be reached: with
    all required, any rejection ends it; with one of the group, all must reject.
    """

    name: str = attrs.field(converter=_name)
    approvers: tuple[str, ...] = attrs.field(converter=_members)
    required: int = 1
    stage: ChangeState = attrs.field(default=ChangeState.AUTHORIZE, converter=_stage)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.required, bool) or not isinstance(self.required, int):
            raise DefinitionError(f"{self.name}: required must be a whole number")
        if not 1 <= self.required <= len(self.approvers):
            raise DefinitionError(
                f"{self.name}: required must be 1 to {len(self.approvers)}, got {self.required}"
            )
        if self.stage not in (ChangeState.ASSESS, ChangeState.AUTHORIZE):
            raise DefinitionError(f"{self.name}: approvals happen in assess or authorize")

    @classmethod
    def any_of(cls, name: str, approvers: Iterable[str], *, stage: str = "authorize") -> Self:
        """Approved by any one member (rejected when every member has rejected)."""
        return cls(name, tuple(approvers), 1, _stage(stage))

    @classmethod
    def all_of(cls, name: str, approvers: Iterable[str], *, stage: str = "authorize") -> Self:
        """Approved by every member (rejected by any one)."""
        members = tuple(approvers)
        return cls(name, members, max(len(members), 1), _stage(stage))

    def outcome(self, votes: Iterable[Vote]) -> Decision | None:
        """Approved, rejected, or ``None`` while undecided, given this level's votes."""
        approvals = rejections = 0
        for vote in votes:
            if vote.level == self.name:
                approvals += vote.decision is Decision.APPROVE
                rejections += vote.decision is Decision.REJECT
        if approvals >= self.required:
            return Decision.APPROVE
        if len(self.approvers) - rejections < self.required:
            return Decision.REJECT
        return None


@attrs.frozen
class Vote:
    """One approver's decision on one level, in one approval round."""

    level: str
    approver: str
    decision: Decision
    comment: str
    at: datetime
    round: int


# --------------------------------------------------------------------------- risk


@attrs.frozen
class RiskRule:
    """A rule over the change: when ``applies(change)`` holds, the risk is at least ``level``."""

    name: str
    level: RiskLevel = attrs.field(converter=_risk)
    applies: Callable[[Any], bool] = attrs.field(eq=False)


@attrs.frozen
class RiskModel:
    """A risk questionnaire and rules; the higher of the two levels wins.

    ``questions`` maps each question to its answers' weights; the score is the sum of the
    chosen answers' weights, and ``thresholds`` (score, level) pairs say from which score a
    level applies. ``rules`` raise the level further.
    """

    questions: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    thresholds: tuple[tuple[float, RiskLevel], ...] = ((0.0, RiskLevel.LOW),)
    rules: tuple[RiskRule, ...] = ()

    def __attrs_post_init__(self) -> None:
        scores = [s for s, _ in self.thresholds]
        if not scores or scores != sorted(scores):
            raise DefinitionError("risk thresholds are (score, level) pairs in rising order")
        for _, level in self.thresholds:
            member(RiskLevel, level, "risk level")

    def assess(self, change: Any, answers: Mapping[str, str]) -> tuple[RiskLevel, float, str]:
        """The level, the questionnaire's score, and what decided the level."""
        unknown = sorted(set(answers) - set(self.questions))
        missing = sorted(set(self.questions) - set(answers))
        if unknown or missing:
            raise ValidationError(
                "risk answers must answer every question of the model: "
                + "; ".join(
                    part
                    for part in (
                        f"unknown {', '.join(unknown)}" if unknown else "",
                        f"missing {', '.join(missing)}" if missing else "",
                    )
                    if part
                )
            )
        score = 0.0
        for question, answer in answers.items():
            weights = self.questions[question]
            if answer not in weights:
                raise ValidationError(
                    f"{question!r}: answer one of {', '.join(weights)}, got {answer!r}"
                )
            score += weights[answer]
        level, why = RiskLevel.LOW, f"score {score:g}"
        for threshold, at_least in self.thresholds:
            if score >= threshold:
                level = member(RiskLevel, at_least, "risk level")
        for rule in self.rules:
            if rule.applies(change) and rule.level.rank > level.rank:
                level, why = rule.level, f"rule: {rule.name}"
        return level, score, why


# --------------------------------------------------------------------------- templates


@attrs.frozen
class StandardChangeTemplate:
    """A named, pre-approved recipe: changes made from it skip assessment and approval."""

    name: str = attrs.field(converter=_name)
    version: int
    title: str
    risk: RiskLevel = attrs.field(default=RiskLevel.LOW, converter=_risk)
    implementation_plan: str = ""
    backout_plan: str = ""
    test_plan: str = ""
    duration: timedelta = timedelta(hours=1)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise DefinitionError(f"template {self.name}: version must be a whole number from 1")
        if not isinstance(self.duration, timedelta) or self.duration <= timedelta(0):
            raise DefinitionError(f"template {self.name}: duration must be positive")


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class ChangeOpened(Opened):
    """A change was requested."""

    type: ClassVar[str] = "change.opened"
    change_type: ChangeType
    title: str
    description: str
    requester: str
    implementer: str | None
    cis: tuple[str, ...]
    services: tuple[str, ...]
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool
    implementation_plan: str
    backout_plan: str
    test_plan: str
    backout_tested: bool
    approval_plan: tuple[ApprovalLevel, ...]
    planned_start: datetime | None
    planned_end: datetime | None
    template: str | None
    template_version: int | None
    risk: RiskLevel | None
    risk_reason: str | None


@attrs.frozen(kw_only=True)
class ChangeSubmitted(Event):
    """Sent for approval (or, for a standard change, straight to the schedule)."""

    type: ClassVar[str] = "change.submitted"


@attrs.frozen(kw_only=True)
class ChangeVoted(Event):
    """An approver's vote; the vote that decides a state's approvals moves the change."""

    type: ClassVar[str] = "change.voted"
    level: str
    decision: Decision
    comment: str


@attrs.frozen(kw_only=True)
class ChangeRescheduled(Event):
    """The planned window moved; after approval votes, approval starts again."""

    type: ClassVar[str] = "change.rescheduled"
    planned_start: datetime
    planned_end: datetime
    reason: str


@attrs.frozen(kw_only=True)
class RiskAssessed(Event):
    """The risk level, the questionnaire's score, and what decided it."""

    type: ClassVar[str] = "change.risk_assessed"
    risk: RiskLevel
    score: float
    reason: str
    answers: tuple[tuple[str, str], ...]


@attrs.frozen(kw_only=True)
class ImplementationStarted(Event):
    """Work began; ``outside_window`` if not within the planned window."""

    type: ClassVar[str] = "change.implementation_started"
    outside_window: bool


@attrs.frozen(kw_only=True)
class ImplementationEnded(Event):
    """Work ended with a close code; the change awaits its review."""

    type: ClassVar[str] = "change.implementation_ended"
    close_code: CloseCode
    close_notes: str
    outside_window: bool


@attrs.frozen(kw_only=True)
class ChangeReviewed(Event):
    """The post-implementation review: outcome, lessons, incidents it caused; closed."""

    type: ClassVar[str] = "change.reviewed"
    outcome: str
    lessons: str
    caused: tuple[str, ...]


@attrs.frozen(kw_only=True)
class ChangeAssigned(Assigned):
    """Routed to a group and/or a person."""

    type: ClassVar[str] = "change.assigned"


@attrs.frozen(kw_only=True)
class ChangeReprioritized(Reprioritized):
    """Impact, urgency or priority changed."""

    type: ClassVar[str] = "change.reprioritized"


@attrs.frozen(kw_only=True)
class ChangeCommented(Commented):
    """A work note or comment."""

    type: ClassVar[str] = "change.commented"


@attrs.frozen(kw_only=True)
class ChangeLinked(Linked):
    """Now points at an incident (it caused), a problem (it fixes) or an article."""

    type: ClassVar[str] = "change.linked"


@attrs.frozen(kw_only=True)
class ChangeUnlinked(Unlinked):
    """A link was removed."""

    type: ClassVar[str] = "change.unlinked"


@attrs.frozen(kw_only=True)
class ChangeCanceled(Canceled):
    """Withdrawn before its review."""

    type: ClassVar[str] = "change.canceled"


@attrs.frozen(kw_only=True)
class ChangeUpdated(FieldsUpdated):
    """Descriptive fields or plans were edited."""

    type: ClassVar[str] = "change.updated"


# --------------------------------------------------------------------------- lifecycles

_NEW, _ASSESS, _AUTH = ChangeState.NEW, ChangeState.ASSESS, ChangeState.AUTHORIZE
_SCHED, _IMPL, _REVIEW = ChangeState.SCHEDULED, ChangeState.IMPLEMENT, ChangeState.REVIEW
_CLOSED, _CANCELED = ChangeState.CLOSED, ChangeState.CANCELED


def change_workflow(change_type: ChangeType | str, *, name: str | None = None) -> Workflow:
    """The lifecycle of one change type.

    Every type: New → ... → Scheduled → Implement → Review → Closed; canceled from any
    state before Review. A normal change is approved in Assess then Authorize, an emergency
    one in Authorize only, a standard one not at all. A deciding rejection returns it to
    New; rescheduling once approval has begun starts approval again.
    """
    kind = member(ChangeType, change_type, "change type")
    approval = {ChangeType.NORMAL: (_ASSESS, _AUTH), ChangeType.EMERGENCY: (_AUTH,)}.get(kind, ())
    first = approval[0] if approval else _SCHED
    states = (_NEW, *approval, _SCHED, _IMPL, _REVIEW, _CLOSED, _CANCELED)
    before_review = (_NEW, *approval, _SCHED, _IMPL)
    moves = [
        Transition("submit", _NEW, first),
        Transition("implement", _SCHED, _IMPL),
        Transition("complete", _IMPL, _REVIEW),
        Transition("close", _REVIEW, _CLOSED),
        Transition("cancel", before_review, _CANCELED),
        Transition("assess_risk", (_NEW, *approval)),
        Transition("reschedule", _NEW),
        Transition("assign", (*before_review, _REVIEW)),
        Transition("reprioritize", before_review),
        Transition("comment", (*before_review, _REVIEW)),
        Transition("link", (*before_review, _REVIEW)),
        Transition("unlink", (*before_review, _REVIEW)),
        Transition("update", (_NEW, *approval, _SCHED)),
    ]
    if approval:
        moves += [
            Transition("vote", approval),
            *(
                Transition("approve", s, t)
                for s, t in zip(approval, (*approval[1:], _SCHED), strict=True)
            ),
            Transition("reject", approval, _NEW),
            Transition("reschedule", (*approval, _SCHED), first),
        ]
    else:
        moves.append(Transition("reschedule", _SCHED))  # pre-approved: it stays scheduled
    merged: dict[str, list[Transition]] = {}
    for row in moves:
        merged.setdefault(row.trigger, []).append(row)
    rows = []
    for trigger, same in merged.items():
        by_target: dict[ChangeState | None, set[str]] = {}
        for row in same:
            by_target.setdefault(row.target, set()).update(row.sources)  # type: ignore[arg-type]
        rows += [Transition(trigger, frozenset(s), t) for t, s in by_target.items()]
    return Workflow(
        name=name or f"change_{kind.value}",
        states=states,
        initial=_NEW,
        terminal=(_CLOSED, _CANCELED),
        transitions=tuple(rows),
        tags={
            ACTIVE: (_NEW, *approval, _SCHED, _IMPL, _REVIEW),
            MET: (_CLOSED,),
            CANCELED: (_CANCELED,),
        },
    )


CHANGE_WORKFLOWS: Final[Mapping[ChangeType, Workflow]] = {
    kind: change_workflow(kind) for kind in ChangeType
}
"""The default lifecycle of each change type."""


# --------------------------------------------------------------------------- the record


def _labels(values: Iterable[str] | None, name: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        raise ValidationError(f"{name} is a collection of names, not one string")
    return tuple(dict.fromkeys(label(v, name) for v in values))


def _maybe_text(value: object, name: str) -> str:
    """Text that may be left empty ("")."""
    return "" if value == "" else text(value, name)


def _when(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else to_utc(value, name)


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, ...]:
    start, end = _when(start, "planned_start"), _when(end, "planned_end")
    if (start is None) != (end is None):
        raise ValidationError("give both planned_start and planned_end, or neither")
    if start is not None and end is not None and end <= start:
        raise ValidationError(f"planned_end {end.isoformat()} is not after planned_start")
    return start, end


@attrs.frozen(kw_only=True, slots=False)
class Change(Assignable, Prioritized, Commentable, Linkable, Cancelable, Editable):
    """A change request: its type, plans, risk, approvals, schedule and review."""

    kind: ClassVar[str] = "change"
    number_prefix: ClassVar[str | None] = "CHG"
    state_enum: ClassVar[type[StrEnum]] = ChangeState
    default_workflow: ClassVar[Workflow] = CHANGE_WORKFLOWS[ChangeType.NORMAL]
    link_fields: ClassVar[Mapping[str, str]] = {
        "incident": "incidents",
        "problem": "problems",
        "knowledge": "knowledge",
    }
    editable: ClassVar[tuple[str, ...]] = (
        "title", "description", "implementation_plan", "backout_plan", "test_plan",
    )  # fmt: skip
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("change")),
        Column("change_type", str, parse=lambda v: member(ChangeType, v, "change type").value),
        Column("priority", int, parse=lambda v: int(Priority.parse(v))),
        Column("risk", str, parse=lambda v: member(RiskLevel, v, "risk level").value),
        Column("assignment_group", str),
        Column("requester", str),
        Column("planned_start", datetime, range=("planned_from", "planned_until")),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    change_type: ChangeType
    title: str
    description: str = ""
    requester: str
    implementer: str | None = None
    cis: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    implementation_plan: str = ""
    backout_plan: str = ""
    test_plan: str = ""
    backout_tested: bool = False
    template: str | None = None
    template_version: int | None = None
    risk: RiskLevel | None = None
    risk_score: float | None = None
    risk_reason: str | None = None
    """What decided the risk level: the questionnaire's score or the rule that raised it."""
    approval_plan: tuple[ApprovalLevel, ...] = ()
    votes: tuple[Vote, ...] = ()
    """Every vote of every round, oldest first."""
    approval_round: int = 0
    rejection_reason: str | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    started_outside_window: bool = False
    ended_outside_window: bool = False
    close_code: CloseCode | None = None
    close_notes: str | None = None
    review_outcome: str | None = None
    lessons: str | None = None
    incidents: tuple[str, ...] = ()
    """Incidents this change caused."""
    problems: tuple[str, ...] = ()
    knowledge: tuple[str, ...] = ()

    @classmethod
    def _declare(cls) -> None:
        super()._declare()
        for workflow in CHANGE_WORKFLOWS.values():
            cls.register_workflow(workflow)

    # ----------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        title: str,
        requester: str,
        at: datetime,
        by: str,
        change_type: ChangeType | str = ChangeType.NORMAL,
        impact: Level | str | int = 3,
        urgency: Level | str | int = 3,
        description: str = "",
        implementer: str | None = None,
        cis: Iterable[str] = (),
        services: Iterable[str] = (),
        implementation_plan: str = "",
        backout_plan: str = "",
        test_plan: str = "",
        backout_tested: bool = False,
        approvals: Sequence[ApprovalLevel] = (),
        planned_start: datetime | None = None,
        planned_end: datetime | None = None,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = DEFAULT_MATRIX,
        workflow: Workflow | None = None,
    ) -> Self:
        """Request a change; its type chooses its lifecycle (or pass ``workflow``).

        ``approvals`` are the levels a normal or emergency change must pass (see
        :class:`ApprovalLevel`); a standard change is opened with :meth:`from_template`.
        """
        kind = member(ChangeType, change_type, "change type")
        if kind is ChangeType.STANDARD and workflow is None:
            raise ValidationError("a standard change is opened from its template: from_template")
        return cls._open_as(
            kind, id=id, title=title, requester=requester, at=at, by=by, impact=impact,
            urgency=urgency, description=description, implementer=implementer, cis=cis,
            services=services, implementation_plan=implementation_plan,
            backout_plan=backout_plan, test_plan=test_plan, backout_tested=backout_tested,
            approvals=approvals, planned_start=planned_start, planned_end=planned_end,
            priority=priority, matrix=matrix, workflow=workflow,
        )  # fmt: skip

    @classmethod
    def from_template(
        cls,
        template: StandardChangeTemplate,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        requester: str,
        at: datetime,
        by: str,
        cis: Iterable[str] = (),
        services: Iterable[str] = (),
        planned_start: datetime | None = None,
        implementer: str | None = None,
        title: str | None = None,
        workflow: Workflow | None = None,
    ) -> Self:
        """A standard change from its pre-approved template (its name and version kept).

        With ``planned_start``, the planned end is the template's duration later.
        """
        if not isinstance(template, StandardChangeTemplate):
            raise ValidationError("from_template needs a StandardChangeTemplate")
        start = _when(planned_start, "planned_start")
        return cls._open_as(
            ChangeType.STANDARD, id=id, title=title or template.title, requester=requester,
            at=at, by=by, impact=3, urgency=3, description="", implementer=implementer,
            cis=cis, services=services, implementation_plan=template.implementation_plan,
            backout_plan=template.backout_plan, test_plan=template.test_plan,
            backout_tested=True, approvals=(), planned_start=start,
            planned_end=None if start is None else start + template.duration,
            priority=None, matrix=DEFAULT_MATRIX, workflow=workflow,
            template=(template.name, template.version), risk=template.risk,
        )  # fmt: skip

    @classmethod
    def _open_as(
        cls,
        kind: ChangeType,
        *,
        id: str,  # noqa: A002
        title: str,
        requester: str,
        at: datetime,
        by: str,
        impact: Level | str | int,
        urgency: Level | str | int,
        description: str,
        implementer: str | None,
        cis: Iterable[str],
        services: Iterable[str],
        implementation_plan: str,
        backout_plan: str,
        test_plan: str,
        backout_tested: bool,
        approvals: Sequence[ApprovalLevel],
        planned_start: datetime | None,
        planned_end: datetime | None,
        priority: Priority | str | int | None,
        matrix: PriorityMatrix,
        workflow: Workflow | None,
        template: tuple[str, int] | None = None,
        risk: RiskLevel | None = None,
    ) -> Self:
        workflow = cls._workflow(workflow or CHANGE_WORKFLOWS[kind])
        plan = tuple(approvals)
        if not all(isinstance(level, ApprovalLevel) for level in plan):
            raise ValidationError("approvals are ApprovalLevel values")
        names = [level.name for level in plan]
        if len(set(names)) != len(names):
            raise ValidationError(f"approval level names must be distinct: {names}")
        stages = set(workflow.states)
        stray = [level.name for level in plan if level.stage not in stages]
        if stray:
            raise ValidationError(
                f"a {kind.value} change has no {', '.join(sorted({str(lv.stage) for lv in plan if lv.name in stray}))}"  # noqa: E501
                f" state for approval levels {', '.join(stray)}"
            )
        if not isinstance(backout_tested, bool):
            raise ValidationError("backout_tested is True or False")
        start, end = _window(planned_start, planned_end)
        event = ChangeOpened(
            at=at,
            by=by,
            state=workflow.initial,
            workflow=workflow.name,
            id=label(id, "id"),
            change_type=kind,
            title=text(title, "title"),
            description=text(description, "description") if description else "",
            requester=label(requester, "requester"),
            implementer=optional_label(implementer, "implementer"),
            cis=_labels(cis, "cis"),
            services=_labels(services, "services"),
            implementation_plan=_maybe_text(implementation_plan, "implementation_plan"),
            backout_plan=_maybe_text(backout_plan, "backout_plan"),
            test_plan=_maybe_text(test_plan, "test_plan"),
            backout_tested=backout_tested,
            approval_plan=plan,
            planned_start=start,
            planned_end=end,
            template=None if template is None else template[0],
            template_version=None if template is None else template[1],
            risk=risk,
            risk_reason=None if template is None else f"template {template[0]} v{template[1]}",
            **cls._priority_fields(impact, urgency, priority, matrix),
        )
        return cls._opened(event, workflow)

    # ----------------------------------------------------------------------- reading

    @property
    def approved(self) -> bool:
        """Whether it has passed every approval it needs (a standard change needs none)."""
        return self.state in (_SCHED, _IMPL, _REVIEW, _CLOSED)

    def pending_level(self) -> ApprovalLevel | None:
        """The approval level now deciding (``None`` outside Assess and Authorize)."""
        current = self._round_votes()
        for level in self.approval_plan:
            if level.stage == self.state and level.outcome(current) is None:
                return level
        return None

    def _round_votes(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.round == self.approval_round)

    # ----------------------------------------------------------------------- verbs

    @verb
    def submit(self, *, at: datetime, by: str) -> Self:
        """Send it for approval (a standard change: straight to Scheduled).

        Raises:
            ValidationError: no planned window, no back-out plan, or (normal and emergency)
                no approval level for a state it must pass.
        """
        self._check("submit", at)
        missing = []
        if self.planned_start is None:
            missing.append("a planned window (reschedule(planned_start=, planned_end=))")
        if not self.backout_plan:
            missing.append("a back-out plan (update(backout_plan=...))")
        planned = {lv.stage for lv in self.approval_plan}
        missing += [
            f"an approval level for {stage}"
            for stage in self.workflow.states
            if stage in (_ASSESS, _AUTH) and stage not in planned
        ]
        if missing:
            raise ValidationError(f"{self.id} cannot be submitted without " + ", ".join(missing))
        return self._do("submit", ChangeSubmitted, at, by)

    @verb
    def approve(self, *, at: datetime, by: str, comment: str = "") -> Self:
        """Vote to approve; the vote that completes the state's last level moves the change on."""
        return self._vote(Decision.APPROVE, comment, at, by)

    @verb
    def reject(self, *, reason: str, at: datetime, by: str) -> Self:
        """Vote to reject; a deciding rejection sends the change back to New with the reason."""
        return self._vote(Decision.REJECT, text(reason, "reason"), at, by)

    @verb
    def vote(self, *, decision: Decision | str, at: datetime, by: str, comment: str = "") -> Self:
        """Record a vote either way (``approve`` and ``reject`` are the same, by name)."""
        found = member(Decision, decision, "decision")
        if found is Decision.REJECT:
            return self.reject(reason=comment, at=at, by=by)
        return self.approve(comment=comment, at=at, by=by)

    def _vote(self, decision: Decision, comment: str, at: datetime, by: str) -> Self:
        self._check(decision.value, at)  # the lifecycle first: is approval happening now?
        approver = label(by, "by")
        self._segregation(approver)
        level = self.pending_level()
        if level is None:  # cannot happen in Assess/Authorize once submitted; kept exact
            raise ValidationError(f"{self.id} has no approval level deciding in {self.state}")
        current = self._round_votes()
        if approver not in level.approvers:
            raise ValidationError(
                f"{approver} is not an approver of level {level.name!r} "
                f"({', '.join(level.approvers)})"
            )
        if any(v.approver == approver and v.level == level.name for v in current):
            raise ValidationError(f"{approver} has already voted on level {level.name!r}")
        vote = Vote(level.name, approver, decision, _maybe_text(comment, "comment"),
                    to_utc(at, "at"), self.approval_round)  # fmt: skip
        outcome = level.outcome((*current, vote))
        if outcome is Decision.REJECT:
            trigger = "reject"
        elif outcome is Decision.APPROVE and self._last_level(level):
            trigger = "approve"
        else:
            trigger = "vote"
        return self._do(
            trigger, ChangeVoted, at, approver, level=level.name, decision=decision,
            comment=vote.comment,
        )  # fmt: skip

    def _last_level(self, level: ApprovalLevel) -> bool:
        same = [lv for lv in self.approval_plan if lv.stage == level.stage]
        return same[-1] is level

    def _segregation(self, approver: str) -> None:
        roles = (
            ("requester", self.requester),
            ("assignee", self.assignee),
            ("implementer", self.implementer),
        )
        for role, person in roles:
            if person == approver:
                raise SegregationOfDutiesError(
                    f"segregation of duties: {approver} is the {role} of {self.id} and cannot "
                    "approve or reject it"
                )

    @verb
    def reschedule(
        self, *, planned_start: datetime, planned_end: datetime, at: datetime, by: str,
        reason: str = "",
    ) -> Self:  # fmt: skip
        """Move the planned window; once approval has begun, approval starts again."""
        start, end = _window(planned_start, planned_end)
        return self._do(
            "reschedule", ChangeRescheduled, at, by, planned_start=start, planned_end=end,
            reason=_maybe_text(reason, "reason"),
        )  # fmt: skip

    @verb
    def assess_risk(
        self, *, model: RiskModel, answers: Mapping[str, str], at: datetime, by: str
    ) -> Self:
        """Set the risk from ``model``: the questionnaire's level or a rule's, the higher."""
        if not isinstance(model, RiskModel):
            raise ValidationError("assess_risk needs a RiskModel")
        level, score, why = model.assess(self, answers)
        return self._do(
            "assess_risk", RiskAssessed, at, by, risk=level, score=score, reason=why,
            answers=tuple(sorted((str(q), str(a)) for q, a in answers.items())),
        )  # fmt: skip

    @verb
    def implement(self, *, at: datetime, by: str) -> Self:
        """Scheduled → Implement: work starts now (recorded if outside the planned window)."""
        when = to_utc(at, "at")
        return self._do(
            "implement", ImplementationStarted, at, by, outside_window=not self._inside(when)
        )

    @verb
    def complete(self, *, code: CloseCode | str, at: datetime, by: str, notes: str = "") -> Self:
        """Implement → Review: work ended, with how it went (a close code)."""
        found = member(CloseCode, code, "close code")
        if found in _FAILED and not notes:
            raise ValidationError(f"{found} needs notes saying what happened")
        when = to_utc(at, "at")
        return self._do(
            "complete", ImplementationEnded, at, by, close_code=found,
            close_notes=_maybe_text(notes, "notes"),
            outside_window=not self._inside(when),
        )  # fmt: skip

    @verb
    def close(
        self, *, outcome: str, at: datetime, by: str, lessons: str = "",
        caused: Iterable[str] = (),
    ) -> Self:  # fmt: skip
        """Review → Closed: the post-implementation review.

        An unsuccessful or backed-out change needs its lessons; ``caused`` links the
        incidents it caused.
        """
        if self.close_code in _FAILED and not lessons:
            raise ValidationError(f"{self.id} was {self.close_code}: the review needs lessons")
        return self._do(
            "close", ChangeReviewed, at, by, outcome=text(outcome, "outcome"),
            lessons=_maybe_text(lessons, "lessons"),
            caused=_labels(caused, "caused"),
        )  # fmt: skip

    def _inside(self, when: datetime) -> bool:
        start, end = self.planned_start, self.planned_end
        return start is not None and end is not None and start <= when <= end

    # ----------------------------------------------------------------------- appliers

    @applies(ChangeSubmitted, sets=("approval_round", "rejection_reason"))
    def _on_submitted(self, _e: ChangeSubmitted) -> Mapping[str, Any]:
        return {"approval_round": self.approval_round + 1, "rejection_reason": None}

    @applies(ChangeVoted, sets=("votes", "rejection_reason"))
    def _on_voted(self, e: ChangeVoted) -> Mapping[str, Any]:
        vote = Vote(e.level, e.by, e.decision, e.comment, e.at, self.approval_round)
        out: dict[str, Any] = {"votes": (*self.votes, vote)}
        if e.state == _NEW:
            out["rejection_reason"] = e.comment
        return out

    @applies(ChangeRescheduled, sets=("planned_start", "planned_end", "approval_round"))
    def _on_rescheduled(self, e: ChangeRescheduled) -> Mapping[str, Any]:
        restart = e.state != self.state or e.state in (_ASSESS, _AUTH)
        return {
            "planned_start": e.planned_start,
            "planned_end": e.planned_end,
            "approval_round": self.approval_round + restart,
        }

    @applies(RiskAssessed, sets=("risk", "risk_score", "risk_reason"))
    def _on_risk(self, e: RiskAssessed) -> Mapping[str, Any]:
        return {"risk": e.risk, "risk_score": e.score, "risk_reason": e.reason}

    @applies(ImplementationStarted, sets=("actual_start", "started_outside_window"))
    def _on_started(self, e: ImplementationStarted) -> Mapping[str, Any]:
        return {"actual_start": e.at, "started_outside_window": e.outside_window}

    @applies(
        ImplementationEnded,
        sets=("actual_end", "close_code", "close_notes", "ended_outside_window"),
    )
    def _on_ended(self, e: ImplementationEnded) -> Mapping[str, Any]:
        return {
            "actual_end": e.at,
            "close_code": e.close_code,
            "close_notes": e.close_notes,
            "ended_outside_window": e.outside_window,
        }

    @applies(ChangeReviewed, sets=("review_outcome", "lessons", "incidents"))
    def _on_reviewed(self, e: ChangeReviewed) -> Mapping[str, Any]:
        caused = tuple(dict.fromkeys((*self.incidents, *e.caused)))
        return {"review_outcome": e.outcome, "lessons": e.lessons, "incidents": caused}


# --------------------------------------------------------------------------- measures


@attrs.frozen
class ChangeMeasures:
    """The change-enablement KPIs over a set of changes."""

    changes: int
    closed: int
    success_rate: float | None
    """Successful (with or without issues) among the closed ones with a close code."""
    emergency_ratio: float | None
    """Emergency changes among all."""
    caused_incidents: int
    """Changes with incidents linked as caused by them."""
    incidents_caused: int
    mean_lead_time: timedelta | None
    """From the request to the start of the implementation, over the implemented ones."""
    mean_approval_time: timedelta | None
    """From submission to the end of approval (Scheduled), over the approved normal and
    emergency ones."""


def change_measures(changes: Iterable[Change]) -> ChangeMeasures:
    """Success rate, emergency ratio, changes causing incidents, lead and approval times."""
    all_ = list(changes)
    closed = [c for c in all_ if c.state is _CLOSED]
    coded = [c for c in closed if c.close_code is not None]
    good = sum(c.close_code not in _FAILED for c in coded)
    leads = [c.actual_start - c.opened_at for c in all_ if c.actual_start is not None]
    approvals = [d for d in map(_approval_time, all_) if d is not None]
    return ChangeMeasures(
        changes=len(all_),
        closed=len(closed),
        success_rate=good / len(coded) if coded else None,
        emergency_ratio=(
            sum(c.change_type is ChangeType.EMERGENCY for c in all_) / len(all_) if all_ else None
        ),
        caused_incidents=sum(bool(c.incidents) for c in all_),
        incidents_caused=sum(len(c.incidents) for c in all_),
        mean_lead_time=sum(leads, timedelta(0)) / len(leads) if leads else None,
        mean_approval_time=sum(approvals, timedelta(0)) / len(approvals) if approvals else None,
    )


def _approval_time(change: Change) -> timedelta | None:
    """From the last submission to reaching Scheduled after it (``None`` if not approved).

    Standard changes are pre-approved: they have no approval time.
    """
    if change.change_type is ChangeType.STANDARD:
        return None
    submitted = None
    for event in change.history:
        if isinstance(event, ChangeSubmitted):
            submitted = event.at
        elif submitted is not None and event.state == _SCHED:
            return event.at - submitted
    return None
