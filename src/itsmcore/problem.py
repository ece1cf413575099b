"""Problem management: the record, its states, its events and its lifecycle table.

A problem is the cause, or potential cause, of one or more incidents; problem management
finds and removes it. ``Problem`` is a record on the engine of :mod:`itsmcore.record`, with
ServiceNow's best-practice states (New, Assess, Root Cause Analysis, Fix in Progress,
Resolved, Closed) and Canceled. Root cause analysis is recorded as data, and a problem whose
cause or workaround is known is a **known error** (:class:`KnownError`). Linking incidents,
posting a workaround to them and looking up known errors are the functions at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Self, TypeVar

import attrs

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
from itsmcore.errors import ValidationError
from itsmcore.events import Event
from itsmcore.priority import Impact, Level, Priority, PriorityMatrix, Urgency
from itsmcore.record import (
    Column,
    Opened,
    applies,
    label,
    member,
    optional_label,
    optional_text,
    state_of,
    text,
    verb,
)
from itsmcore.workflow import ACTIVE, CANCELED, MET, Transition, Workflow

__all__ = [
    "PROBLEM_WORKFLOW",
    "CauseCategory",
    "KnownError",
    "Problem",
    "ProblemResolution",
    "ProblemState",
    "Technique",
    "communicate_workaround",
    "find_known_errors",
    "incident_cost",
    "link_incidents",
    "problem_workflow",
]


class ProblemState(StrEnum):
    """Where a problem is (ServiceNow's best-practice model)."""

    NEW = "new"
    ASSESS = "assess"
    ROOT_CAUSE_ANALYSIS = "root_cause_analysis"
    FIX_IN_PROGRESS = "fix_in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELED = "canceled"


class ProblemResolution(StrEnum):
    """How a problem ended."""

    FIX_APPLIED = "fix_applied"
    RISK_ACCEPTED = "risk_accepted"
    DUPLICATE = "duplicate"
    CANCELED = "canceled"


class Technique(StrEnum):
    """Root-cause-analysis techniques in common use."""

    FIVE_WHYS = "five_whys"
    ISHIKAWA = "ishikawa"
    KEPNER_TREGOE = "kepner_tregoe"
    FAULT_TREE = "fault_tree"
    CHANGE_ANALYSIS = "change_analysis"
    FREE_TEXT = "free_text"


class CauseCategory(StrEnum):
    """Ishikawa's (fishbone) cause categories."""

    PEOPLE = "people"
    PROCESS = "process"
    TECHNOLOGY = "technology"
    SUPPLIER = "supplier"
    ENVIRONMENT = "environment"


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class ProblemOpened(Opened):
    """A problem was logged (from an incident, a trend report, or by hand)."""

    type: ClassVar[str] = "problem.opened"
    title: str
    description: str
    symptom: str | None
    service: str | None
    ci: str | None
    category: str | None
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool


@attrs.frozen(kw_only=True)
class ProblemMoved(Event):
    """A step that only moves the problem: assess, confirm, complete."""

    type: ClassVar[str] = "problem.moved"
    step: str


@attrs.frozen(kw_only=True)
class AnalysisRecorded(Event):
    """Findings of a root cause analysis, with the technique used."""

    type: ClassVar[str] = "problem.analysis_recorded"
    technique: Technique
    findings: str
    root_cause: str | None = None
    root_cause_ci: str | None = None
    contributing_factors: tuple[str, ...] = ()
    categories: tuple[CauseCategory, ...] = ()
    """Ishikawa's categories the findings fall in."""


@attrs.frozen(kw_only=True)
class FixStarted(Event):
    """The root cause is known; a permanent fix is being built."""

    type: ClassVar[str] = "problem.fix_started"
    root_cause: str
    root_cause_ci: str | None = None


@attrs.frozen(kw_only=True)
class WorkaroundRecorded(Event):
    """A workaround: how the desk restores service until the fix."""

    type: ClassVar[str] = "problem.workaround_recorded"
    workaround: str


@attrs.frozen(kw_only=True)
class ProblemResolved(Event):
    """The fix was applied; waiting for confirmation that the incidents stopped."""

    type: ClassVar[str] = "problem.resolved"
    fix: str | None
    change: str | None


@attrs.frozen(kw_only=True)
class Reanalyzed(Event):
    """Back to root cause analysis: the fix did not work, or the cause was wrong."""

    type: ClassVar[str] = "problem.reanalyzed"
    reason: str


@attrs.frozen(kw_only=True)
class RiskAccepted(Event):
    """Closed without a fix: it costs more than the incidents it would prevent."""

    type: ClassVar[str] = "problem.risk_accepted"
    reason: str


@attrs.frozen(kw_only=True)
class MarkedDuplicate(Event):
    """Closed as a duplicate of the surviving problem."""

    type: ClassVar[str] = "problem.duplicate"
    of: str


@attrs.frozen(kw_only=True)
class ProblemAssigned(Assigned):
    """The problem was routed."""

    type: ClassVar[str] = "problem.assigned"


@attrs.frozen(kw_only=True)
class ProblemReprioritized(Reprioritized):
    """Impact, urgency or priority changed."""

    type: ClassVar[str] = "problem.reprioritized"


@attrs.frozen(kw_only=True)
class ProblemCommented(Commented):
    """A comment or work note."""

    type: ClassVar[str] = "problem.commented"


@attrs.frozen(kw_only=True)
class ProblemLinked(Linked):
    """The problem now points at an incident, change or article."""

    type: ClassVar[str] = "problem.linked"


@attrs.frozen(kw_only=True)
class ProblemUnlinked(Unlinked):
    """The problem no longer points at that record."""

    type: ClassVar[str] = "problem.unlinked"


@attrs.frozen(kw_only=True)
class ProblemCanceled(Canceled):
    """Withdrawn: not a problem after all."""

    type: ClassVar[str] = "problem.canceled"


@attrs.frozen(kw_only=True)
class ProblemUpdated(FieldsUpdated):
    """Descriptive fields were edited."""

    type: ClassVar[str] = "problem.updated"


# --------------------------------------------------------------------------- lifecycle

_NEW, _ASSESS = ProblemState.NEW, ProblemState.ASSESS
_RCA, _FIX = ProblemState.ROOT_CAUSE_ANALYSIS, ProblemState.FIX_IN_PROGRESS
_RESOLVED, _CLOSED, _CANCELED = ProblemState.RESOLVED, ProblemState.CLOSED, ProblemState.CANCELED
_OPEN: Final = (_NEW, _ASSESS, _RCA, _FIX)


def problem_workflow(*, name: str = "problem") -> Workflow:
    """The problem lifecycle: assess, confirm, fix, resolve, complete; re-analyse; give up.

    Re-analysis goes back from Fix in Progress or Resolved to Root Cause Analysis; risk is
    accepted from Root Cause Analysis or Fix in Progress (straight to Closed); a problem is
    canceled, or closed as a duplicate, from any state before Resolved. Tags: the four open
    states are ``active``, Resolved and Closed ``met``, Canceled ``canceled``.
    """
    return Workflow(
        name=name,
        states=tuple(ProblemState),
        initial=_NEW,
        terminal=(_CLOSED, _CANCELED),
        transitions=(
            Transition("assess", _NEW, _ASSESS),
            Transition("confirm", _ASSESS, _RCA),
            Transition("fix", _RCA, _FIX),
            Transition("resolve", _FIX, _RESOLVED),
            Transition("complete", _RESOLVED, _CLOSED),
            Transition("reanalyze", (_FIX, _RESOLVED), _RCA),
            Transition("accept_risk", (_RCA, _FIX), _CLOSED),
            Transition("cancel", _OPEN, _CANCELED),
            Transition("mark_duplicate", _OPEN, _CLOSED),
            Transition("analyze", (_ASSESS, _RCA, _FIX)),
            Transition("record_workaround", (_ASSESS, _RCA, _FIX, _RESOLVED)),
            Transition("assign", (*_OPEN, _RESOLVED)),
            Transition("reprioritize", _OPEN),
            Transition("comment", (*_OPEN, _RESOLVED)),
            Transition("link", (*_OPEN, _RESOLVED)),
            Transition("unlink", (*_OPEN, _RESOLVED)),
            Transition("update", (*_OPEN, _RESOLVED)),
        ),
        tags={ACTIVE: _OPEN, MET: (_RESOLVED, _CLOSED), CANCELED: (_CANCELED,)},
    )


PROBLEM_WORKFLOW: Final = problem_workflow()
"""The default problem lifecycle."""


@attrs.frozen
class KnownError:
    """What the desk needs from a problem whose cause or workaround is known (the KEDB)."""

    problem: str
    title: str
    symptom: str | None
    root_cause: str | None
    workaround: str | None
    ci: str | None
    service: str | None


# --------------------------------------------------------------------------- the record


@attrs.frozen(kw_only=True, slots=False)
class Problem(Assignable, Prioritized, Commentable, Linkable, Cancelable, Editable):
    """A problem record: the cause of incidents, its analysis, its fix and how it ended."""

    kind: ClassVar[str] = "problem"
    number_prefix: ClassVar[str | None] = "PRB"
    state_enum: ClassVar[type[StrEnum]] = ProblemState
    default_workflow: ClassVar[Workflow] = PROBLEM_WORKFLOW
    link_fields: ClassVar[Mapping[str, str]] = {
        "incident": "incidents",
        "change": "changes",
        "knowledge": "knowledge",
    }
    editable: ClassVar[tuple[str, ...]] = (
        "title", "description", "symptom", "category", "service", "ci",
    )  # fmt: skip
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("problem")),
        Column("priority", int, parse=lambda v: int(Priority.parse(v))),
        Column("assignment_group", str),
        Column("service", str),
        Column("ci", str),
        Column("root_cause_ci", str),
        Column("known_error", int, parse=lambda v: int(v) if isinstance(v, bool) else v),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    title: str
    description: str = ""
    symptom: str | None = None
    service: str | None = None
    ci: str | None = None
    category: str | None = None
    root_cause: str | None = None
    root_cause_ci: str | None = None
    analyses: tuple[AnalysisRecorded, ...] = ()
    """Every analysis recorded, oldest first."""
    workaround: str | None = None
    fix_description: str | None = None
    """How the cause was fixed (when resolved as fix applied)."""
    resolution: ProblemResolution | None = None
    resolution_reason: str | None = None
    duplicate_of: str | None = None
    reanalysis_count: int = 0
    incidents: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    knowledge: tuple[str, ...] = ()

    @property
    def known_error(self) -> bool:
        """Whether its root cause or a workaround is known, while it is not yet fixed."""
        fixed = self.state in (_RESOLVED, _CLOSED, _CANCELED)
        return not fixed and (self.root_cause is not None or self.workaround is not None)

    def as_known_error(self) -> KnownError | None:
        """Its known-error entry, or ``None`` when it is not a known error."""
        if not self.known_error:
            return None
        return KnownError(
            self.id, self.title, self.symptom, self.root_cause, self.workaround, self.ci,
            self.service,
        )  # fmt: skip

    @classmethod
    def open(
        cls,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        title: str,
        impact: Level | str | int,
        urgency: Level | str | int,
        at: datetime,
        by: str,
        description: str = "",
        symptom: str | None = None,
        service: str | None = None,
        ci: str | None = None,
        category: str | None = None,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = DEFAULT_MATRIX,
        workflow: Workflow = PROBLEM_WORKFLOW,
    ) -> Self:
        """Log a problem; its priority follows from impact and urgency as an incident's does."""
        workflow = cls._workflow(workflow)
        event = ProblemOpened(
            at=at,
            by=by,
            state=workflow.initial,
            workflow=workflow.name,
            id=label(id, "id"),
            title=text(title, "title"),
            description=text(description, "description") if description else "",
            symptom=optional_text(symptom, "symptom"),
            service=optional_label(service, "service"),
            ci=optional_label(ci, "ci"),
            category=optional_label(category, "category"),
            **cls._priority_fields(impact, urgency, priority, matrix),
        )
        return cls._opened(event, workflow)

    # ----------------------------------------------------------------------- verbs

    @verb
    def assess(self, *, at: datetime, by: str) -> Self:
        """New → Assess: a coordinator checks it is valid and not a duplicate."""
        return self._do("assess", ProblemMoved, at, by, step="assess")

    @verb
    def confirm(self, *, at: datetime, by: str) -> Self:
        """Assess → Root Cause Analysis: it is a problem worth investigating."""
        return self._do("confirm", ProblemMoved, at, by, step="confirm")

    @verb
    def analyze(
        self,
        *,
        technique: Technique | str,
        findings: str,
        at: datetime,
        by: str,
        root_cause: str | None = None,
        root_cause_ci: str | None = None,
        contributing_factors: Iterable[str] = (),
        categories: Iterable[CauseCategory | str] = (),
    ) -> Self:
        """Record an analysis: technique, findings, and the root cause once it is found."""
        if isinstance(contributing_factors, str) or isinstance(categories, str):
            raise ValidationError("contributing_factors and categories are collections")
        return self._do(
            "analyze",
            AnalysisRecorded,
            at,
            by,
            technique=member(Technique, technique, "technique"),
            findings=text(findings, "findings"),
            root_cause=optional_text(root_cause, "root_cause"),
            root_cause_ci=optional_label(root_cause_ci, "root_cause_ci"),
            contributing_factors=tuple(
                text(f, "contributing factor") for f in contributing_factors
            ),
            categories=tuple(member(CauseCategory, c, "cause category") for c in categories),
        )

    @verb
    def fix(self, *, at: datetime, by: str, root_cause: str | None = None,
            root_cause_ci: str | None = None) -> Self:  # fmt: skip
        """Root Cause Analysis → Fix in Progress; the root cause is recorded now if not before.

        Raises:
            ValidationError: no root cause given or recorded by an analysis.
        """
        self._check("fix", at)  # the lifecycle first: a fix may not be possible at all now
        cause = optional_text(root_cause, "root_cause") or self.root_cause
        if cause is None:
            raise ValidationError(
                f"{self.id}: a fix needs its root cause: pass root_cause= or record it with "
                "analyze(root_cause=...)"
            )
        return self._do(
            "fix",
            FixStarted,
            at,
            by,
            root_cause=cause,
            root_cause_ci=optional_label(root_cause_ci, "root_cause_ci") or self.root_cause_ci,
        )

    @verb
    def record_workaround(self, *, workaround: str, at: datetime, by: str) -> Self:
        """Record how the desk restores service meanwhile: it makes the problem a known error."""
        return self._do(
            "record_workaround", WorkaroundRecorded, at, by,
            workaround=text(workaround, "workaround"),
        )  # fmt: skip

    @verb
    def resolve(
        self, *, at: datetime, by: str, fix: str | None = None, change: str | None = None
    ) -> Self:
        """Fix in Progress → Resolved (fix applied): describe the fix or name its change.

        Raises:
            ValidationError: saying what is missing: a root cause, or a fix description or
                linked change.
        """
        self._check("resolve", at)  # the lifecycle first, then what the fix lacks
        missing = []
        if self.root_cause is None:
            missing.append("a root cause (analyze(root_cause=...) or fix(root_cause=...))")
        fix_text = optional_text(fix, "fix")
        change_id = optional_label(change, "change")
        if fix_text is None and change_id is None and not self.changes:
            missing.append("a fix description (fix=...) or a linked change (change=...)")
        if missing:
            raise ValidationError(
                f"{self.id} cannot be resolved as fixed without " + " and ".join(missing)
            )
        return self._do("resolve", ProblemResolved, at, by, fix=fix_text, change=change_id)

    @verb
    def complete(self, *, at: datetime, by: str) -> Self:
        """Resolved → Closed: the incidents stopped; closed as fix applied."""
        return self._do("complete", ProblemMoved, at, by, step="complete")

    @verb
    def reanalyze(self, *, reason: str, at: datetime, by: str) -> Self:
        """Back to Root Cause Analysis: the fix did not work, or the cause was wrong."""
        return self._do("reanalyze", Reanalyzed, at, by, reason=text(reason, "reason"))

    @verb
    def accept_risk(self, *, reason: str, at: datetime, by: str) -> Self:
        """Closed without a fix, the fix costing more than the incidents; a reason is needed."""
        return self._do("accept_risk", RiskAccepted, at, by, reason=text(reason, "reason"))

    @verb
    def mark_duplicate(self, *, of: str, at: datetime, by: str) -> Self:
        """Closed as a duplicate of the surviving problem ``of``."""
        survivor = label(of, "of")
        if survivor == self.id:
            raise ValidationError(f"{self.id} cannot duplicate itself")
        return self._do("mark_duplicate", MarkedDuplicate, at, by, of=survivor)

    # ----------------------------------------------------------------------- appliers

    @applies(ProblemMoved, sets=("resolution",))
    def _on_moved(self, e: ProblemMoved) -> Mapping[str, Any]:
        if e.step == "complete":
            return {"resolution": ProblemResolution.FIX_APPLIED}
        return _NOTHING

    @applies(AnalysisRecorded, sets=("analyses", "root_cause", "root_cause_ci"))
    def _on_analysis(self, e: AnalysisRecorded) -> Mapping[str, Any]:
        out: dict[str, Any] = {"analyses": (*self.analyses, e)}
        if e.root_cause is not None:
            out["root_cause"] = e.root_cause
        if e.root_cause_ci is not None:
            out["root_cause_ci"] = e.root_cause_ci
        return out

    @applies(FixStarted, sets=("root_cause", "root_cause_ci"))
    def _on_fix_started(self, e: FixStarted) -> Mapping[str, Any]:
        return {"root_cause": e.root_cause, "root_cause_ci": e.root_cause_ci}

    @applies(WorkaroundRecorded, sets=("workaround",))
    def _on_workaround(self, e: WorkaroundRecorded) -> Mapping[str, Any]:
        return {"workaround": e.workaround}

    @applies(ProblemResolved, sets=("fix_description", "changes"))
    def _on_resolved(self, e: ProblemResolved) -> Mapping[str, Any]:
        changes = self.changes
        if e.change is not None and e.change not in changes:
            changes = (*changes, e.change)
        return {"fix_description": e.fix, "changes": changes}

    @applies(Reanalyzed, sets=("fix_description", "resolution", "reanalysis_count"))
    def _on_reanalyzed(self, _e: Reanalyzed) -> Mapping[str, Any]:
        return {
            "fix_description": None,
            "resolution": None,
            "reanalysis_count": self.reanalysis_count + 1,
        }

    @applies(RiskAccepted, sets=("resolution", "resolution_reason"))
    def _on_risk_accepted(self, e: RiskAccepted) -> Mapping[str, Any]:
        return {"resolution": ProblemResolution.RISK_ACCEPTED, "resolution_reason": e.reason}

    @applies(MarkedDuplicate, sets=("resolution", "duplicate_of"))
    def _on_duplicate(self, e: MarkedDuplicate) -> Mapping[str, Any]:
        return {"resolution": ProblemResolution.DUPLICATE, "duplicate_of": e.of}

    @applies(ProblemCanceled, sets=("resolution", "resolution_reason"))
    def _on_problem_canceled(self, e: ProblemCanceled) -> Mapping[str, Any]:
        return {"resolution": ProblemResolution.CANCELED, "resolution_reason": e.reason}


_NOTHING: Final[Mapping[str, Any]] = {}


# --------------------------------------------------------------------------- across records
# Incidents are any records that link to problems and take comments: this module does not
# import the incident practice (practices sit side by side in the layer map).

_I = TypeVar("_I", bound=Linkable)


def _problems_of(record: Linkable) -> tuple[str, ...]:
    field = record.link_fields.get("problem")
    if field is None:
        raise ValidationError(f"{type(record).__name__} records do not link to problems")
    linked: tuple[str, ...] = getattr(record, field)
    return linked


def link_incidents(
    problem: Problem, incidents: Iterable[_I], *, at: datetime, by: str
) -> tuple[Problem, list[_I]]:
    """Link incidents to the problem they come from (many incidents, one problem).

    The problem gains a link to each incident, and each incident one to the problem (an
    incident already linked is left as it is). A closed or canceled incident is read-only:
    the problem still records it (what a recurrence report finds is mostly closed), and the
    incident is returned unchanged. Returns the updated problem and incidents.
    """
    out = []
    for incident in incidents:
        if incident.id not in problem.incidents:
            problem = problem.link(kind="incident", target=incident.id, at=at, by=by)
        if problem.id not in _problems_of(incident) and "link" in incident.workflow.allowed(
            incident
        ):
            incident = incident.link(kind="problem", target=problem.id, at=at, by=by)  # noqa: PLW2901
        out.append(incident)
    return problem, out


def communicate_workaround(
    problem: Problem, incidents: Iterable[_I], *, at: datetime, by: str
) -> list[_I]:
    """Post the problem's workaround to every linked incident still open (one note each).

    Incidents not linked to the problem, or no longer active, are returned unchanged.
    """
    if problem.workaround is None:
        raise ValidationError(f"{problem.id} has no workaround to communicate yet")
    note = f"Workaround from problem {problem.id} ({problem.title}): {problem.workaround}"
    out: list[_I] = []
    for incident in incidents:
        if incident.id in problem.incidents and incident.is_active:
            if not isinstance(incident, Commentable):
                raise ValidationError(f"{type(incident).__name__} records take no comments")
            incident = incident.comment(text=note, at=at, by=by)  # noqa: PLW2901
        out.append(incident)
    return out


def incident_cost(
    problem: Problem, incidents: Iterable[_I], cost: Callable[[_I], float]
) -> tuple[int, float]:
    """How many of ``incidents`` the problem explains, and what they cost by ``cost``."""
    linked = [i for i in incidents if i.id in problem.incidents]
    return len(linked), sum(cost(i) for i in linked)


_WORD: Final = re.compile(r"[a-z0-9]+")


def find_known_errors(
    problems: Iterable[Problem],
    *,
    ci: str | None = None,
    service: str | None = None,
    symptom: str | None = None,
) -> list[KnownError]:
    """The known errors matching a CI, a service, and the words of a symptom.

    Symptom words match the known error's symptom, title and root cause, case and order
    aside; the known errors sharing the most words come first.
    """
    words = set(_WORD.findall(symptom.lower())) if symptom else set()
    found: list[tuple[int, KnownError]] = []
    for problem in problems:
        entry = problem.as_known_error()
        if entry is None:
            continue
        if ci is not None and ci not in (entry.ci, problem.root_cause_ci):
            continue
        if service is not None and entry.service != service:
            continue
        text_ = " ".join(filter(None, (entry.symptom, entry.title, entry.root_cause))).lower()
        shared = len(words & set(_WORD.findall(text_)))
        if words and not shared:
            continue
        found.append((shared, entry))
    found.sort(key=lambda pair: -pair[0])
    return [entry for _, entry in found]
