"""Incident management: the record, its states, its events and its lifecycle table.

An incident is an unplanned interruption of a service; the practice restores service as fast
as possible. ``Incident`` is a record on the engine of :mod:`itsmcore.record`: every verb
(``assign``, ``hold``, ``resolve`` …) returns a new record with one more event in
``history``, checked against the incident ``Workflow``. The semantics follow ServiceNow's
incident state model, the de-facto reference. This module holds only what is particular to
incidents; assigning, prioritising, commenting, linking, canceling, reopening and editing are
the shared capabilities of :mod:`itsmcore.capabilities`.
"""

# The family and batch functions below are part of this module's record logic and use the
# engine's private _do on purpose.
# ruff: noqa: SLF001

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import attrs

from itsmcore._time import require_aware
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
    Reopenable,
    Reopened,
    Reprioritized,
    Unlinked,
)
from itsmcore.errors import DefinitionError, InvalidTransitionError, ValidationError
from itsmcore.events import Event
from itsmcore.priority import Impact, Level, Priority, PriorityMatrix, Urgency
from itsmcore.record import (
    Column,
    Opened,
    applies,
    label,
    optional_label,
    optional_text,
    state_of,
    storable,
    text,
    verb,
)
from itsmcore.workflow import ACTIVE, CANCELED, MET, PAUSED, Transition, Workflow

if TYPE_CHECKING:
    from collections.abc import Iterable

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


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class IncidentOpened(Opened):
    """An incident was logged."""

    type: ClassVar[str] = "incident.opened"
    schema_version: ClassVar[int] = 2
    title: str
    description: str
    caller: str
    channel: str
    service: str | None
    ci: str | None
    category: str | None
    subcategory: str | None
    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool
    assignment_group: str | None = None
    """Routed as it was logged (ServiceNow does not count that as a reassignment)."""
    assignee: str | None = None

    @classmethod
    def upcast(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 1 did not name the workflow: every such incident ran on the default."""
        if version == 1 and isinstance(data, dict):
            return {**data, "workflow": INCIDENT_WORKFLOW.name}
        return data


@attrs.frozen(kw_only=True)
class IncidentAssigned(Assigned):
    """The incident was routed to a group and/or a person."""

    type: ClassVar[str] = "incident.assigned"


@attrs.frozen(kw_only=True)
class IncidentStarted(Event):
    """Work started."""

    type: ClassVar[str] = "incident.started"


@attrs.frozen(kw_only=True)
class IncidentHeld(Event):
    """The incident was put on hold for a reason."""

    type: ClassVar[str] = "incident.held"
    reason: str
    """A hold reason of the workflow's choices (``HoldReason`` values, and any a desk adds)."""


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
class IncidentReopened(Reopened):
    """A resolved incident came back: the fix did not hold."""

    type: ClassVar[str] = "incident.reopened"


@attrs.frozen(kw_only=True)
class IncidentClosed(Event):
    """The resolution was confirmed; the record is now read-only."""

    type: ClassVar[str] = "incident.closed"
    automatic: bool = False
    parent: str | None = None


@attrs.frozen(kw_only=True)
class IncidentCanceled(Canceled):
    """The incident was logged in error or duplicates another."""

    type: ClassVar[str] = "incident.canceled"


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
class IncidentReprioritized(Reprioritized):
    """Impact, urgency or an explicit priority changed."""

    type: ClassVar[str] = "incident.reprioritized"


@attrs.frozen(kw_only=True)
class IncidentCommented(Commented):
    """A comment or work note was added."""

    type: ClassVar[str] = "incident.commented"


@attrs.frozen(kw_only=True)
class MajorIncidentChanged(Event):
    """The major-incident procedure moved: proposed, accepted or rejected."""

    type: ClassVar[str] = "incident.major"
    major: MajorState
    reason: str | None = None


@attrs.frozen(kw_only=True)
class IncidentLinked(Linked):
    """The incident now points at a problem, change, knowledge article, parent or child."""

    type: ClassVar[str] = "incident.linked"


@attrs.frozen(kw_only=True)
class IncidentUnlinked(Unlinked):
    """The incident no longer points at a problem, change or knowledge article."""

    type: ClassVar[str] = "incident.unlinked"


@attrs.frozen(kw_only=True)
class IncidentUpdated(FieldsUpdated):
    """Title, description, caller, category, service or CI were edited."""

    type: ClassVar[str] = "incident.updated"


# --------------------------------------------------------------------------- lifecycle


def _major_proposable(record: Any, _context: Mapping[str, Any]) -> str | None:
    if record.major in (MajorState.PROPOSED, MajorState.ACCEPTED):
        return f"it is already {record.major.value}"
    return None


def _major_proposed(record: Any, _context: Mapping[str, Any]) -> str | None:
    return None if record.major is MajorState.PROPOSED else "it has not been proposed"


_ACTIVE: Final = (IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD)
_NEW, _WORK, _HOLD = IncidentState.NEW, IncidentState.IN_PROGRESS, IncidentState.ON_HOLD
_RESOLVED = IncidentState.RESOLVED


def incident_workflow(
    resolution_codes: Iterable[str] = tuple(ResolutionCode),
    *,
    hold_reasons: Iterable[str] = (),
    channels: Iterable[str] = (),
    reopen_closed: bool = False,
    name: str = "incident",
) -> Workflow:
    """The incident lifecycle as real desks run it, with the values a desk accepts.

    Rows follow ServiceNow: work starts from New; New and In Progress go on hold, and a hold
    changes its reason while on hold; work resumes from On Hold; New (first-contact fix), In
    Progress and On Hold resolve; Resolved reopens to In Progress or closes; New, In
    Progress and On Hold cancel. Actions keep the state: assigning, commenting, linking and
    editing while active or resolved; escalating, reprioritising and the major-incident
    steps while active. Tags: New, In Progress and On Hold are ``active``, On Hold is
    ``paused``, Resolved and Closed are ``met``, Canceled is ``canceled``.

    Args:
        resolution_codes: the codes ``resolve`` accepts (ServiceNow's current list).
        hold_reasons: hold reasons this desk uses besides ``HoldReason``'s, e.g.
            ``["Awaiting Evidence"]``.
        channels: channels besides ``Channel``'s, e.g. ``["Self service", "IVR"]``.
        reopen_closed: let a closed incident be reopened too (some desks do: Closed then
            stops being final, and Canceled is the only terminal state).
        name: the workflow's name. Any workflow but the default is another workflow: give it
            its own name and register it (``Incident.register_workflow``) so stored
            incidents find it again.
    """
    closed = IncidentState.CLOSED
    if not isinstance(reopen_closed, bool):
        raise DefinitionError(f"reopen_closed must be True or False, got {reopen_closed!r}")
    return Workflow(
        name=name,
        states=tuple(IncidentState),
        initial=_NEW,
        terminal=(IncidentState.CANCELED,) if reopen_closed else (closed, IncidentState.CANCELED),
        transitions=(
            Transition("start", _NEW, _WORK),
            Transition("hold", _ACTIVE, _HOLD),
            Transition("resume", _HOLD, _WORK),
            Transition("resolve", _ACTIVE, _RESOLVED),
            Transition("reopen", (_RESOLVED, closed) if reopen_closed else _RESOLVED, _WORK),
            Transition("close", _RESOLVED, closed),
            Transition("cancel", _ACTIVE, IncidentState.CANCELED),
            Transition("assign", (*_ACTIVE, _RESOLVED)),
            Transition("escalate", _ACTIVE),
            Transition("reprioritize", _ACTIVE),
            Transition("comment", (*_ACTIVE, _RESOLVED)),
            Transition("link", (*_ACTIVE, _RESOLVED)),
            Transition("unlink", (*_ACTIVE, _RESOLVED)),
            Transition("update", (*_ACTIVE, _RESOLVED)),
            Transition("propose_major", _ACTIVE, guards=(_major_proposable,)),
            Transition("accept_major", _ACTIVE, guards=(_major_proposed,)),
            Transition("reject_major", _ACTIVE, guards=(_major_proposed,)),
        ),
        tags={
            ACTIVE: _ACTIVE,
            PAUSED: (_HOLD,),
            MET: (_RESOLVED, closed),
            CANCELED: (IncidentState.CANCELED,),
        },
        choices={
            "resolution_code": _values(resolution_codes, "resolution_codes"),
            "hold_reason": (*HoldReason, *_values(hold_reasons, "hold_reasons")),
            "channel": (*Channel, *_values(channels, "channels")),
        },
    )


def _values(values: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise DefinitionError(f"{name} must be a collection of values, not the string {values!r}")
    try:
        return tuple(str(v) for v in values)
    except TypeError:
        raise DefinitionError(f"{name} must be a collection of values, got {values!r}") from None


INCIDENT_WORKFLOW: Final = incident_workflow()
"""The default incident lifecycle."""
_HOLD_REASONS: Final[dict[str, str]] = {r.value: r for r in HoldReason}
_CHANNELS: Final[dict[str, str]] = {c.value: c for c in Channel}


# --------------------------------------------------------------------------- the record


def _priority_number(value: object) -> int:
    """``find(priority=...)`` takes members, numbers and labels (``"P1"``, ``"1 - Critical"``)."""
    return int(Priority.parse(value))


@attrs.frozen(kw_only=True, slots=False)
class Incident(Assignable, Prioritized, Commentable, Linkable, Cancelable, Reopenable, Editable):
    """An incident record: its current fields and the history that produced them.

    Build one with :meth:`open`; change it with its verbs, each of which takes keyword-only
    ``at=`` (an aware datetime, never before the previous event) and ``by=`` (who acts) and
    returns a new record. ``version`` equals ``len(history)``, and :meth:`replay` rebuilds an
    equal record from the history alone.
    """

    kind: ClassVar[str] = "incident"
    number_prefix: ClassVar[str | None] = "INC"
    state_enum: ClassVar[type[StrEnum]] = IncidentState
    default_workflow: ClassVar[Workflow] = INCIDENT_WORKFLOW
    link_fields: ClassVar[Mapping[str, str]] = {
        LinkKind.PROBLEM: "problems",
        LinkKind.CHANGE: "changes",
        LinkKind.KNOWLEDGE: "knowledge",
    }
    editable: ClassVar[tuple[str, ...]] = (
        "title", "description", "caller", "category", "subcategory", "service", "ci",
    )  # fmt: skip
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("incident")),
        Column("priority", int, parse=_priority_number),
        Column("assignment_group", str),
        Column("assignee", str),
        Column("service", str),
        Column("ci", str),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    title: str
    description: str = ""
    caller: str
    channel: Channel | str
    """How it reached the desk: a ``Channel``, or a channel the workflow adds."""
    service: str | None = None
    ci: str | None = None
    category: str | None = None
    subcategory: str | None = None
    hold_reason: HoldReason | str | None = None
    """Why it waits: a ``HoldReason``, or a reason the workflow adds."""
    tier: int = 1
    """Support tier: 1 for the service desk, one more per functional escalation."""
    hierarchical_escalations: int = 0
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    closed_at: datetime | None = None
    resolution_code: str | None = None
    resolution_notes: str | None = None
    major: MajorState | None = None
    parent: str | None = None
    children: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    knowledge: tuple[str, ...] = ()

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
        impact: Level | str | int,
        urgency: Level | str | int,
        at: datetime,
        by: str,
        description: str = "",
        channel: Channel | str = Channel.PORTAL,
        service: str | None = None,
        ci: str | None = None,
        category: str | None = None,
        subcategory: str | None = None,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = DEFAULT_MATRIX,
        workflow: Workflow = INCIDENT_WORKFLOW,
        assignment_group: str | None = None,
        assignee: str | None = None,
    ) -> Self:
        """Log a new incident, optionally routed to a group and person as it is logged.

        The priority comes from ``matrix`` (ITIL's impact-by-urgency table by default) unless
        an explicit ``priority`` is given, which is recorded as an override. With a matrix
        over a desk's own scales (a 4x4 ``Impact4``/``Urgency4``), the record keeps those
        levels, through every store. The incident
        runs on ``workflow`` and keeps it through every store (register a custom one with
        :meth:`register_workflow`).

        Raises:
            ValidationError: an empty id, title or caller, an unknown channel, impact,
                urgency or priority label, or a naive ``at``.
        """
        workflow = cls._workflow(workflow)
        event = IncidentOpened(
            at=at,
            by=by,
            state=workflow.initial,
            workflow=workflow.name,
            id=label(id, "id"),
            title=text(title, "title"),
            description=storable(description.strip(), "description")
            if isinstance(description, str)
            else "",
            caller=label(caller, "caller"),
            channel=workflow.choice("channel", channel, "channel"),
            service=optional_label(service, "service"),
            ci=optional_label(ci, "ci"),
            category=optional_label(category, "category"),
            subcategory=optional_label(subcategory, "subcategory"),
            **cls._priority_fields(impact, urgency, priority, matrix),
            assignment_group=optional_label(assignment_group, "assignment_group"),
            assignee=optional_label(assignee, "assignee"),
        )
        return cls._opened(event, workflow)

    # ----------------------------------------------------------------------- verbs

    @verb
    def start(self, *, at: datetime, by: str) -> Self:
        """Start work: New → In Progress."""
        return self._do("start", IncidentStarted, at, by)

    @verb
    def hold(self, *, reason: HoldReason | str, at: datetime, by: str) -> Self:
        """Put the incident on hold, or change why it is on hold; a reason is required.

        Reasons are ``HoldReason``'s and any the workflow adds (``incident_workflow(
        hold_reasons=["Awaiting Evidence"])``).
        """
        reason = self.workflow.choice("hold_reason", reason, "hold reason")
        return self._do("hold", IncidentHeld, at, by, reason=reason)

    @verb
    def resume(self, *, at: datetime, by: str, note: str | None = None) -> Self:
        """Take the incident off hold: On Hold → In Progress."""
        return self._do("resume", IncidentResumed, at, by, note=optional_text(note, "note"))

    @verb
    def resolve(self, *, code: ResolutionCode | str, notes: str, at: datetime, by: str) -> Self:
        """Record that service is restored; a resolution code and notes are required.

        From New (a first-contact fix), In Progress or On Hold (the wait ends with the fix).
        The code must be one of the workflow's resolution codes.
        """
        return self._do(
            "resolve",
            IncidentResolved,
            at,
            by,
            code=self.workflow.choice("resolution_code", label(code, "code"), "resolution code"),
            notes=text(notes, "notes"),
        )

    @verb
    def close(self, *, at: datetime, by: str) -> Self:
        """Confirm the resolution: Resolved → Closed (read-only from then on)."""
        return self._do("close", IncidentClosed, at, by)

    @verb
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
            reason=text(reason, "reason"),
            group=optional_label(group, "group"),
            assignee=optional_label(assignee, "assignee"),
            manager=optional_label(manager, "manager"),
        )

    @verb
    def comment(self, *, text: str, at: datetime, by: str, from_caller: bool = False) -> Self:
        """Add a comment or work note.

        When the caller answers an incident awaiting the caller, the incident goes back to
        In Progress by itself (a second event records that).
        """
        record = super().comment(text=text, at=at, by=by, from_caller=from_caller)
        awaiting = from_caller and record.hold_reason is HoldReason.AWAITING_CALLER
        if awaiting and "resume" in record.workflow.allowed(record):
            return record.resume(at=at, by=by, note="the caller responded")
        return record

    @verb
    def propose_major(self, *, reason: str, at: datetime, by: str) -> Self:
        """Propose the incident as a major-incident candidate."""
        return self._major("propose_major", MajorState.PROPOSED, at, by, text(reason, "reason"))

    @verb
    def accept_major(self, *, at: datetime, by: str) -> Self:
        """Accept a proposed candidate as a major incident (a major-incident manager's call)."""
        return self._major("accept_major", MajorState.ACCEPTED, at, by, None)

    @verb
    def reject_major(self, *, reason: str, at: datetime, by: str) -> Self:
        """Reject a proposed candidate; it may be proposed again later."""
        return self._major("reject_major", MajorState.REJECTED, at, by, text(reason, "reason"))

    def _major(
        self, trigger: str, major: MajorState, at: datetime, by: str, reason: str | None
    ) -> Self:
        return self._do(trigger, MajorIncidentChanged, at, by, major=major, reason=reason)

    # ----------------------------------------------------------------------- appliers

    @applies(IncidentStarted, sets=())
    def _on_started(self, _e: IncidentStarted) -> Mapping[str, Any]:
        return {}

    @applies(IncidentOpened, sets=("channel", "first_assignee"))
    def _on_opened(self, e: IncidentOpened) -> Mapping[str, Any]:
        return {"channel": _CHANNELS.get(e.channel, e.channel), "first_assignee": e.assignee}

    @applies(IncidentHeld, sets=("hold_reason",))
    def _on_held(self, e: IncidentHeld) -> Mapping[str, Any]:
        return {"hold_reason": _HOLD_REASONS.get(e.reason, e.reason)}

    @applies(IncidentResumed, IncidentCanceled, sets=("hold_reason",))
    def _off_hold(self, _e: Event) -> Mapping[str, Any]:
        return {"hold_reason": None}

    @applies(
        IncidentResolved,
        sets=("hold_reason", "resolved_at", "resolved_by", "resolution_code", "resolution_notes"),
    )
    def _on_resolved(self, e: IncidentResolved) -> Mapping[str, Any]:
        return {
            "hold_reason": None,
            "resolved_at": e.at,
            "resolved_by": e.by,
            "resolution_code": e.code,
            "resolution_notes": e.notes,
        }

    @applies(
        IncidentReopened,
        sets=(
            "reopen_count", "closed_at", "resolved_at", "resolved_by", "resolution_code",
            "resolution_notes",
        ),
    )  # fmt: skip
    def _on_incident_reopened(self, e: IncidentReopened) -> Mapping[str, Any]:
        return {
            **self._on_reopened(e),
            "closed_at": None,
            "resolved_at": None,
            "resolved_by": None,
            "resolution_code": None,
            "resolution_notes": None,
        }

    @applies(IncidentClosed, sets=("closed_at",))
    def _on_closed(self, e: IncidentClosed) -> Mapping[str, Any]:
        return {"closed_at": e.at}

    @applies(
        IncidentEscalated,
        sets=("hierarchical_escalations", "assignment_group", "assignee", "tier"),
    )
    def _on_escalated(self, e: IncidentEscalated) -> Mapping[str, Any]:
        if e.kind is EscalationKind.HIERARCHICAL:
            return {"hierarchical_escalations": self.hierarchical_escalations + 1}
        return {"assignment_group": e.group, "assignee": e.assignee, "tier": self.tier + 1}

    @applies(MajorIncidentChanged, sets=("major",))
    def _on_major(self, e: MajorIncidentChanged) -> Mapping[str, Any]:
        return {"major": e.major}

    @applies(IncidentLinked, sets=lambda cls: ("parent", "children", *cls.link_fields.values()))
    def _on_incident_linked(self, e: IncidentLinked) -> Mapping[str, Any]:
        if e.kind == "parent":
            return {"parent": e.target}
        if e.kind == "child":
            return {"children": self.children | {e.target}}
        return self._on_linked(e)


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
    """Resolve an active child with its parent's resolution; leave a finished one alone.

    A paused child (on hold) is resumed first. The child's own workflow decides: an active
    child that cannot be resolved from its state (a vendor's ``awaiting_approval``) is an
    ``InvalidTransitionError`` naming it, never silently left open.
    """
    if not child.is_active:
        return child
    workflow = child.workflow
    if child.state in workflow.tagged(PAUSED) and "resume" in workflow.allowed(child):
        child = child.resume(at=at, by=by, note=f"resolving with parent {parent.id}")
    context = {"code": parent.resolution_code}
    if "resolve" not in workflow.allowed(child, **context):
        raise InvalidTransitionError(
            "resolve",
            child.state,
            workflow.allowed(child, **context),
            f"child {child.id} of {parent.id} cannot be resolved from {child.state}; "
            "move it on first",
        )
    return child._do(
        "resolve",
        IncidentResolved,
        at,
        by,
        code=parent.resolution_code,
        notes=f"Resolved with parent incident {parent.id}: {parent.resolution_notes}",
        parent=parent.id,
    )


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
    first). Children no longer active (resolved, closed, canceled) are returned unchanged;
    an active child its workflow does not let resolve is an ``InvalidTransitionError``.
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
        if _closable(child):
            child = child._do("close", IncidentClosed, at, by, parent=parent.id)  # noqa: PLW2901
        out.append(child)
    return closed, out


def _closable(incident: Incident) -> bool:
    """Delivered (a state tagged ``met``) and not final: its workflow lets it close now."""
    return incident.state in incident.workflow.tagged(MET) and "close" in incident.workflow.allowed(
        incident
    )


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
    ``calendar``), in a state its workflow tags ``met`` from which it may close. Major
    incidents (proposed or accepted) are never closed automatically.
    """
    require_aware(at, "at")
    if incident.resolved_at is None or not _closable(incident):
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
