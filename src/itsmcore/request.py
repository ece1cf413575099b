"""Service catalog and request fulfilment: catalog items and the service request record.

A **catalog item** (:class:`CatalogItem`) is the immutable definition of something users can
request: its form (typed :class:`FormField` s with required flags and validation), its
approval (:class:`ApprovalPolicy`: none, the requester's manager, or N of M named approvers),
its fulfilment tasks and its target time. A broken definition is a ``DefinitionError`` when
the item is defined.

A **service request** (:class:`ServiceRequest`) is a record on the engine of
:mod:`itsmcore.record`, opened from an item with the submitted form values (checked against
the item: a ``FormError`` names the field). Its lifecycle is submitted → approved (or
rejected) → in fulfilment → fulfilled → closed, and canceled from the open states. The
approval policy and the tasks are enforced by the workflow's guards:

- approval: each named approver approves at most once; the request is approved when
  ``required`` distinct approvers approved, and rejected by any one rejection; a person who
  is not a named approver, or who requested it, is refused. An item without approval is
  approved automatically when the request is opened (by ``"auto-approval"``), as ServiceNow
  marks such requested items approved;
- tasks: completed one event each; **in order** by default (a task can be completed once every
  task before it is), in any order for an item with ``parallel_tasks=True``; the request is
  fulfilled only when every task is done.

The workflow's tags make the neutral SLA presets run on it: a request awaiting approval is
``paused`` (approval time is the approvers', not the fulfillers'), fulfilled and closed are
``met``, rejected and canceled are ``canceled``. :func:`fulfilment_sla` builds the fulfilment
clock from catalog items' target times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar, Final, Self

import attrs

from itsmcore.calendar import BusinessCalendar
from itsmcore.capabilities import (
    Assignable,
    Assigned,
    Cancelable,
    Canceled,
    Commentable,
    Commented,
    Linkable,
    Linked,
    Unlinked,
)
from itsmcore.errors import DefinitionError, FormError, ValidationError
from itsmcore.events import Event
from itsmcore.record import (
    MAX_LABEL,
    MAX_TEXT,
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
from itsmcore.sla import SLADefinition
from itsmcore.workflow import ACTIVE, CANCELED, MET, PAUSED, Transition, Workflow

__all__ = [
    "AUTO_APPROVER",
    "REQUEST_WORKFLOW",
    "Answer",
    "ApprovalDecision",
    "ApprovalKind",
    "ApprovalPolicy",
    "CatalogItem",
    "FieldType",
    "FormField",
    "RequestState",
    "ServiceRequest",
    "fulfilment_sla",
]

AUTO_APPROVER: Final = "auto-approval"
"""Who approves a request whose catalog item needs no approval (``by`` of that event)."""


# --------------------------------------------------------------------------- form fields


class FieldType(StrEnum):
    """What a form field takes, and so how its value is checked and stored."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    DATE = "date"
    EMAIL = "email"
    USER = "user"


_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_TRUE: Final = frozenset({"true", "yes"})
_FALSE: Final = frozenset({"false", "no"})
_BOUNDED: Final = frozenset({FieldType.INTEGER, FieldType.DECIMAL, FieldType.DATE})
_LENGTHS: Final = frozenset({FieldType.TEXT, FieldType.EMAIL, FieldType.USER})


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        try:
            return int(value.strip())
        except ValueError:  # more digits than Python converts
            pass
    raise ValueError(f"expected a whole number, got {value!r}")


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")  # noqa: TRY004 - see _PARSE
    try:
        if isinstance(value, Decimal | int):
            found = Decimal(value)
        elif isinstance(value, float):
            found = Decimal(repr(value))  # the digits the float was written with
        elif isinstance(value, str) and value.strip():
            found = Decimal(value.strip())
        else:
            raise ValueError  # noqa: TRY301 - one message for every wrong type
    except (InvalidOperation, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None
    if not found.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return found


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _date(value: object) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"expected a date without a time, got {value!r}")  # noqa: TRY004
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}")


def _string(value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")  # noqa: TRY004 - see _PARSE
    try:
        return text(value, "the value", limit=limit)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None


# The parsers raise ValueError for any value that does not fit, of whatever type: FormField
# turns it into one FormError naming the field.
_PARSE: Final[Mapping[FieldType, Callable[[object], object]]] = {
    FieldType.INTEGER: _integer,
    FieldType.DECIMAL: _decimal,
    FieldType.BOOLEAN: _boolean,
    FieldType.DATE: _date,
}


def _blank(value: object) -> bool:
    """No answer: ``None`` or text with nothing in it (what an empty form input posts)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _as_text(kind: FieldType, value: object) -> str:
    """A parsed value as its answer keeps it (see :class:`Answer`)."""
    if kind is FieldType.BOOLEAN:
        return "true" if value else "false"
    if kind is FieldType.DATE:
        return value.isoformat()  # type: ignore[attr-defined, no-any-return]
    return str(value)


def _field_type(value: object) -> FieldType:
    try:
        return member(FieldType, value, "field type")
    except ValidationError as exc:
        raise DefinitionError(str(exc)) from None


def _defined(check: Callable[[object, str], Any], value: object, name: str) -> Any:
    """``check(value, name)``, its ``ValidationError`` as a ``DefinitionError``."""
    try:
        return check(value, name)
    except ValidationError as exc:
        raise DefinitionError(str(exc)) from None


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise DefinitionError(f"{name} must be True or False, got {value!r}")
    return value


def _names(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise DefinitionError(f"{what} are a collection of names, not the string {values!r}")
    try:
        out = tuple(_defined(label, v, what) for v in values)
    except TypeError:
        raise DefinitionError(f"{what} are a collection of names, got {values!r}") from None
    duplicates = sorted({v for v in out if out.count(v) > 1})
    if duplicates:
        raise DefinitionError(f"{what} must be distinct: {', '.join(duplicates)} twice")
    return out


@attrs.frozen(kw_only=True)
class FormField:
    """One question of a catalog item's form: its type, whether it is required, its checks.

    ``options`` are a choice field's allowed values (and only a choice field's);
    ``min_value`` / ``max_value`` bound integer, decimal and date fields (inclusive);
    ``max_length`` bounds text, e-mail and user fields; ``pattern`` is a regular expression
    a text answer must match whole. ``default`` is used when the form leaves the field
    empty; it must itself pass the field's checks. Anything that cannot work is a
    ``DefinitionError`` here.
    """

    name: str
    type: FieldType = attrs.field(converter=_field_type)
    label: str = ""
    """The question as the form shows it (the name when empty)."""
    required: bool = False
    default: object = None
    options: tuple[str, ...] = ()
    min_value: object = None
    max_value: object = None
    max_length: int | None = None
    pattern: str | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise DefinitionError(
                f"field name {self.name!r} must be a lower-case identifier of at most 63 "
                "characters (it is the key of the submitted values)"
            )
        where = f"field {self.name!r}"
        if not isinstance(self.label, str):
            raise DefinitionError(f"{where}: label must be text")
        _flag(self.required, f"{where}: required")
        self._check_options(where)
        self._check_bounds(where)
        self._check_length(where)
        if self.default is not None:
            try:
                object.__setattr__(self, "default", self.parse(self.default))
            except FormError as exc:
                raise DefinitionError(f"{where}: the default is invalid: {exc.problem}") from None

    def _check_options(self, where: str) -> None:
        if self.type is FieldType.CHOICE:
            options = _names(self.options, f"{where}: options")
            if not options:
                raise DefinitionError(f"{where}: a choice field needs at least one option")
            object.__setattr__(self, "options", options)
        elif self.options:
            raise DefinitionError(f"{where}: only a choice field has options ({self.type})")

    def _check_bounds(self, where: str) -> None:
        bounds = (self.min_value, self.max_value)
        if all(b is None for b in bounds):
            return
        if self.type not in _BOUNDED:
            raise DefinitionError(f"{where}: only integer, decimal and date fields have bounds")
        parse = _PARSE[self.type]
        try:
            low, high = (None if b is None else parse(b) for b in bounds)
        except ValueError as exc:
            raise DefinitionError(f"{where}: a bound is not a {self.type} ({exc})") from None
        if low is not None and high is not None and low > high:  # type: ignore[operator]
            raise DefinitionError(f"{where}: min_value {low} is above max_value {high}")
        object.__setattr__(self, "min_value", low)
        object.__setattr__(self, "max_value", high)

    def _check_length(self, where: str) -> None:
        if self.max_length is not None:
            if self.type not in _LENGTHS:
                raise DefinitionError(f"{where}: only text, e-mail and user fields have max_length")
            if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
                raise DefinitionError(f"{where}: max_length must be a whole number")
            if self.max_length < 1:
                raise DefinitionError(f"{where}: max_length must be at least 1")
        if self.pattern is not None:
            if self.type is not FieldType.TEXT:
                raise DefinitionError(f"{where}: only a text field has a pattern")
            try:
                re.compile(self.pattern)
            except (re.error, TypeError) as exc:
                raise DefinitionError(f"{where}: pattern does not compile ({exc})") from None

    def parse(self, value: object) -> object:
        """The typed value of one answer (``FormError`` naming this field if it does not fit).

        Integer, decimal, boolean and date fields also take the text a form posts (``"42"``,
        ``"12.50"``, ``"true"``/``"yes"``, ``"2025-03-03"``); a decimal takes a float by the
        digits it is written with.
        """
        try:
            found = self._typed(value)
        except ValueError as exc:
            raise FormError(self.name, str(exc)) from None
        low, high = self.min_value, self.max_value
        if low is not None and found < low:  # type: ignore[operator]
            raise FormError(self.name, f"{found} is below the minimum {low}")
        if high is not None and found > high:  # type: ignore[operator]
            raise FormError(self.name, f"{found} is above the maximum {high}")
        return found

    def _typed(self, value: object) -> object:
        kind = self.type
        if kind in _PARSE:
            return _PARSE[kind](value)
        limit = MAX_TEXT if kind is FieldType.TEXT else MAX_LABEL
        if self.max_length is not None:
            limit = min(limit, self.max_length)
        found = _string(value, limit)
        if kind is FieldType.CHOICE and found not in self.options:
            raise ValueError(f"{found!r} is not an option; options: {', '.join(self.options)}")
        if kind is FieldType.EMAIL and not _EMAIL.fullmatch(found):
            raise ValueError(f"{found!r} is not an e-mail address")
        if self.pattern is not None and not re.fullmatch(self.pattern, found):
            raise ValueError(f"{found!r} does not match the pattern {self.pattern!r}")
        return found


@attrs.frozen
class Answer:
    """One answered form field, kept on the request as text in its canonical form.

    Numbers as Python writes them (``"42"``, ``"12.50"``), booleans as ``"true"``/``"false"``,
    dates in ISO form; :attr:`value` gives the typed value back.
    """

    name: str
    type: FieldType
    text: str

    @property
    def value(self) -> object:
        """The typed value: ``int``, ``Decimal``, ``bool``, ``date`` or ``str``."""
        parse = _PARSE.get(self.type)
        return self.text if parse is None else parse(self.text)


# --------------------------------------------------------------------------- approval


class ApprovalKind(StrEnum):
    """Who approves requests for an item."""

    NONE = "none"
    MANAGER = "manager"
    """The requester's manager, named when the request is submitted."""
    APPROVERS = "approvers"
    """N of M named approvers."""


def _approval_kind(value: object) -> ApprovalKind:
    return _defined(_member_of(ApprovalKind), value, "approval")  # type: ignore[no-any-return]


def _member_of(kind: type[StrEnum]) -> Callable[[object, str], Any]:
    def check(value: object, name: str) -> Any:
        return member(kind, value, name)

    return check


class ApprovalDecision(StrEnum):
    """An approver's decision."""

    APPROVE = "approve"
    REJECT = "reject"


@attrs.frozen
class ApprovalPolicy:
    """How requests for an item are approved. Build it with the named constructors."""

    kind: ApprovalKind = attrs.field(converter=_approval_kind)
    approvers: tuple[str, ...] = ()
    required: int = 0

    def __attrs_post_init__(self) -> None:
        approvers = _names(self.approvers, "approvers")
        object.__setattr__(self, "approvers", approvers)
        required = self.required
        if isinstance(required, bool) or not isinstance(required, int):
            raise DefinitionError(f"required approvals must be a whole number, got {required!r}")
        if self.kind is ApprovalKind.APPROVERS:
            if not approvers:
                raise DefinitionError("an approval by named approvers names at least one")
            if not 1 <= required <= len(approvers):
                raise DefinitionError(
                    f"{required} of {len(approvers)} approvers cannot work: require 1 to "
                    f"{len(approvers)}"
                )
        elif approvers:
            raise DefinitionError(
                f"{self.kind} approval takes no named approvers (use ApprovalPolicy.of)"
            )
        elif required != (self.kind is ApprovalKind.MANAGER):
            raise DefinitionError(
                f"{self.kind} approval requires {int(self.kind is ApprovalKind.MANAGER)} "
                f"approvals, not {required}"
            )

    @classmethod
    def none(cls) -> Self:
        """No approval: requests are approved when submitted."""
        return cls(ApprovalKind.NONE)

    @classmethod
    def manager(cls) -> Self:
        """The requester's manager approves (named with each request)."""
        return cls(ApprovalKind.MANAGER, (), 1)

    @classmethod
    def of(cls, required: int, approvers: Iterable[str]) -> Self:
        """``required`` of the named ``approvers`` must approve; any one rejection rejects."""
        return cls(ApprovalKind.APPROVERS, tuple(_names(approvers, "approvers")), required)

    @classmethod
    def any_of(cls, approvers: Iterable[str]) -> Self:
        """Any one of the named approvers."""
        return cls.of(1, approvers)

    @classmethod
    def all_of(cls, approvers: Iterable[str]) -> Self:
        """Every one of the named approvers."""
        names = _names(approvers, "approvers")
        return cls.of(len(names), names)


NO_APPROVAL: Final = ApprovalPolicy.none()


# --------------------------------------------------------------------------- catalog items


def _fields(value: Iterable[FormField]) -> tuple[FormField, ...]:
    try:
        fields = tuple(value)
    except TypeError:
        raise DefinitionError(f"fields are a collection of FormFields, got {value!r}") from None
    if not all(isinstance(f, FormField) for f in fields):
        raise DefinitionError("fields are FormField definitions")
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DefinitionError(f"field names must be distinct: {', '.join(duplicates)} twice")
    return fields


def _item_name(value: object) -> str:
    return _defined(label, value, "catalog item name")  # type: ignore[no-any-return]


def _service(value: object) -> str:
    return _defined(label, value, "service")  # type: ignore[no-any-return]


def _tasks(value: Iterable[str]) -> tuple[str, ...]:
    return _names(value, "tasks")


@attrs.frozen(kw_only=True)
class CatalogItem:
    """Something users can request: its form, approval, fulfilment tasks and target time.

    ``service`` is the id of the business service it belongs to. ``tasks`` are the named
    fulfilment steps, done in the order given unless ``parallel_tasks``. ``target`` is the
    business time a request should take to fulfil (see :func:`fulfilment_sla`). ``version``
    tells apart successive definitions of one item; requests keep the version they were
    submitted on.
    """

    name: str = attrs.field(converter=_item_name)
    service: str = attrs.field(converter=_service)
    target: timedelta
    fields: tuple[FormField, ...] = attrs.field(default=(), converter=_fields)
    approval: ApprovalPolicy = NO_APPROVAL
    tasks: tuple[str, ...] = attrs.field(default=(), converter=_tasks)
    parallel_tasks: bool = False
    description: str = ""
    version: int = 1

    def __attrs_post_init__(self) -> None:
        where = f"catalog item {self.name!r}"
        if not isinstance(self.target, timedelta) or self.target <= timedelta(0):
            raise DefinitionError(f"{where}: target must be a positive timedelta")
        if not isinstance(self.approval, ApprovalPolicy):
            raise DefinitionError(f"{where}: approval must be an ApprovalPolicy")
        _flag(self.parallel_tasks, f"{where}: parallel_tasks")
        if not isinstance(self.description, str):
            raise DefinitionError(f"{where}: description must be text")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise DefinitionError(f"{where}: version must be a whole number from 1")

    def field(self, name: str) -> FormField:
        """The form field called ``name`` (``FormError`` if the item has none)."""
        for f in self.fields:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.fields) or "none"
        raise FormError(str(name), f"{self.name} has no such field; its fields: {known}")

    def validate(self, values: Mapping[str, object] | None = None) -> tuple[Answer, ...]:
        """The answers a submitted form gives, in the form's order, each checked.

        An empty value (``None``, blank text) takes the field's default, or leaves the field
        unanswered. Raises ``FormError`` (a ``ValidationError``) naming the field for an
        unknown field, a required one left empty, or a value that does not fit its field.
        """
        given = {} if values is None else values
        if not isinstance(given, Mapping):
            raise ValidationError(f"form values are a mapping of field names, got {given!r}")
        for name in given:
            self.field(name)  # every key must be a field of the item
        answers = []
        for f in self.fields:
            value = given.get(f.name)
            if _blank(value):
                value = f.default
            if value is None:
                if f.required:
                    raise FormError(f.name, f"required by {self.name}, and left empty")
                continue
            answers.append(Answer(f.name, f.type, _as_text(f.type, f.parse(value))))
        return tuple(answers)


_ALWAYS: Final = BusinessCalendar.always(tz="UTC")


def fulfilment_sla(
    items: Iterable[CatalogItem],
    calendar: BusinessCalendar | None = None,
    *,
    name: str = "request fulfilment",
) -> SLADefinition:
    """The fulfilment clock of requests, with each catalog item's target time.

    The neutral :meth:`SLADefinition.resolution` preset, classed by the request's catalog
    item: it runs from submission, is paused while the request awaits approval, is met when
    fulfilled and canceled when rejected or canceled. Evaluating a request of an item not
    among ``items`` is a ``ValidationError`` naming the item.
    """
    targets: dict[str, timedelta] = {}
    if isinstance(items, CatalogItem) or not isinstance(items, Iterable):
        raise DefinitionError(f"{name}: items are a collection of CatalogItems, got {items!r}")
    for item in items:
        if not isinstance(item, CatalogItem):
            raise DefinitionError(f"{name}: items are CatalogItems, got {item!r}")
        if item.name in targets:
            raise DefinitionError(f"{name}: two catalog items are named {item.name!r}")
        targets[item.name] = item.target
    if not targets:
        raise DefinitionError(f"{name}: give at least one catalog item")
    preset = SLADefinition.resolution(
        targets,
        _ALWAYS if calendar is None else calendar,
        name=name,
        classify=attrgetter("catalog_item"),
        classes=targets,
    )
    # The preset's conditions read the state; the class is the catalog item. Declaring both
    # lets evaluation skip the events that change neither (assignments, comments, tasks).
    return attrs.evolve(preset, reads=("state", "catalog_item"))


# --------------------------------------------------------------------------- states, events


class RequestState(StrEnum):
    """Where a service request is."""

    SUBMITTED = "submitted"
    """Awaiting approval (an item without approval passes through at once)."""
    APPROVED = "approved"
    REJECTED = "rejected"
    IN_FULFILMENT = "in_fulfilment"
    FULFILLED = "fulfilled"
    CLOSED = "closed"
    CANCELED = "canceled"


@attrs.frozen(kw_only=True)
class RequestOpened(Opened):
    """A request was submitted from a catalog item, with its answers."""

    type: ClassVar[str] = "request.opened"
    catalog_item: str
    catalog_version: int
    service: str
    requester: str
    requested_for: str
    answers: tuple[Answer, ...]
    approvers: tuple[str, ...]
    approvals_required: int
    tasks: tuple[str, ...]
    parallel_tasks: bool


@attrs.frozen(kw_only=True)
class RequestApproved(Event):
    """An approver approved (the deciding approval moves the request to approved).

    ``approver`` is ``None`` for the automatic approval of an item that needs none.
    """

    type: ClassVar[str] = "request.approved"
    approver: str | None
    comment: str


@attrs.frozen(kw_only=True)
class RequestRejected(Event):
    """An approver rejected: the request is rejected."""

    type: ClassVar[str] = "request.rejected"
    approver: str
    reason: str


@attrs.frozen(kw_only=True)
class RequestFulfilmentStarted(Event):
    """Fulfilment began."""

    type: ClassVar[str] = "request.fulfilment_started"


@attrs.frozen(kw_only=True)
class RequestTaskCompleted(Event):
    """One fulfilment task was done."""

    type: ClassVar[str] = "request.task_completed"
    task: str
    notes: str


@attrs.frozen(kw_only=True)
class RequestFulfilled(Event):
    """Everything requested was delivered."""

    type: ClassVar[str] = "request.fulfilled"
    notes: str


@attrs.frozen(kw_only=True)
class RequestClosed(Event):
    """The fulfilled request was closed."""

    type: ClassVar[str] = "request.closed"


@attrs.frozen(kw_only=True)
class RequestAssigned(Assigned):
    """Routed to a fulfilment group and/or a person."""

    type: ClassVar[str] = "request.assigned"


@attrs.frozen(kw_only=True)
class RequestCommented(Commented):
    """A comment or work note."""

    type: ClassVar[str] = "request.commented"


@attrs.frozen(kw_only=True)
class RequestLinked(Linked):
    """Now points at an incident or a change."""

    type: ClassVar[str] = "request.linked"


@attrs.frozen(kw_only=True)
class RequestUnlinked(Unlinked):
    """A link was removed."""

    type: ClassVar[str] = "request.unlinked"


@attrs.frozen(kw_only=True)
class RequestCanceled(Canceled):
    """Withdrawn before it was fulfilled."""

    type: ClassVar[str] = "request.canceled"


# --------------------------------------------------------------------------- guards
# Each takes the request and the verb's event fields; a string refuses and says why.


def _named_approver(request: Any, context: Mapping[str, Any]) -> str | None:
    approver = context.get("approver")
    if approver is None:
        return None if request.approvals_required == 0 else "an approval names its approver"
    if approver not in request.approvers:
        named = ", ".join(request.approvers) or "none"
        return f"{approver} is not a named approver of {request.id} (approvers: {named})"
    return None


def _not_requester(request: Any, context: Mapping[str, Any]) -> str | None:
    if context.get("approver") == request.requester:
        return f"{request.requester} requested {request.id} and cannot approve or reject it"
    return None


def _first_decision(request: Any, context: Mapping[str, Any]) -> str | None:
    approver = context.get("approver")
    if approver is not None and approver in request.approved_by:
        return f"{approver} has already approved {request.id}"
    return None


def _decides(request: Any, _context: Mapping[str, Any]) -> str | None:
    if len(request.approved_by) + 1 < request.approvals_required:
        return f"{request.approvals_required - len(request.approved_by)} approvals are needed"
    return None


def _short_of_approval(request: Any, _context: Mapping[str, Any]) -> str | None:
    if len(request.approved_by) + 1 >= request.approvals_required:
        return "this approval decides the request: it is an approve"
    return None


def _task_to_do(request: Any, context: Mapping[str, Any]) -> str | None:
    task = context.get("task")
    if task not in request.tasks:
        return f"{request.id} has no task {task!r}; tasks: {', '.join(request.tasks) or 'none'}"
    if task in request.completed_tasks:
        return f"task {task!r} is done already"
    if not request.parallel_tasks:
        before = request.tasks[: request.tasks.index(task)]
        waiting = [t for t in before if t not in request.completed_tasks]
        if waiting:
            return f"tasks are done in order: {', '.join(waiting)} first"
    return None


def _every_task_done(request: Any, _context: Mapping[str, Any]) -> str | None:
    pending = request.pending_tasks
    if pending:
        return f"tasks still to do: {', '.join(pending)}"
    return None


_SUBMITTED, _APPROVED = RequestState.SUBMITTED, RequestState.APPROVED
_WORK, _FULFILLED = RequestState.IN_FULFILMENT, RequestState.FULFILLED
_OPEN: Final = (_SUBMITTED, _APPROVED, _WORK)
_VOTER: Final = (_named_approver, _not_requester, _first_decision)

REQUEST_WORKFLOW: Final = Workflow(
    name="request",
    states=tuple(RequestState),
    initial=_SUBMITTED,
    terminal=(RequestState.REJECTED, RequestState.CLOSED, RequestState.CANCELED),
    transitions=(
        Transition("approve", _SUBMITTED, _APPROVED, guards=(*_VOTER, _decides)),
        Transition("vote", _SUBMITTED, guards=(*_VOTER, _short_of_approval)),
        Transition("reject", _SUBMITTED, RequestState.REJECTED, guards=_VOTER),
        Transition("start_fulfilment", _APPROVED, _WORK),
        Transition("complete_task", _WORK, guards=(_task_to_do,)),
        Transition("fulfil", _WORK, _FULFILLED, guards=(_every_task_done,)),
        Transition("close", _FULFILLED, RequestState.CLOSED),
        Transition("cancel", _OPEN, RequestState.CANCELED),
        Transition("assign", _OPEN),
        Transition("comment", (*_OPEN, _FULFILLED)),
        Transition("link", (*_OPEN, _FULFILLED)),
        Transition("unlink", (*_OPEN, _FULFILLED)),
    ),
    tags={
        ACTIVE: _OPEN,
        PAUSED: (_SUBMITTED,),
        MET: (_FULFILLED, RequestState.CLOSED),
        CANCELED: (RequestState.REJECTED, RequestState.CANCELED),
    },
)
"""Submitted → approved / rejected → in fulfilment → fulfilled → closed; canceled while open.

Tags: submitted, approved and in fulfilment are ``active``; submitted (awaiting approval) is
``paused``; fulfilled and closed are ``met``; rejected and canceled are ``canceled``.
"""


def _optional_note(value: object, name: str) -> str:
    """Text that may be left empty (``""``)."""
    return "" if value == "" else text(value, name)


# --------------------------------------------------------------------------- the record


@attrs.frozen(kw_only=True, slots=False)
class ServiceRequest(Assignable, Commentable, Linkable, Cancelable):
    """A user's request for an item of the service catalog, from approval to fulfilment."""

    kind: ClassVar[str] = "request"
    number_prefix: ClassVar[str | None] = "REQ"
    state_enum: ClassVar[type[StrEnum]] = RequestState
    default_workflow: ClassVar[Workflow] = REQUEST_WORKFLOW
    link_fields: ClassVar[Mapping[str, str]] = {"incident": "incidents", "change": "changes"}
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("request")),
        Column("catalog_item", str),
        Column("service", str),
        Column("requester", str),
        Column("requested_for", str),
        Column("assignment_group", str),
        Column("assignee", str),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    catalog_item: str
    catalog_version: int
    service: str
    requester: str
    requested_for: str
    answers: tuple[Answer, ...]
    approvers: tuple[str, ...]
    """Who may approve: the item's named approvers, or the requester's manager."""
    approvals_required: int
    """How many distinct approvers must approve (0: no approval needed)."""
    tasks: tuple[str, ...]
    parallel_tasks: bool
    approved_by: tuple[str, ...] = ()
    approved_at: datetime | None = None
    rejected_by: str | None = None
    rejection_reason: str | None = None
    completed_tasks: tuple[str, ...] = ()
    """The tasks done, in the order they were done."""
    fulfilled_at: datetime | None = None
    fulfilment_notes: str | None = None
    incidents: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()

    # ----------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        item: CatalogItem,
        requester: str,
        at: datetime,
        by: str,
        values: Mapping[str, object] | None = None,
        requested_for: str | None = None,
        manager: str | None = None,
        workflow: Workflow = REQUEST_WORKFLOW,
    ) -> Self:
        """Submit a request for ``item`` with the form's ``values``, checked against the item.

        ``manager`` names the requester's manager, required (and only taken) when the item
        needs manager approval. An item without approval is approved at once.

        Raises:
            FormError: a value is unknown, missing, of the wrong type or out of range (a
                ``ValidationError`` whose ``field`` names the field).
            ValidationError: no catalog item, a bad name, a manager missing or not wanted, or
                an approval nobody but the requester could give.
        """
        if not isinstance(item, CatalogItem):
            raise ValidationError(f"item must be a CatalogItem, got {type(item).__name__}")
        workflow = cls._workflow(workflow)
        requester = label(requester, "requester")
        answers = item.validate(values)
        approvers, required = cls._approvers(item, requester, manager)
        event = RequestOpened(
            at=at, by=by, state=workflow.initial, workflow=workflow.name, id=label(id, "id"),
            catalog_item=item.name, catalog_version=item.version, service=item.service,
            requester=requester, answers=answers, approvers=approvers,
            requested_for=optional_label(requested_for, "requested_for") or requester,
            approvals_required=required, tasks=item.tasks, parallel_tasks=item.parallel_tasks,
        )  # fmt: skip
        request = cls._opened(event, workflow)
        if required == 0:
            request = request._do(  # noqa: SLF001 - this class's own engine call
                "approve", RequestApproved, event.at, AUTO_APPROVER, approver=None,
                comment=f"{item.name} needs no approval",
            )  # fmt: skip
        return request

    @staticmethod
    def _approvers(
        item: CatalogItem, requester: str, manager: str | None
    ) -> tuple[tuple[str, ...], int]:
        policy = item.approval
        approvers: tuple[str, ...] = policy.approvers
        required = policy.required
        if policy.kind is ApprovalKind.MANAGER:
            if manager is None:
                raise ValidationError(f"{item.name} needs manager approval: name the manager=")
            approvers = (label(manager, "manager"),)
        elif manager is not None:
            raise ValidationError(f"{item.name}'s approval is {policy.kind}: it takes no manager=")
        if len([a for a in approvers if a != requester]) < required:
            raise ValidationError(
                f"{requester} cannot approve their own request, and {required} of the other "
                f"approvers ({', '.join(a for a in approvers if a != requester) or 'none'}) "
                "are needed"
            )
        return approvers, required

    # ----------------------------------------------------------------------- reading

    @property
    def values(self) -> dict[str, object]:
        """The answered form fields, typed (``int``, ``Decimal``, ``bool``, ``date``, ``str``)."""
        return {a.name: a.value for a in self.answers}

    @property
    def pending_tasks(self) -> tuple[str, ...]:
        """The fulfilment tasks not done yet, in the item's order."""
        return tuple(t for t in self.tasks if t not in self.completed_tasks)

    @property
    def approvals_missing(self) -> int:
        """How many more approvals the request needs (0 once approved or when none is)."""
        return max(self.approvals_required - len(self.approved_by), 0)

    # ----------------------------------------------------------------------- verbs

    @verb
    def approve(
        self, *, at: datetime, by: str, approver: str | None = None, comment: str = ""
    ) -> Self:
        """Approve as ``approver`` (``by`` by default; a desk agent may record it for them).

        The approval that makes ``approvals_required`` distinct approvers moves the request
        to approved; an earlier one is recorded and the request keeps awaiting approval.
        A person who is not a named approver, the requester, or an approver who already
        approved is refused (``InvalidTransitionError`` saying why).
        """
        who = label(by if approver is None else approver, "approver")
        trigger = "approve" if self.approvals_missing <= 1 else "vote"
        return self._do(
            trigger, RequestApproved, at, by, approver=who,
            comment=_optional_note(comment, "comment"),
        )  # fmt: skip

    @verb
    def reject(self, *, reason: str, at: datetime, by: str, approver: str | None = None) -> Self:
        """Reject as ``approver`` (``by`` by default): one rejection rejects the request."""
        who = label(by if approver is None else approver, "approver")
        return self._do(
            "reject", RequestRejected, at, by, approver=who, reason=text(reason, "reason")
        )

    @verb
    def vote(
        self,
        *,
        decision: ApprovalDecision | str,
        at: datetime,
        by: str,
        approver: str | None = None,
        comment: str = "",
    ) -> Self:
        """Record a decision either way (:meth:`approve` or :meth:`reject` by its name)."""
        found = member(ApprovalDecision, decision, "decision")
        if found is ApprovalDecision.REJECT:
            return self.reject(reason=comment, at=at, by=by, approver=approver)
        return self.approve(comment=comment, at=at, by=by, approver=approver)

    @verb
    def start_fulfilment(self, *, at: datetime, by: str) -> Self:
        """Approved → in fulfilment: work on the tasks begins."""
        return self._do("start_fulfilment", RequestFulfilmentStarted, at, by)

    @verb
    def complete_task(self, *, task: str, at: datetime, by: str, notes: str = "") -> Self:
        """Mark one fulfilment task done (in order, unless the item's tasks are parallel)."""
        return self._do(
            "complete_task", RequestTaskCompleted, at, by, task=label(task, "task"),
            notes=_optional_note(notes, "notes"),
        )  # fmt: skip

    @verb
    def fulfil(self, *, at: datetime, by: str, notes: str = "") -> Self:
        """In fulfilment → fulfilled, once every task is done."""
        return self._do("fulfil", RequestFulfilled, at, by, notes=_optional_note(notes, "notes"))

    @verb
    def close(self, *, at: datetime, by: str) -> Self:
        """Fulfilled → closed."""
        return self._do("close", RequestClosed, at, by)

    # ----------------------------------------------------------------------- appliers

    @applies(RequestApproved, sets=("approved_by", "approved_at"))
    def _on_approved(self, e: RequestApproved) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        if e.approver is not None:
            out["approved_by"] = (*self.approved_by, e.approver)
        if e.state != self.state:
            out["approved_at"] = e.at
        return out

    @applies(RequestRejected, sets=("rejected_by", "rejection_reason"))
    def _on_rejected(self, e: RequestRejected) -> Mapping[str, Any]:
        return {"rejected_by": e.approver, "rejection_reason": e.reason}

    @applies(RequestFulfilmentStarted, RequestClosed, sets=())
    def _on_moved(self, _e: Event) -> Mapping[str, Any]:
        return _NOTHING

    @applies(RequestTaskCompleted, sets=("completed_tasks",))
    def _on_task(self, e: RequestTaskCompleted) -> Mapping[str, Any]:
        return {"completed_tasks": (*self.completed_tasks, e.task)}

    @applies(RequestFulfilled, sets=("fulfilled_at", "fulfilment_notes"))
    def _on_fulfilled(self, e: RequestFulfilled) -> Mapping[str, Any]:
        return {"fulfilled_at": e.at, "fulfilment_notes": e.notes}


_NOTHING: Final[Mapping[str, Any]] = {}
