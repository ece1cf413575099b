"""What every practice does alike: assign, prioritise, comment, link, cancel, reopen, edit.

Each capability is a small base class for records: its fields, its typed verb(s), a shared
event and the applier that folds it. A practice inherits the capabilities it has and
subclasses each shared event in a line, with its own stable ``type`` string::

    @attrs.frozen(kw_only=True)
    class ProblemAssigned(Assigned):
        type: ClassVar[str] = "problem.assigned"

The record engine finds that subclass by the practice's ``kind`` prefix, so the shared verb
records ``"problem.assigned"`` on a problem and ``"incident.assigned"`` on an incident. A
practice that needs more on the same event (an incident clears its resolution when it is
reopened) declares its own ``@applies`` for its subclass and calls the shared one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime  # noqa: TC003 - test strategies read verb signatures
from typing import Any, ClassVar, Final, Self

import attrs

from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.events import Event
from itsmcore.priority import Impact, Level, Priority, PriorityMatrix, Urgency
from itsmcore.record import Record, applies, verb
from itsmcore.record import label as _label
from itsmcore.record import optional_label as _optional_label
from itsmcore.record import optional_text as _optional_text
from itsmcore.record import storable as _storable
from itsmcore.record import text as _text

__all__ = [
    "Assignable",
    "Assigned",
    "Cancelable",
    "Canceled",
    "Commentable",
    "Commented",
    "Editable",
    "FieldChange",
    "FieldsUpdated",
    "Linkable",
    "Linked",
    "Prioritized",
    "Reopenable",
    "Reopened",
    "Reprioritized",
    "Unlinked",
]

DEFAULT_MATRIX: Final = PriorityMatrix.itil_default()


class _Keep:
    """The value of an argument not given: the field keeps its value."""

    _instance: _Keep | None = None

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
"""Passed (by default) for a field a verb should leave as it is."""


# --------------------------------------------------------------------------- shared events


@attrs.frozen(kw_only=True)
class Assigned(Event):
    """The record was routed: to a group and/or a person, or either was cleared.

    ``None`` keeps the current value, unless the field is named in ``cleared``. A new group
    without a named person clears the person (they belonged to the old group).
    """

    group: str | None
    assignee: str | None
    cleared: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Reprioritized(Event):
    """Impact, urgency or an explicit priority changed."""

    impact: Impact
    urgency: Urgency
    priority: Priority
    priority_overridden: bool
    reason: str


@attrs.frozen(kw_only=True)
class Commented(Event):
    """A comment or work note was added."""

    text: str
    from_caller: bool = False


@attrs.frozen(kw_only=True)
class Linked(Event):
    """The record now points at another record (a problem, change, article …) by id."""

    kind: str
    target: str


@attrs.frozen(kw_only=True)
class Unlinked(Event):
    """The record no longer points at that record."""

    kind: str
    target: str


@attrs.frozen(kw_only=True)
class Canceled(Event):
    """The record was withdrawn: logged in error, a duplicate, no longer wanted."""

    reason: str


@attrs.frozen(kw_only=True)
class Reopened(Event):
    """Delivered work came back: the fix did not hold."""

    reason: str


@attrs.frozen
class FieldChange:
    """One field an update changed, with its value before and after."""

    name: str
    old: str | None
    new: str | None


@attrs.frozen(kw_only=True)
class FieldsUpdated(Event):
    """Descriptive fields were edited (a form save): each with its old and new value."""

    changes: tuple[FieldChange, ...]


# --------------------------------------------------------------------------- capabilities


@attrs.frozen(kw_only=True, slots=False)
class Assignable(Record):
    """A record routed to an assignment group and a person in it."""

    assignment_group: str | None = None
    assignee: str | None = None
    first_assignee: str | None = None
    """The first person named as assignee (first-contact resolution reads it)."""
    reassignment_count: int = 0

    @verb
    def assign(
        self,
        *,
        group: str | _Keep | None = KEEP,
        assignee: str | _Keep | None = KEEP,
        at: datetime,
        by: str,
    ) -> Self:
        """Route the record: set the group and/or the person, or clear either with ``None``.

        A field not given keeps its value; a new group without a person clears the person.
        The reassignment count follows ServiceNow's rule: it counts every change of the
        assignment group, to or from empty; naming a person within the same group does not
        count.
        """
        if group is KEEP and assignee is KEEP:
            raise ValidationError("assign a group, an assignee or both (None clears one)")
        cleared = tuple(
            name for name, value in (("group", group), ("assignee", assignee)) if value is None
        )
        return self._do(
            "assign",
            self._events[Assigned],
            at,
            by,
            group=None if group is KEEP else _optional_label(group, "group"),
            assignee=None if assignee is KEEP else _optional_label(assignee, "assignee"),
            cleared=cleared,
        )

    @applies(
        Assigned, sets=("assignment_group", "assignee", "first_assignee", "reassignment_count")
    )
    def _on_assigned(self, e: Assigned) -> Mapping[str, Any]:
        group = None if "group" in e.cleared else e.group or self.assignment_group
        moved = group != self.assignment_group
        if "assignee" in e.cleared:
            assignee = None
        else:
            assignee = e.assignee or (None if moved else self.assignee)
        return {
            "assignment_group": group,
            "assignee": assignee,
            "first_assignee": self.first_assignee or assignee,
            "reassignment_count": self.reassignment_count + moved,
        }


@attrs.frozen(kw_only=True, slots=False)
class Prioritized(Record):
    """A record whose priority follows from impact and urgency, or is set explicitly."""

    impact: Level
    """An ``Impact``, or a level of the scale of the matrix the record was opened with."""
    urgency: Level
    priority: Priority
    priority_overridden: bool = False

    @staticmethod
    def _priority_fields(
        impact: Level | str | int,
        urgency: Level | str | int,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = DEFAULT_MATRIX,
    ) -> dict[str, Any]:
        """Impact, urgency and priority as an opening event's fields, validated."""
        for value, scale, name in ((impact, matrix.impacts, "impact"),
                                   (urgency, matrix.urgencies, "urgency")):  # fmt: skip
            if isinstance(value, Level) and not isinstance(value, scale):
                raise ValidationError(
                    f"{name} {value!r} is on the scale {type(value).__name__}, and this matrix "
                    f"takes {scale.__name__}: pass the matrix the record's levels come from"
                )
        impact_, urgency_ = matrix.impacts.parse(impact), matrix.urgencies.parse(urgency)
        return {
            "impact": impact_,
            "urgency": urgency_,
            "priority": matrix.priority(impact_, urgency_)
            if priority is None
            else Priority.parse(priority),
            "priority_overridden": priority is not None,
        }

    @verb
    def reprioritize(
        self,
        *,
        reason: str,
        at: datetime,
        by: str,
        impact: Level | str | int | None = None,
        urgency: Level | str | int | None = None,
        priority: Priority | str | int | None = None,
        matrix: PriorityMatrix = DEFAULT_MATRIX,
    ) -> Self:
        """Change impact and/or urgency, or set an explicit priority; a reason is required.

        The priority follows from ``matrix`` unless ``priority`` is given, which is recorded
        as an override. A record on a custom scale needs its own matrix passed again.
        """
        fields = self._priority_fields(
            self.impact if impact is None else impact,
            self.urgency if urgency is None else urgency,
            priority,
            matrix,
        )
        return self._do(
            "reprioritize",
            self._events[Reprioritized],
            at,
            by,
            **fields,
            reason=_text(reason, "reason"),
        )

    @applies(Reprioritized, sets=("impact", "urgency", "priority", "priority_overridden"))
    def _on_reprioritized(self, e: Reprioritized) -> Mapping[str, Any]:
        return {
            "impact": e.impact,
            "urgency": e.urgency,
            "priority": e.priority,
            "priority_overridden": e.priority_overridden,
        }


@attrs.frozen(kw_only=True, slots=False)
class Commentable(Record):
    """A record that takes comments and work notes."""

    @verb
    def comment(self, *, text: str, at: datetime, by: str, from_caller: bool = False) -> Self:
        """Add a comment (``from_caller=True`` when the caller wrote it) or work note."""
        if not isinstance(from_caller, bool):
            raise ValidationError(f"from_caller must be True or False, got {from_caller!r}")
        return self._do(
            "comment",
            self._events[Commented],
            at,
            by,
            text=_text(text, "text"),
            from_caller=from_caller,
        )

    @applies(Commented, sets=())
    def _on_commented(self, _e: Commented) -> Mapping[str, Any]:
        return _NOTHING


@attrs.frozen(kw_only=True, slots=False)
class Linkable(Record):
    """A record that points at other records by id, one tuple field per kind of link.

    A practice declares ``link_fields``: link kind -> the tuple field that holds the ids
    (``{"problem": "problems", "change": "changes"}``).
    """

    link_fields: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def _declare(cls) -> None:
        super()._declare()
        names = {f.name for f in attrs.fields(cls)}
        for kind, name in cls.link_fields.items():
            if name not in names:
                raise DefinitionError(f"{cls.__name__}.link_fields[{kind!r}]: no field {name!r}")

    def _link_kind(self, kind: object) -> str:
        name = kind.strip().lower() if isinstance(kind, str) else None
        if name is None or name not in self.link_fields:
            allowed = ", ".join(self.link_fields)
            raise ValidationError(f"unknown link kind {kind!r}; use one of: {allowed}")
        return name

    @verb
    def link(self, *, kind: str, target: str, at: datetime, by: str) -> Self:
        """Point the record at another record (of a kind in ``link_fields``) by id."""
        return self._do(
            "link",
            self._events[Linked],
            at,
            by,
            kind=self._link_kind(kind),
            target=_label(target, "target"),
        )

    @verb
    def unlink(self, *, kind: str, target: str, at: datetime, by: str) -> Self:
        """Remove a link; ``ValidationError`` if the record does not point at ``target``."""
        name = self._link_kind(kind)
        target = _label(target, "target")
        if target not in getattr(self, self.link_fields[name]):
            raise ValidationError(f"{self.id} is not linked to {name} {target!r}")
        return self._do("unlink", self._events[Unlinked], at, by, kind=name, target=target)

    @applies(Linked, sets=lambda cls: cls.link_fields.values())
    def _on_linked(self, e: Linked) -> Mapping[str, Any]:
        name = self.link_fields[e.kind]
        current: tuple[str, ...] = getattr(self, name)
        return {name: current if e.target in current else (*current, e.target)}

    @applies(Unlinked, sets=lambda cls: cls.link_fields.values())
    def _on_unlinked(self, e: Unlinked) -> Mapping[str, Any]:
        name = self.link_fields[e.kind]
        current: tuple[str, ...] = getattr(self, name)
        return {name: tuple(t for t in current if t != e.target)}


@attrs.frozen(kw_only=True, slots=False)
class Cancelable(Record):
    """A record that can be withdrawn with a reason."""

    @verb
    def cancel(self, *, reason: str, at: datetime, by: str) -> Self:
        """Withdraw the record (logged in error, a duplicate, no longer wanted)."""
        return self._do("cancel", self._events[Canceled], at, by, reason=_text(reason, "reason"))

    @applies(Canceled, sets=())
    def _on_canceled(self, _e: Canceled) -> Mapping[str, Any]:
        return _NOTHING


@attrs.frozen(kw_only=True, slots=False)
class Reopenable(Record):
    """A record whose delivered work can come back, counting how often it did."""

    reopen_count: int = 0

    @verb
    def reopen(self, *, reason: str, at: datetime, by: str) -> Self:
        """The work did not hold: back to work, counting the reopen."""
        return self._do("reopen", self._events[Reopened], at, by, reason=_text(reason, "reason"))

    @applies(Reopened, sets=("reopen_count",))
    def _on_reopened(self, _e: Reopened) -> Mapping[str, Any]:
        return {"reopen_count": self.reopen_count + 1}


@attrs.frozen(kw_only=True, slots=False)
class Editable(Record):
    """A record whose descriptive text fields can be edited, old and new values recorded.

    A practice lists them in ``editable``. A field whose default is ``None`` can be cleared
    with ``None``; one whose default is ``""`` takes any text; any other needs non-empty text.
    """

    editable: ClassVar[tuple[str, ...]] = ()

    @verb
    def update(self, *, at: datetime, by: str, **fields: str | None) -> Self:
        """Edit descriptive fields (``update(title=..., ci=None, at=..., by=...)``).

        One event records every field that changed with its old and new value; fields given
        with their current value are left out, and a save that changes nothing returns the
        record as it is (after the same lifecycle and time checks), so a form can always
        submit every field.
        """
        if not fields:
            raise ValidationError(f"name the fields to update: {', '.join(self.editable)}")
        unknown = sorted(set(fields) - set(self.editable))
        if unknown:
            raise ValidationError(
                f"{', '.join(unknown)} cannot be updated; editable fields: "
                f"{', '.join(self.editable)}"
            )
        changes = []
        for name in self.editable:
            if name in fields:
                new = _field_value(type(self), name, fields[name])
                old = getattr(self, name)
                if new != old:
                    changes.append(FieldChange(name, old, new))
        if not changes:
            self._check("update", at)  # a no-op save must still be allowed now
            return self
        return self._do("update", self._events[FieldsUpdated], at, by, changes=tuple(changes))

    @applies(FieldsUpdated, sets=lambda cls: cls.editable)
    def _on_updated(self, e: FieldsUpdated) -> Mapping[str, Any]:
        return {change.name: change.new for change in e.changes}

    @classmethod
    def _declare(cls) -> None:
        super()._declare()
        names = {f.name for f in attrs.fields(cls)}
        for name in cls.editable:
            if name not in names:
                raise DefinitionError(f"{cls.__name__}.editable names {name!r}: not a field")


def _field_value(cls: type[Record], name: str, value: object) -> str | None:
    field = getattr(attrs.fields(cls), name)
    indexed = any(c.name == name for c in cls.indexed)  # stores index it: a label's length
    if field.default is None:
        return (_optional_label if indexed else _optional_text)(value, name)
    if field.default == "":
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string, got {value!r}")
        return _storable(value.strip(), name)
    return (_label if indexed else _text)(value, name)


_NOTHING: Final[Mapping[str, Any]] = {}
