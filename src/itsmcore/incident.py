"""Incident management: the record, its states, its events and its lifecycle table.

An incident is an unplanned interruption of a service; the practice restores service as fast
as possible. ``Incident`` is a frozen record: every verb (``assign``, ``hold``, ``resolve`` …)
returns a new record with one more event in ``history``, checked against the incident
``Workflow``. The semantics follow ServiceNow's incident state model, the de-facto reference.
"""

# The batch and family functions below are part of this module's record logic and use its
# private engine (_do, _apply) on purpose.
# ruff: noqa: SLF001

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeVar

import attrs

from itsmcore._time import require_aware
from itsmcore.errors import ValidationError
from itsmcore.events import Event, StateChanged, utc
from itsmcore.priority import Impact, Priority, PriorityMatrix, Urgency
from itsmcore.workflow import Guard, Transition, Workflow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from itsmcore.calendar import BusinessCalendar

__all__ = [
    "INCIDENT_WORKFLOW",
    "Channel",
    "EscalationKind",
    "HoldReason",
    "Incident",
    "IncidentState",
    "LinkKind",
    "MajorState",
    "ResolutionCode",
    "auto_close",
    "auto_close_due",
    "close_family",
    "incident_workflow",
    "link_child",
    "resolve_family",
]


class IncidentState(StrEnum):
    """Where an incident is in its life (ServiceNow's codes in brackets)."""

    NEW = "new"  # (1) logged, not yet investigated
    IN_PROGRESS = "in_progress"  # (2) assigned and being worked
    ON_HOLD = "on_hold"  # (3) waiting on someone else; a hold reason is required
    RESOLVED = "resolved"  # (6) service restored; code and notes are required
    CLOSED = "closed"  # (7) confirmed, read-only
    CANCELED = "canceled"  # (8) logged in error or a duplicate, read-only


class HoldReason(StrEnum):
    """Why an incident waits. Awaiting the caller ends by itself when the caller responds."""

    AWAITING_CALLER = "awaiting_caller"
    AWAITING_CHANGE = "awaiting_change"
    AWAITING_PROBLEM = "awaiting_problem"
    AWAITING_VENDOR = "awaiting_vendor"


class Channel(StrEnum):
    """How the incident reached the service desk."""

    PHONE = "phone"
    EMAIL = "email"
    PORTAL = "portal"
    CHAT = "chat"
    WALK_IN = "walk_in"
    MONITORING = "monitoring"


class ResolutionCode(StrEnum):
    """The default resolution codes (ServiceNow's current list).

    Pass your own set to :func:`incident_workflow` to use others.
    """

    SOLUTION_PROVIDED = "solution_provided"
    WORKAROUND_PROVIDED = "workaround_provided"
    KNOWN_ERROR = "known_error"
    DUPLICATE = "duplicate"
    RESOLVED_BY_CALLER = "resolved_by_caller"
    RESOLVED_BY_CHANGE = "resolved_by_change"
    RESOLVED_BY_PROBLEM = "resolved_by_problem"
    USER_ERROR = "user_error"
    NO_RESOLUTION_PROVIDED = "no_resolution_provided"


class MajorState(StrEnum):
    """The major-incident procedure: a candidate is proposed, then accepted or rejected."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class EscalationKind(StrEnum):
    """Functional: to a group with more expertise (L1 → L2 → L3). Hierarchical: to management."""

    FUNCTIONAL = "functional"
    HIERARCHICAL = "hierarchical"


class LinkKind(StrEnum):
    """Records an incident can point at, by id."""

    PROBLEM = "problem"
    CHANGE = "change"
    KNOWLEDGE = "knowledge"


# --------------------------------------------------------------------------- value checks


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


_E = TypeVar("_E", bound=StrEnum)


def _member(kind: type[_E], value: object, name: str) -> _E:
    if isinstance(value, kind):
        return value
    try:
        return kind(value.strip().lower().replace(" ", "_").replace("-", "_"))  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        allowed = ", ".join(m.value for m in kind)
        raise ValidationError(f"unknown {name} {value!r}; use one of: {allowed}") from None


_STATES: Final[dict[str, str]] = {s.value: s for s in IncidentState}


def _state(value: str) -> str:
    """Known states as ``IncidentState`` members; a custom workflow's states stay strings."""
    return _STATES.get(value, value)


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class IncidentOpened(Event):
    """An incident was logged."""

    type: ClassVar[str] = "incident.opened"
    id: str
    title: str
    description: str
    caller: str
    channel: Channel
    service: str | None
    ci: str | None
    category: str | None
    subcategory: str | None
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool


@attrs.frozen(kw_only=True)
class IncidentAssigned(Event):
    """The incident was routed to a group and/or a person."""

    type: ClassVar[str] = "incident.assigned"
    group: str
    assignee: str | None


@attrs.frozen(kw_only=True)
class IncidentStarted(Event):
    """Work started."""

    type: ClassVar[str] = "incident.started"


@attrs.frozen(kw_only=True)
class IncidentHeld(Event):
    """The incident was put on hold for a reason."""

    type: ClassVar[str] = "incident.held"
    reason: HoldReason


@attrs.frozen(kw_only=True)
class IncidentResumed(Event):
    """Work resumed after a hold."""

    type: ClassVar[str] = "incident.resumed"
    note: str | None = None


@attrs.frozen(kw_only=True)
class IncidentResolved(Event):
    """Service was restored."""

    type: ClassVar[str] = "incident.resolved"
    code: str
    notes: str
    parent: str | None = None
    """Set when the resolution was copied from the parent incident."""


@attrs.frozen(kw_only=True)
class IncidentReopened(Event):
    """A resolved incident came back: the fix did not hold."""

    type: ClassVar[str] = "incident.reopened"
    reason: str


@attrs.frozen(kw_only=True)
class IncidentClosed(Event):
    """The resolution was confirmed; the record is now read-only."""

    type: ClassVar[str] = "incident.closed"
    automatic: bool = False
    parent: str | None = None


@attrs.frozen(kw_only=True)
class IncidentCanceled(Event):
    """The incident was logged in error or duplicates another."""

    type: ClassVar[str] = "incident.canceled"
    reason: str


@attrs.frozen(kw_only=True)
class IncidentEscalated(Event):
    """Functional escalation (to ``group``, one tier up) or hierarchical (to a ``manager``)."""

    type: ClassVar[str] = "incident.escalated"
    kind: EscalationKind
    reason: str
    group: str | None = None
    assignee: str | None = None
    manager: str | None = None


@attrs.frozen(kw_only=True)
class IncidentReprioritized(Event):
    """Impact, urgency or an explicit priority changed."""

    type: ClassVar[str] = "incident.reprioritized"
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool
    reason: str


@attrs.frozen(kw_only=True)
class IncidentCommented(Event):
    """A comment or work note was added."""

    type: ClassVar[str] = "incident.commented"
    text: str
    from_caller: bool = False


@attrs.frozen(kw_only=True)
class MajorIncidentChanged(Event):
    """The major-incident procedure moved: proposed, accepted or rejected."""

    type: ClassVar[str] = "incident.major"
    major: MajorState
    reason: str | None = None


@attrs.frozen(kw_only=True)
class IncidentLinked(Event):
    """The incident now points at a problem, change, knowledge article, parent or child."""

    type: ClassVar[str] = "incident.linked"
    kind: str
    target: str


def _first_event(events: Iterable[Event]) -> IncidentOpened:
    first = next(iter(events), None)
    if not isinstance(first, IncidentOpened):
        raise ValidationError(f"an incident history starts with an opening, not {first!r}")
    return first


# --------------------------------------------------------------------------- lifecycle


def _resolution_code_in(codes: Iterable[str]) -> Guard:
    allowed = frozenset(str(c) for c in codes)

    def resolution_code(_record: Any, context: Mapping[str, Any]) -> str | None:
        code = context.get("code")
        if code in allowed:
            return None
        return f"{code!r} is not a resolution code; use one of: {', '.join(sorted(allowed))}"

    return resolution_code


def _major_proposable(record: Any, _context: Mapping[str, Any]) -> str | None:
    if record.major in (MajorState.PROPOSED, MajorState.ACCEPTED):
        return f"it is already {record.major.value}"
    return None


def _major_proposed(record: Any, _context: Mapping[str, Any]) -> str | None:
    return None if record.major is MajorState.PROPOSED else "it has not been proposed"


_ACTIVE: Final = (IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD)
_NEW, _WORK, _HOLD = IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD
_RESOLVED = IncidentState.RESOLVED


def incident_workflow(resolution_codes: Iterable[str] = tuple(ResolutionCode)) -> Workflow:
    """The incident lifecycle, with the resolution codes a desk accepts.

    Rows follow ServiceNow: work starts from New; New and In Progress go on hold and come
    back; New (first-contact fix) and In Progress resolve; Resolved reopens to In Progress or
    closes; New and In Progress cancel; Closed and Canceled are final. Actions (assign,
    escalate, reprioritise, comment, link, the major-incident steps) keep the state and are
    allowed while the incident is active; comments and links also once resolved.
    """
    return Workflow(
        name="incident",
        states=tuple(IncidentState),
        initial=_NEW,
        terminal=(IncidentState.CLOSED, IncidentState.CANCELED),
        transitions=(
            Transition("start", _NEW, _WORK),
            Transition("hold", (_NEW, _WORK), _HOLD),
            Transition("resume", _HOLD, _WORK),
            Transition(
                "resolve", (_NEW, _WORK), _RESOLVED, (_resolution_code_in(resolution_codes),)
            ),
            Transition("reopen", _RESOLVED, _WORK),
            Transition("close", _RESOLVED, IncidentState.CLOSED),
            Transition("cancel", (_NEW, _WORK), IncidentState.CANCELED),
            Transition("assign", _ACTIVE),
            Transition("escalate", _ACTIVE),
            Transition("reprioritize", _ACTIVE),
            Transition("comment", (*_ACTIVE, _RESOLVED)),
            Transition("link", (*_ACTIVE, _RESOLVED)),
            Transition("propose_major", _ACTIVE, guards=(_major_proposable,)),
            Transition("accept_major", _ACTIVE, guards=(_major_proposed,)),
            Transition("reject_major", _ACTIVE, guards=(_major_proposed,)),
        ),
    )


INCIDENT_WORKFLOW: Final = incident_workflow()
"""The default incident lifecycle."""

_DEFAULT_MATRIX: Final = PriorityMatrix.itil_default()


# --------------------------------------------------------------------------- the record


# Not slotted: _apply copies the instance dict in one C call, several times faster than
# attrs.evolve re-running __init__ over every field on each of a record's many events.
@attrs.frozen(kw_only=True, slots=False)
class Incident:
    """An incident record: its current fields and the history that produced them.

    Build one with :meth:`open`; change it with its verbs, each of which takes keyword-only
    ``at=`` (an aware datetime, never before the previous event) and ``by=`` (who acts) and
    returns a new record. ``version`` equals ``len(history)``, and :meth:`replay` rebuilds an
    equal record from the history alone.
    """

    id: str
    title: str
    description: str = ""
    caller: str
    opened_by: str
    channel: Channel
    service: str | None = None
    ci: str | None = None
    category: str | None = None
    subcategory: str | None = None
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool = False
    state: str = IncidentState.NEW
    hold_reason: HoldReason | None = None
    assignment_group: str | None = None
    assignee: str | None = None
    first_assignee: str | None = None
    reassignment_count: int = 0
    tier: int = 1
    """Support tier: 1 for the service desk, one more per functional escalation."""
    hierarchical_escalations: int = 0
    opened_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    closed_at: datetime | None = None
    resolution_code: str | None = None
    resolution_notes: str | None = None
    reopen_count: int = 0
    major: MajorState | None = None
    parent: str | None = None
    children: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    knowledge: tuple[str, ...] = ()
    history: tuple[Event, ...] = ()
    workflow: Workflow = attrs.field(default=INCIDENT_WORKFLOW, eq=False, repr=False)
    """The lifecycle this record's verbs are checked against (not part of its identity)."""

    @property
    def version(self) -> int:
        """How many events the record has seen: the optimistic-concurrency token."""
        return len(self.history)

    @property
    def updated_at(self) -> datetime:
        """When the last event happened."""
        return self.history[-1].at

    @property
    def is_active(self) -> bool:
        """Whether work on the incident is still to be done (not resolved, closed or canceled)."""
        return self.state in _ACTIVE

    @property
    def first_contact_resolution(self) -> bool:
        """Whether the incident was resolved at first contact.

        That is: by the first assignee (or, never assigned, by whoever logged it), with no
        reassignment, no functional escalation and no reopening.
        """
        if self.resolved_by is None or self.state not in (_RESOLVED, IncidentState.CLOSED):
            return False
        first = self.first_assignee or self.opened_by
        return (
            self.resolved_by == first
            and self.reassignment_count == 0
            and self.tier == 1
            and self.reopen_count == 0
        )

    # ----------------------------------------------------------------------- creation

    @classmethod
    def open(
        cls,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        title: str,
        caller: str,
        impact: Impact | str | int,
        urgency: Urgency | str | int,
        at: datetime,
        by: str,
        description: str = "",
        channel: Channel | str = Channel.PORTAL,
        service: str | None = None,
        ci: str | None = None,
        category: str | None = None,
        subcategory: str | None = None,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = _DEFAULT_MATRIX,
        workflow: Workflow = INCIDENT_WORKFLOW,
    ) -> Incident:
        """Log a new incident.

        The priority comes from ``matrix`` (ITIL's impact-by-urgency table by default) unless
        an explicit ``priority`` is given, which is recorded as an override.

        Raises:
            ValidationError: an empty id, title or caller, an unknown channel, impact,
                urgency or priority label, or a naive ``at``.
        """
        impact_, urgency_ = Impact.parse(impact), Urgency.parse(urgency)
        event = IncidentOpened(
            at=require_aware(at, "at"),
            by=by,
            state=workflow.initial,
            id=_text(id, "id"),
            title=_text(title, "title"),
            description=description.strip() if isinstance(description, str) else "",
            caller=_text(caller, "caller"),
            channel=_member(Channel, channel, "channel"),
            service=_optional_text(service, "service"),
            ci=_optional_text(ci, "ci"),
            category=_optional_text(category, "category"),
            subcategory=_optional_text(subcategory, "subcategory"),
            impact=impact_,
            urgency=urgency_,
            priority=matrix.priority(impact_, urgency_)
            if priority is None
            else Priority.parse(priority),
            priority_overridden=priority is not None,
        )
        return cls._from_opened(event, workflow)

    @classmethod
    def _from_opened(cls, event: IncidentOpened, workflow: Workflow) -> Incident:
        # Filled in directly, like _apply: every value comes from a validated event, and
        # replaying many histories spends much of its time building these records.
        record = object.__new__(cls)
        record.__dict__.update(
            _INCIDENT_DEFAULTS,
            id=event.id,
            title=event.title,
            description=event.description,
            caller=event.caller,
            opened_by=event.by,
            channel=event.channel,
            service=event.service,
            ci=event.ci,
            category=event.category,
            subcategory=event.subcategory,
            impact=event.impact,
            urgency=event.urgency,
            priority=event.priority,
            priority_overridden=event.priority_overridden,
            state=_state(event.state),
            opened_at=event.at,
            history=(event,),
            workflow=workflow,
        )
        return record

    @classmethod
    def replay(cls, events: Iterable[Event], *, workflow: Workflow = INCIDENT_WORKFLOW) -> Incident:
        """Rebuild a record from its history alone; the result equals the original record.

        Raises:
            ValidationError: the history is empty, does not start with an opening, or holds
                an event that is not an incident event.
        """
        events = tuple(events)
        record = cls._from_opened(_first_event(events), workflow)
        record._fold(events, None)
        record.__dict__["history"] = events
        return record

    def timeline(self) -> list[tuple[Event, Incident]]:
        """The record as it was after each event of its history, oldest first."""
        steps: list[tuple[Event, Incident]] = []
        self.walk(lambda event, record: steps.append((event, copy.copy(record))))
        return steps

    def walk(self, on_step: Callable[[Event, Incident], object], *, history: bool = True) -> None:
        """Call ``on_step(event, record)`` with the record as it was after each event.

        The record passed is one scratch object updated in place between calls: read it
        during the call, copy it (``copy.copy``) to keep it. This is how SLA clocks are
        evaluated without building a record per event. ``history=False`` skips keeping the
        scratch record's ``history`` (and so ``version``) current, for callers that never
        read them.
        """
        first = _first_event(self.history)
        record = type(self)._from_opened(first, self.workflow)
        on_step(first, record)
        record._fold(self.history, on_step, history=history)

    def _fold(
        self,
        events: Iterable[Event],
        on_step: Callable[[Event, Incident], object] | None,
        *,
        history: bool = True,
    ) -> None:
        """Apply every event after the opening to this (not yet shared) record, in place.

        Building one record per event would cost a copy each time. With ``on_step`` the
        history is kept current and ``on_step`` called after every event; without it the
        caller sets ``history`` once at the end.
        """
        fields = self.__dict__
        stream = iter(events)
        last = next(stream).at
        known_state = _STATES.get
        for event in stream:
            apply = _APPLY.get(type(event))
            if apply is None:
                raise ValidationError(f"{type(event).__name__} is not an incident event")
            if event.at < last:
                raise ValidationError(
                    f"{self.id}: the history goes back in time at {event.type} "
                    f"({event.at.isoformat()} after {last.isoformat()})"
                )
            last = event.at
            fields.update(apply(self, event))
            fields["state"] = known_state(event.state, event.state)
            if on_step is not None:
                if history:
                    fields["history"] = (*fields["history"], event)
                on_step(event, self)

    # ----------------------------------------------------------------------- verbs

    def assign(self, *, group: str, assignee: str | None = None, at: datetime, by: str) -> Self:
        """Route the incident to ``group`` (and optionally a person in it).

        Changing the group or replacing an assignee counts as a reassignment; a first
        assignment, or naming a person within the same group, does not.
        """
        return self._do(
            "assign",
            IncidentAssigned,
            at,
            by,
            group=_text(group, "group"),
            assignee=_optional_text(assignee, "assignee"),
        )

    def start(self, *, at: datetime, by: str) -> Self:
        """Start work: New → In Progress."""
        return self._do("start", IncidentStarted, at, by)

    def hold(self, *, reason: HoldReason | str, at: datetime, by: str) -> Self:
        """Put the incident on hold; a reason is required."""
        return self._do(
            "hold", IncidentHeld, at, by, reason=_member(HoldReason, reason, "hold reason")
        )

    def resume(self, *, at: datetime, by: str, note: str | None = None) -> Self:
        """Take the incident off hold: On Hold → In Progress."""
        return self._do("resume", IncidentResumed, at, by, note=_optional_text(note, "note"))

    def resolve(self, *, code: ResolutionCode | str, notes: str, at: datetime, by: str) -> Self:
        """Record that service is restored; a resolution code and notes are required."""
        return self._do(
            "resolve",
            IncidentResolved,
            at,
            by,
            code=_text(code, "code"),
            notes=_text(notes, "notes"),
        )

    def reopen(self, *, reason: str, at: datetime, by: str) -> Self:
        """The fix did not hold: Resolved → In Progress, counting the reopen."""
        return self._do("reopen", IncidentReopened, at, by, reason=_text(reason, "reason"))

    def close(self, *, at: datetime, by: str) -> Self:
        """Confirm the resolution: Resolved → Closed (read-only from then on)."""
        return self._do("close", IncidentClosed, at, by)

    def cancel(self, *, reason: str, at: datetime, by: str) -> Self:
        """Withdraw an incident logged in error or duplicating another."""
        return self._do("cancel", IncidentCanceled, at, by, reason=_text(reason, "reason"))

    def escalate(
        self,
        *,
        reason: str,
        at: datetime,
        by: str,
        group: str | None = None,
        assignee: str | None = None,
        manager: str | None = None,
    ) -> Self:
        """Escalate functionally or hierarchically; name one of the two targets.

        ``group=`` is functional escalation: one tier up, to more expertise (L1 → L2 → L3).
        ``manager=`` is hierarchical escalation: informing or involving management.
        """
        if (group is None) == (manager is None):
            raise ValidationError(
                "escalate to a group (functional escalation) or to a manager (hierarchical "
                "escalation): name exactly one"
            )
        kind = EscalationKind.FUNCTIONAL if group is not None else EscalationKind.HIERARCHICAL
        if kind is EscalationKind.HIERARCHICAL and assignee is not None:
            raise ValidationError("an assignee goes with a functional escalation to a group")
        return self._do(
            "escalate",
            IncidentEscalated,
            at,
            by,
            kind=kind,
            reason=_text(reason, "reason"),
            group=_optional_text(group, "group"),
            assignee=_optional_text(assignee, "assignee"),
            manager=_optional_text(manager, "manager"),
        )

    def reprioritize(
        self,
        *,
        reason: str,
        at: datetime,
        by: str,
        impact: Impact | str | int | None = None,
        urgency: Urgency | str | int | None = None,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = _DEFAULT_MATRIX,
    ) -> Self:
        """Change impact and/or urgency, or set an explicit priority; a reason is required.

        The priority follows from ``matrix`` unless ``priority`` is given, which is recorded
        as an override.
        """
        impact_ = self.impact if impact is None else Impact.parse(impact)
        urgency_ = self.urgency if urgency is None else Urgency.parse(urgency)
        return self._do(
            "reprioritize",
            IncidentReprioritized,
            at,
            by,
            impact=impact_,
            urgency=urgency_,
            priority=matrix.priority(impact_, urgency_)
            if priority is None
            else Priority.parse(priority),
            priority_overridden=priority is not None,
            reason=_text(reason, "reason"),
        )

    def comment(self, *, text: str, at: datetime, by: str, from_caller: bool = False) -> Self:
        """Add a comment or work note.

        When the caller answers an incident awaiting the caller, the incident goes back to
        In Progress by itself (a second event records that).
        """
        record = self._do(
            "comment", IncidentCommented, at, by, text=_text(text, "text"), from_caller=from_caller
        )
        awaiting = from_caller and record.hold_reason is HoldReason.AWAITING_CALLER
        if awaiting and "resume" in record.workflow.allowed(record):
            return record.resume(at=at, by=by, note="the caller responded")
        return record

    def propose_major(self, *, reason: str, at: datetime, by: str) -> Self:
        """Propose the incident as a major-incident candidate."""
        return self._major("propose_major", MajorState.PROPOSED, at, by, _text(reason, "reason"))

    def accept_major(self, *, at: datetime, by: str) -> Self:
        """Accept a proposed candidate as a major incident (a major-incident manager's call)."""
        return self._major("accept_major", MajorState.ACCEPTED, at, by, None)

    def reject_major(self, *, reason: str, at: datetime, by: str) -> Self:
        """Reject a proposed candidate; it may be proposed again later."""
        return self._major("reject_major", MajorState.REJECTED, at, by, _text(reason, "reason"))

    def _major(
        self, trigger: str, major: MajorState, at: datetime, by: str, reason: str | None
    ) -> Self:
        return self._do(trigger, MajorIncidentChanged, at, by, major=major, reason=reason)

    def link(self, *, kind: LinkKind | str, target: str, at: datetime, by: str) -> Self:
        """Point the incident at a problem, change or knowledge article by id."""
        return self._do(
            "link",
            IncidentLinked,
            at,
            by,
            kind=_member(LinkKind, kind, "link kind"),
            target=_text(target, "target"),
        )

    def fire(self, trigger: str, *, at: datetime, by: str, **data: str) -> Self:
        """Fire any trigger of this record's workflow, e.g. one a customised lifecycle adds.

        The record moves to the trigger's target state and a ``StateChanged`` event records
        the trigger and ``data``. Typed verbs are preferable for the standard triggers, as
        they record richer events and update the matching fields.
        """
        return self._do(
            trigger,
            StateChanged,
            at,
            by,
            trigger=trigger,
            source=str(self.state),
            data=tuple(sorted((k, str(v)) for k, v in data.items())),
        )

    # ----------------------------------------------------------------------- engine

    def _do(
        self, trigger: str, event_class: type[Event], at: datetime, by: str, /, **data: Any
    ) -> Self:
        """Check time and lifecycle, then apply one event; nothing changes on error.

        Positional-only, so event fields named ``kind`` or ``trigger`` pass through ``data``.
        """
        at = utc(at)
        last = self.history[-1].at if self.history else None
        if last is not None and at < last:
            raise ValidationError(
                f"{self.id}: {trigger} at {at.isoformat()} is before the last event "
                f"({last.isoformat()}); a record's time never goes backwards"
            )
        state = self.workflow.target(self, trigger, **data)
        return self._apply(event_class(at=at, by=by, state=state, **data))

    def _apply(self, event: Event) -> Self:
        apply = _APPLY.get(type(event))
        if apply is None:
            raise ValidationError(f"{type(event).__name__} is not an incident event")
        new = object.__new__(type(self))
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.update(apply(self, event))  # values already checked by the verb or the event
        fields["history"] = (*self.history, event)
        fields["state"] = _state(event.state)
        return new


_INCIDENT_DEFAULTS: Final = {
    f.name: f.default for f in attrs.fields(Incident) if f.default is not attrs.NOTHING
}


# ----------------------------------------------------------------- how events change a record


def _on_assigned(record: Incident, e: IncidentAssigned) -> dict[str, Any]:
    moved = record.assignment_group is not None and e.group != record.assignment_group
    replaced = record.assignee is not None and e.assignee not in (None, record.assignee)
    return {
        "assignment_group": e.group,
        "assignee": e.assignee if e.assignee is not None or moved else record.assignee,
        "first_assignee": record.first_assignee or e.assignee,
        "reassignment_count": record.reassignment_count + (moved or replaced),
    }


def _on_held(_record: Incident, e: IncidentHeld) -> dict[str, Any]:
    return {"hold_reason": e.reason}


def _off_hold(_record: Incident, _e: Event) -> dict[str, Any]:
    return {"hold_reason": None}


def _on_resolved(_record: Incident, e: IncidentResolved) -> dict[str, Any]:
    return {
        "hold_reason": None,
        "resolved_at": e.at,
        "resolved_by": e.by,
        "resolution_code": e.code,
        "resolution_notes": e.notes,
    }


def _on_reopened(record: Incident, _e: IncidentReopened) -> dict[str, Any]:
    return {
        "resolved_at": None,
        "resolved_by": None,
        "resolution_code": None,
        "resolution_notes": None,
        "reopen_count": record.reopen_count + 1,
    }


def _on_closed(_record: Incident, e: IncidentClosed) -> dict[str, Any]:
    return {"closed_at": e.at}


def _on_escalated(record: Incident, e: IncidentEscalated) -> dict[str, Any]:
    if e.kind is EscalationKind.HIERARCHICAL:
        return {"hierarchical_escalations": record.hierarchical_escalations + 1}
    return {"assignment_group": e.group, "assignee": e.assignee, "tier": record.tier + 1}


def _on_reprioritized(_record: Incident, e: IncidentReprioritized) -> dict[str, Any]:
    return {
        "impact": e.impact,
        "urgency": e.urgency,
        "priority": e.priority,
        "priority_overridden": e.priority_overridden,
    }


def _on_major(_record: Incident, e: MajorIncidentChanged) -> dict[str, Any]:
    return {"major": e.major}


_LINK_FIELDS: Final = {"problem": "problems", "change": "changes", "knowledge": "knowledge"}


def _on_linked(record: Incident, e: IncidentLinked) -> dict[str, Any]:
    if e.kind == "parent":
        return {"parent": e.target}
    if e.kind == "child":
        return {"children": record.children | {e.target}}
    name = _LINK_FIELDS[e.kind]
    current: tuple[str, ...] = getattr(record, name)
    return {name: current if e.target in current else (*current, e.target)}


def _nothing(_record: Incident, _e: Event) -> dict[str, Any]:
    return {}


_APPLY: Final[dict[type[Event], Callable[[Incident, Any], dict[str, Any]]]] = {
    IncidentAssigned: _on_assigned,
    IncidentStarted: _nothing,
    IncidentHeld: _on_held,
    IncidentResumed: _off_hold,
    IncidentResolved: _on_resolved,
    IncidentReopened: _on_reopened,
    IncidentClosed: _on_closed,
    IncidentCanceled: _off_hold,
    IncidentEscalated: _on_escalated,
    IncidentReprioritized: _on_reprioritized,
    IncidentCommented: _nothing,
    MajorIncidentChanged: _on_major,
    IncidentLinked: _on_linked,
    StateChanged: _nothing,
}


# --------------------------------------------------------------------------- families and batches


def link_child(
    parent: Incident, child: Incident, *, at: datetime, by: str
) -> tuple[Incident, Incident]:
    """Make ``child`` a child of ``parent`` (many callers reporting one outage).

    Returns the updated ``(parent, child)``; both records gain an event.
    """
    if child.id == parent.id:
        raise ValidationError(f"{parent.id} cannot be its own child")
    if child.parent is not None and child.parent != parent.id:
        raise ValidationError(f"{child.id} already has a parent, {child.parent}")
    if parent.parent is not None:
        raise ValidationError(f"{parent.id} is itself a child of {parent.parent}; link to the top")
    new_parent = parent._do("link", IncidentLinked, at, by, kind="child", target=child.id)
    new_child = child._do("link", IncidentLinked, at, by, kind="parent", target=parent.id)
    return new_parent, new_child


def _family(parent: Incident, children: Iterable[Incident]) -> list[Incident]:
    kids = list(children)
    strangers = [c.id for c in kids if c.parent != parent.id or c.id not in parent.children]
    if strangers:
        raise ValidationError(f"{', '.join(strangers)} are not children of {parent.id}")
    return kids


def _cascade_resolve(child: Incident, parent: Incident, at: datetime, by: str) -> Incident:
    if child.state is IncidentState.ON_HOLD:
        child = child.resume(at=at, by=by, note=f"resolving with parent {parent.id}")
    if child.is_active:
        child = child._do(
            "resolve",
            IncidentResolved,
            at,
            by,
            code=parent.resolution_code,
            notes=f"Resolved with parent incident {parent.id}: {parent.resolution_notes}",
            parent=parent.id,
        )
    return child


def resolve_family(
    parent: Incident,
    children: Iterable[Incident],
    *,
    code: ResolutionCode | str,
    notes: str,
    at: datetime,
    by: str,
) -> tuple[Incident, list[Incident]]:
    """Resolve ``parent`` and every open child with the parent's resolution.

    Each child's history says it was resolved with its parent (an on-hold child is resumed
    first). Children already resolved, closed or canceled are returned unchanged.
    """
    kids = _family(parent, children)
    resolved = parent.resolve(code=code, notes=notes, at=at, by=by)
    return resolved, [_cascade_resolve(child, resolved, at, by) for child in kids]


def close_family(
    parent: Incident, children: Iterable[Incident], *, at: datetime, by: str
) -> tuple[Incident, list[Incident]]:
    """Close ``parent`` and every child not yet closed (resolving open ones first)."""
    kids = _family(parent, children)
    closed = parent.close(at=at, by=by)
    out = []
    for child in kids:
        child = _cascade_resolve(child, closed, at, by)  # noqa: PLW2901 - the child's next version
        if child.state is _RESOLVED:
            child = child._do("close", IncidentClosed, at, by, parent=parent.id)  # noqa: PLW2901
        out.append(child)
    return closed, out


_AUTO_CLOSE_AFTER: Final = timedelta(days=7)


def auto_close_due(
    incident: Incident,
    *,
    at: datetime,
    after: timedelta = _AUTO_CLOSE_AFTER,
    calendar: BusinessCalendar | None = None,
) -> bool:
    """Whether a resolved incident is due for automatic closure at ``at``.

    Due once ``after`` has passed since resolution (wall time, or business time on
    ``calendar``). Major incidents (proposed or accepted) are never closed automatically.
    """
    require_aware(at, "at")
    if incident.state is not _RESOLVED or incident.resolved_at is None:
        return False
    if incident.major in (MajorState.PROPOSED, MajorState.ACCEPTED):
        return False
    due = (
        incident.resolved_at + after
        if calendar is None
        else calendar.add(incident.resolved_at, after)
    )
    return at >= due


def auto_close(
    incidents: Iterable[Incident],
    *,
    at: datetime,
    after: timedelta = _AUTO_CLOSE_AFTER,
    calendar: BusinessCalendar | None = None,
    by: str = "auto-close",
) -> list[Incident]:
    """Close every incident that :func:`auto_close_due` says is due; return the closed ones."""
    return [
        incident._do("close", IncidentClosed, at, by, automatic=True)
        for incident in incidents
        if auto_close_due(incident, at=at, after=after, calendar=calendar)
    ]
