"""Routing and tiered support: assignment rules as data, and automatic functional escalation.

**Routing.** A :class:`RuleSet` holds ordered rules (:class:`Rule`). A rule's conditions read
fields of the record it routes (``category``, ``service``, ``ci``, ``channel``, ``priority``
… any field of the record kind) and attributes of its caller (``caller.location``,
``caller.vip``). Records hold only a caller *id*, so the caller attributes come from a
directory the application passes to :meth:`RuleSet.route`: a mapping from caller id to
:class:`Caller` (a caller missing from it has no location and is not a VIP). The rule set
routes by the first matching rule, or by the best-scoring one; a default group takes
everything no rule matches. A :class:`Group` may keep business hours, outside of which its
work goes to its on-call group. Everything is checked when the rule set is built: unknown
fields, values of the wrong type, unknown or memberless groups, a missing default.

**Tiered support.** An :class:`Escalator` holds the tiers (L1, L2, L3 …, each one group or
several) and the SLA clocks that drive functional escalation: when a clock crosses the
escalation threshold (e.g. 75 % of its target) while the record sits with tier N, the record
is due to move to tier N+1. It is driven by the clocks' ``next_event_at``, not by polling:
:meth:`Escalator.next_check` says when to look again.

Everything here is pure: no I/O, no wall clock; time is always the caller's ``at``.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum, StrEnum
from fractions import Fraction
from typing import Any, Final, TypeVar

import attrs

from itsmcore._time import require_aware
from itsmcore.calendar import BusinessCalendar
from itsmcore.capabilities import Assignable
from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.priority import Level
from itsmcore.record import MAX_LABEL, Record
from itsmcore.sla import SLADefinition
from itsmcore.workflow import ACTIVE

__all__ = [
    "Caller",
    "Condition",
    "Escalation",
    "Escalator",
    "Group",
    "Match",
    "Routing",
    "Rule",
    "RuleSet",
]

_R = TypeVar("_R", bound=Assignable)

CALLER_PREFIX: Final = "caller."
"""Condition fields that start with this read the caller's attributes (``caller.vip``)."""
DEFAULT_RULE: Final = "default"
"""The name of the rule that takes what no other rule matches."""


# --------------------------------------------------------------------------- value checks


def _name(value: object, what: str) -> str:
    """A group or rule name: non-empty text of at most ``MAX_LABEL`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"{what} must be a non-empty name, got {value!r}")
    value = value.strip()
    if len(value) > MAX_LABEL:
        raise DefinitionError(f"{what} is longer than {MAX_LABEL} characters")
    return value


def _show(value: object) -> str:
    """A condition value as an agent reads it: ``network``, ``P1``, ``True``, ``none``."""
    if value is None:
        return "none"
    if isinstance(value, Level):
        return value.name
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


# --------------------------------------------------------------------------- groups, callers


def _members(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise DefinitionError(f"members must be a collection of names, got {value!r}")
    return frozenset(_name(m, "a member") for m in value)


def _optional_name(value: object) -> str | None:
    return None if value is None else _name(value, "on_call")


def _group_name(value: object) -> str:
    return _name(value, "a group's name")


def _rule_name(value: object) -> str:
    return _name(value, "a rule's name")


def _rule_group(value: object) -> str:
    return _name(value, "a rule's group")


def _default_group(value: object) -> str:
    if value is None:
        raise DefinitionError(
            "a rule set needs a default group (default=...) for what no rule matches; "
            "without one it could leave work unrouted"
        )
    return _name(value, "the default group")


@attrs.frozen
class Group:
    """An assignment group: its members, and optionally its hours and on-call group.

    A group with ``hours`` (a ``BusinessCalendar``) takes work only while they are open;
    outside them its work goes to ``on_call`` (itself possibly with hours and an on-call
    group of its own). Hours and an on-call group go together. A group needs members: work
    routed to an empty group would sit with nobody.
    """

    name: str = attrs.field(converter=_group_name)
    members: frozenset[str] = attrs.field(converter=_members)
    hours: BusinessCalendar | None = attrs.field(default=None, kw_only=True)
    on_call: str | None = attrs.field(default=None, kw_only=True, converter=_optional_name)

    def __attrs_post_init__(self) -> None:
        if not self.members:
            raise DefinitionError(f"group {self.name!r} has no members; work there sits unowned")
        if self.hours is not None and not isinstance(self.hours, BusinessCalendar):
            raise DefinitionError(f"group {self.name!r}: hours must be a BusinessCalendar")
        if (self.hours is None) != (self.on_call is None):
            raise DefinitionError(
                f"group {self.name!r}: give hours and an on_call group together (out of hours "
                "its work goes to the on-call group)"
            )
        if self.on_call == self.name:
            raise DefinitionError(f"group {self.name!r} cannot be its own on-call group")


def _groups(value: object) -> dict[str, Group]:
    if isinstance(value, (str, Group)) or not isinstance(value, Iterable):
        raise DefinitionError(f"groups must be a collection of Group, got {value!r}")
    out: dict[str, Group] = {}
    for group in value:
        if not isinstance(group, Group):
            raise DefinitionError(f"groups must be Group objects, got {group!r}")
        if group.name in out:
            raise DefinitionError(f"group {group.name!r} is declared twice")
        out[group.name] = group
    if not out:
        raise DefinitionError("declare the assignment groups (at least one)")
    for group in out.values():
        seen = [group.name]
        on_call = group.on_call
        while on_call is not None:
            if on_call not in out:
                raise DefinitionError(
                    f"group {seen[-1]!r}: on-call group {on_call!r} is not a declared group"
                )
            if on_call in seen:
                raise DefinitionError(
                    f"on-call groups go round in a circle: {' -> '.join([*seen, on_call])}"
                )
            seen.append(on_call)
            on_call = out[on_call].on_call
    return out


@attrs.frozen(kw_only=True)
class Caller:
    """What routing may know about a caller: where they are and whether they are a VIP.

    Records hold the caller's id; the application passes a directory, a mapping from caller
    id to ``Caller``, to :meth:`RuleSet.route`. Conditions read these fields as
    ``caller.location`` and ``caller.vip``.
    """

    location: str | None = None
    vip: bool = False

    def __attrs_post_init__(self) -> None:
        if self.location is not None and (
            not isinstance(self.location, str) or not self.location.strip()
        ):
            raise ValidationError(f"a caller's location must be text, got {self.location!r}")
        if not isinstance(self.vip, bool):
            raise ValidationError(f"a caller's vip flag must be True or False, got {self.vip!r}")


_NOBODY: Final = Caller()


# --------------------------------------------------------------------------- rules


@attrs.frozen
class Condition:
    """One condition of a rule: ``field`` holds one of ``values``.

    For a field holding several values (a change's ``services``), the condition holds when
    any of them is among ``values``.
    """

    field: str
    values: tuple[Hashable, ...]

    def describe(self) -> str:
        """The condition as a service desk agent reads it: ``category is network``."""
        if len(self.values) == 1:
            return f"{self.field} is {_show(self.values[0])}"
        return f"{self.field} is one of {', '.join(_show(v) for v in self.values)}"


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, Enum))


def _when(value: object) -> tuple[Condition, ...]:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"a rule's conditions map fields to values, got {value!r}")
    out = []
    for field, wanted in value.items():
        name = _name(field, "a condition's field")
        if _scalar(wanted):
            values: tuple[Any, ...] = (wanted,)
        elif isinstance(wanted, (list, tuple, set, frozenset)) and wanted:
            values = tuple(wanted)
            if not all(_scalar(v) for v in values):
                raise DefinitionError(f"condition on {name}: values must be plain values")
        else:
            raise DefinitionError(
                f"condition on {name}: give a value or a non-empty collection of values, "
                f"got {wanted!r}"
            )
        out.append(Condition(name, values))
    return tuple(out)


@attrs.frozen
class Rule:
    """An assignment rule: when every condition holds, the work goes to ``group``.

    ``when`` maps fields to a value or a collection of values (any of them matches):
    ``Rule("vip", group="vip-desk", when={"caller.vip": True})``. A rule needs at least one
    condition in a rule set (what no rule matches goes to its default group).
    """

    name: str = attrs.field(converter=_rule_name)
    group: str = attrs.field(kw_only=True, converter=_rule_group)
    when: tuple[Condition, ...] = attrs.field(kw_only=True, converter=_when)


class Match(StrEnum):
    """How a rule set picks among the rules that match."""

    FIRST = "first"
    """The first matching rule, in order."""
    BEST = "best"
    """The matching rule with the highest score (ties: the earlier rule)."""


def _match(value: object) -> Match:
    if isinstance(value, Match):
        return value
    try:
        return Match(str(value).strip().lower())
    except ValueError:
        raise DefinitionError(f"mode must be 'first' or 'best', got {value!r}") from None


# --------------------------------------------------------------------------- field types


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a record or caller class (empty where they cannot be)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # e.g. a vendor's TYPE_CHECKING import
        return {}


def _options(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _element(annotation: Any) -> Any | None:
    """The element type of a ``tuple[X, ...]`` or ``frozenset[X]`` field, else ``None``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if origin in (frozenset, set) and len(args) == 1:
        return args[0]
    return None


def _typed(value: object, annotation: Any) -> object:
    """``value`` as the field's type holds it; ``_UNTYPED`` if it cannot be one."""
    for option in _options(annotation):
        found = _as(value, option)
        if found is not _UNTYPED:
            return found
    return _UNTYPED


def _as(value: object, option: Any) -> object:
    """``value`` as one type of a field's union, or ``_UNTYPED``."""
    if isinstance(option, type) and issubclass(option, Enum):
        if isinstance(value, option):
            return value
        found = _enum_member(option, value)
        return _UNTYPED if found is None else found
    plain = (
        (option is type(None) and value is None)
        or (option is bool and isinstance(value, bool))
        or (option is int and isinstance(value, int) and not isinstance(value, bool))
    )
    if plain:
        return value
    if option is str and isinstance(value, str) and value.strip():
        return value.strip()
    return _UNTYPED


def _enum_member(kind: type[Enum], value: object) -> Enum | None:
    if issubclass(kind, Level):
        if kind is Level or isinstance(value, bool):
            return None
        try:
            return kind.parse(value)
        except ValidationError:
            return None
    if isinstance(value, str):
        try:
            return kind(value.strip().lower().replace(" ", "_").replace("-", "_"))
        except ValueError:
            return None
    return None


_UNTYPED: Final = object()
_ROUTABLE: Final = (str, int, bool, type(None))


def _routable(annotation: Any) -> bool:
    return all(
        option in _ROUTABLE or (isinstance(option, type) and issubclass(option, Enum))
        for option in _options(annotation)
    )


@attrs.frozen
class _Field:
    """How a condition field is read from a record and what its values may be."""

    name: str
    read: Callable[[Any, Caller], Any]
    annotation: Any
    many: bool
    """The field holds several values (a tuple or frozenset)."""

    def compile(self, condition: Condition, rule: str) -> Condition:
        out = []
        for value in condition.values:
            typed = _typed(value, self.annotation) if self.annotation is not None else value
            if typed is _UNTYPED:
                raise DefinitionError(
                    f"rule {rule!r}: {value!r} is not a value of {self.name} "
                    f"({_type_name(self.annotation)})"
                )
            out.append(typed)
        return Condition(condition.field, tuple(dict.fromkeys(out)))

    def holds(self, condition: Condition, record: Any, caller: Caller) -> bool:
        value = self.read(record, caller)
        if self.many:
            return any(v in condition.values for v in value)
        return value in condition.values


def _type_name(annotation: Any) -> str:
    return " | ".join(getattr(o, "__name__", str(o)) for o in _options(annotation)).replace(
        "NoneType", "None"
    )


def _record_field(name: str, annotation: Any) -> _Field:
    def read(record: Any, _caller: Caller) -> Any:
        return getattr(record, name)

    element = _element(annotation) if annotation is not None else None
    if annotation is not None and element is None and not _routable(annotation):
        raise DefinitionError(
            f"rules cannot route on {name} ({_type_name(annotation)}); route on fields that "
            "hold text, numbers, flags or enum members"
        )
    if element is not None and not _routable(element):
        raise DefinitionError(f"rules cannot route on {name} ({annotation})")
    return _Field(name, read, element if element is not None else annotation, element is not None)


def _caller_field(name: str, attribute: str, annotation: Any) -> _Field:
    def read(_record: Any, caller: Caller) -> Any:
        return getattr(caller, attribute)

    return _Field(name, read, annotation, many=False)


_ENGINE_ONLY: Final = frozenset({"history", "workflow"})


def _fields_of(kind: type[Record], caller_field: str | None) -> dict[str, _Field]:
    """Every field rules may name for records of ``kind``."""
    hints = _hints(kind)
    out: dict[str, _Field] = {}
    for field in attrs.fields(kind):
        if field.name in _ENGINE_ONLY:
            continue
        annotation = hints.get(field.name)
        try:
            out[field.name] = _record_field(field.name, annotation)
        except DefinitionError:
            continue  # not routable: naming it in a rule says so (below)
    if caller_field is not None:
        caller_hints = _hints(Caller)
        for field in attrs.fields(Caller):
            name = f"{CALLER_PREFIX}{field.name}"
            out[name] = _caller_field(name, field.name, caller_hints[field.name])
    return out


# --------------------------------------------------------------------------- the rule set


@attrs.frozen(kw_only=True)
class Routing:
    """Where a record goes, by which rule, and why (a sentence an agent can read)."""

    record_id: str
    group: str
    """The group the work goes to (the on-call group when the rule's group is closed)."""
    rule: Rule
    """The rule that matched; the rule set's default rule when none did."""
    rule_group: str
    """The group the rule names, before business hours were considered."""
    score: int
    """The rule's score (the sum of its conditions' weights; 0 for the default rule)."""
    why: str

    def apply(self, record: _R, *, at: datetime, by: str) -> _R:
        """Assign ``record`` to the routed group through its ``assign`` verb.

        The history shows the assignment like any other. A record already with the group is
        returned as it is (nothing moved).

        Raises:
            ValidationError: ``record`` is not the record this routing was made for.
            InvalidTransitionError: its workflow does not let it be assigned now.
        """
        if getattr(record, "id", None) != self.record_id:
            raise ValidationError(
                f"this routing was made for {self.record_id}, not {getattr(record, 'id', record)!r}"
            )
        if record.assignment_group == self.group:
            return record
        return record.assign(group=self.group, at=at, by=by)


def _rules(value: object) -> tuple[Rule, ...]:
    if isinstance(value, (str, Rule)) or not isinstance(value, Iterable):
        raise DefinitionError(f"rules must be a sequence of Rule, got {value!r}")
    out = tuple(value)
    if not all(isinstance(r, Rule) for r in out):
        raise DefinitionError("rules must be Rule objects")
    return out


def _weights(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"weights map condition fields to positive integers: {value!r}")
    for field, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            raise DefinitionError(f"weight of {field!r} must be a positive integer, not {weight!r}")
    return dict(value)


def _kind(value: object) -> type[Assignable]:
    if not (isinstance(value, type) and issubclass(value, Assignable) and hasattr(value, "kind")):
        raise DefinitionError(
            f"kind must be a record class with the Assignable capability, got {value!r}"
        )
    return value


@attrs.frozen(kw_only=True)
class RuleSet:
    """Assignment rules for one record kind, a default group, and how to pick a rule.

    ``mode="first"`` takes the first rule whose conditions all hold; ``mode="best"`` the
    matching rule with the highest score, a rule's score being the sum of its conditions'
    ``weights`` (1 per condition unless weighted), ties going to the earlier rule. What no
    rule matches goes to ``default``.

    Rules name fields of ``kind`` (any field holding text, numbers, flags or enum members,
    or collections of them) and, when ``caller_field`` names the record field holding the
    caller's id (``"caller"`` by default, ``None`` for kinds without callers), the caller's
    attributes ``caller.location`` and ``caller.vip``.

    Raises:
        DefinitionError: when built, for a missing default, a rule naming an unknown
            field or a group not declared in ``groups``, a value of the wrong type,
            two rules of the same name, or weights without ``mode="best"``.
    """

    rules: tuple[Rule, ...] = attrs.field(converter=_rules)
    """The rules in order, as checked: each condition's values as the field holds them."""
    default: str = attrs.field(default=None, converter=_default_group)
    groups: dict[str, Group] = attrs.field(converter=_groups, hash=False)
    kind: type[Assignable] = attrs.field(converter=_kind)
    mode: Match = attrs.field(default=Match.FIRST, converter=_match)
    weights: dict[str, int] = attrs.field(factory=dict, converter=_weights, hash=False)
    caller_field: str | None = "caller"
    _fields: dict[str, _Field] = attrs.field(init=False, eq=False, repr=False, hash=False)
    _compiled: tuple[tuple[Rule, int], ...] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _default_rule: Rule = attrs.field(init=False, eq=False, repr=False, hash=False)
    _reads_caller: bool = attrs.field(init=False, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.caller_field is not None and self.caller_field not in attrs.fields_dict(self.kind):
            raise DefinitionError(
                f"{self.kind.__name__} has no field {self.caller_field!r} holding the caller; "
                "pass caller_field=None for a kind without callers"
            )
        fields = _fields_of(self.kind, self.caller_field)
        object.__setattr__(self, "_fields", fields)
        self._check_group(self.default, "the default group")
        if self.mode is not Match.BEST and self.weights:
            raise DefinitionError("weights score rules for mode='best'; first match has no score")
        for field in self.weights:
            self._field(field, "weights")
        names: set[str] = {DEFAULT_RULE}
        compiled = []
        for rule in self.rules:
            if rule.name in names:
                raise DefinitionError(
                    f"rule name {rule.name!r} is used twice"
                    if rule.name != DEFAULT_RULE
                    else "'default' names the default rule; give yours another name"
                )
            names.add(rule.name)
            if not rule.when:
                raise DefinitionError(
                    f"rule {rule.name!r} has no condition and would catch everything; make "
                    "its group the default instead"
                )
            self._check_group(rule.group, f"rule {rule.name!r}")
            conditions = tuple(
                self._field(c.field, f"rule {rule.name!r}").compile(c, rule.name) for c in rule.when
            )
            if len({c.field for c in conditions}) != len(conditions):
                raise DefinitionError(f"rule {rule.name!r} names a field twice")
            score = sum(self.weights.get(c.field, 1) for c in conditions)
            compiled.append((attrs.evolve(rule, when={c.field: c.values for c in conditions}),
                             score))  # fmt: skip
        object.__setattr__(self, "_compiled", tuple(compiled))
        object.__setattr__(self, "rules", tuple(rule for rule, _ in compiled))
        object.__setattr__(self, "_default_rule", _default_rule(self.default))
        object.__setattr__(
            self,
            "_reads_caller",
            any(c.field.startswith(CALLER_PREFIX) for r, _ in compiled for c in r.when),
        )

    def _check_group(self, name: str, where: str) -> None:
        if name not in self.groups:
            known = ", ".join(sorted(self.groups))
            raise DefinitionError(f"{where}: group {name!r} is not declared (groups: {known})")

    def _field(self, name: str, where: str) -> _Field:
        found = self._fields.get(name)
        if found is None:
            if name in attrs.fields_dict(self.kind):
                _record_field(name, _hints(self.kind).get(name))  # raises: says why
            known = ", ".join(sorted(self._fields))
            raise DefinitionError(
                f"{where}: {self.kind.__name__} has no field {name!r} to route on; fields: {known}"
            )
        return found

    # ----------------------------------------------------------------------- routing

    def route(
        self, record: Assignable, *, at: datetime, callers: Mapping[str, Caller] | None = None
    ) -> Routing:
        """Where ``record`` goes at ``at``, by which rule and why.

        ``callers`` maps caller ids to :class:`Caller`; it is required when rules read the
        caller's attributes. ``at`` decides business hours: a group closed at ``at`` hands
        the work to its on-call group.

        Raises:
            ValidationError: a naive ``at``, a record of another kind, rules that read the
                caller without a ``callers`` directory, or a directory entry that is not a
                ``Caller``.
        """
        require_aware(at, "at")
        if not isinstance(record, self.kind):
            raise ValidationError(
                f"this rule set routes {self.kind.__name__} records, not {type(record).__name__}"
            )
        caller, caller_note = self._caller(record, callers)
        fields = self._fields
        matching = [
            (rule, score)
            for rule, score in self._compiled
            if all(fields[c.field].holds(c, record, caller) for c in rule.when)
        ]
        if self.mode is Match.FIRST:
            chosen = matching[:1]
        else:
            best = max((score for _, score in matching), default=0)
            chosen = [(r, s) for r, s in matching if s == best][:1]
        if chosen:
            rule, score = chosen[0]
            held = ", ".join(c.describe() for c in rule.when)
            if any(c.field.startswith(CALLER_PREFIX) for c in rule.when):
                held += caller_note
            why = f"rule {rule.name!r} matched ({held})"
            if self.mode is Match.BEST:
                rules = "rule" if len(matching) == 1 else "rules"
                why += f" with score {score}, the best of {len(matching)} matching {rules}"
        else:
            rule, score = self._default_rule, 0
            why = "no rule matched, so the default group takes it"
            if caller_note.endswith("directory"):
                why += f" ({caller_note.removeprefix('; ')})"
        group, hours_note = self._on_duty(rule.group, at)
        return Routing(
            record_id=record.id,
            group=group,
            rule=rule,
            rule_group=rule.group,
            score=score,
            why=f"{why}; {hours_note}",
        )

    def assign(
        self,
        record: _R,
        *,
        at: datetime,
        by: str,
        callers: Mapping[str, Caller] | None = None,
    ) -> tuple[_R, Routing]:
        """Route ``record`` and assign it there (its ``assign`` verb); the routing too."""
        routing = self.route(record, at=at, callers=callers)
        return routing.apply(record, at=at, by=by), routing

    def _caller(
        self, record: Assignable, callers: Mapping[str, Caller] | None
    ) -> tuple[Caller, str]:
        if not self._reads_caller or self.caller_field is None:
            return _NOBODY, ""
        if callers is None or not isinstance(callers, Mapping):
            raise ValidationError(
                "these rules read the caller's attributes: pass callers=, a mapping from "
                "caller id to Caller"
            )
        caller_id = getattr(record, self.caller_field)
        found = callers.get(caller_id)
        if found is None:
            return _NOBODY, f"; caller {caller_id} is not in the directory"
        if not isinstance(found, Caller):
            raise ValidationError(f"callers[{caller_id!r}] must be a Caller, got {found!r}")
        return found, f"; caller {caller_id}"

    def _on_duty(self, name: str, at: datetime) -> tuple[str, str]:
        """The group on duty for ``name`` at ``at``, and a sentence saying how."""
        group = self.groups[name]
        notes = []
        while group.hours is not None and group.on_call is not None:
            if group.hours.is_open(at):
                break
            opens = group.hours.next_open(at).astimezone(group.hours.tz)
            notes.append(
                f"{group.name} is out of hours (opens {opens:%a %Y-%m-%d %H:%M %Z}), so its "
                f"on-call group {group.on_call} takes it"
            )
            group = self.groups[group.on_call]
        if not notes:
            return group.name, f"routed to {group.name}"
        return group.name, "; ".join(notes)


def _default_rule(group: str) -> Rule:
    return Rule(DEFAULT_RULE, group=group, when={})


# --------------------------------------------------------------------------- tiered support


def _fraction(value: object) -> Fraction:
    if isinstance(value, bool):
        raise DefinitionError(f"a threshold is a fraction of the target, not {value!r}")
    try:
        fraction: Fraction = Fraction(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise DefinitionError(
            f"a threshold is a fraction of the target (0.75 = 75 %), got {value!r}"
        ) from None
    if not 0 < fraction <= 1:
        raise DefinitionError(
            f"a threshold must lie in (0, 1] (0.75 = 75 % of the target), got {value!r}"
        )
    return fraction


def _tiers(value: object) -> tuple[tuple[str, ...], ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DefinitionError(
            f"tiers are a sequence, L1 first, of a group or a sequence of groups: {value!r}"
        )
    out = []
    for tier in value:
        if isinstance(tier, str):
            groups: tuple[str, ...] = (_name(tier, "a tier's group"),)
        elif isinstance(tier, Sequence) and tier:
            groups = tuple(_name(g, "a tier's group") for g in tier)
        else:
            raise DefinitionError(
                f"a tier is a group or a non-empty sequence of groups in order (the first "
                f"receives escalations), got {tier!r}"
            )
        out.append(groups)
    if len(out) < 2:
        raise DefinitionError("tiered support needs at least two tiers (L1 and L2)")
    seen: set[str] = set()
    for groups in out:
        for group in groups:
            if group in seen:
                raise DefinitionError(f"group {group!r} appears twice in the tiers")
            seen.add(group)
    return tuple(out)


def _clocks(value: object) -> tuple[SLADefinition, ...]:
    if isinstance(value, SLADefinition):
        return (value,)
    if not isinstance(value, Iterable):
        raise DefinitionError(f"clocks must be SLA definitions, got {value!r}")
    out = tuple(value)
    if not out or not all(isinstance(c, SLADefinition) for c in out):
        raise DefinitionError("clocks must be one or more SLADefinition objects")
    return out


def _thresholds(value: object) -> tuple[Fraction, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(_fraction(v) for v in value)
    return (_fraction(value),)


@attrs.frozen(kw_only=True)
class Escalation:
    """A functional escalation that is due: from which tier to which, and why."""

    record_id: str
    from_group: str
    from_tier: int
    """1 for L1."""
    to_group: str
    to_tier: int
    clock: str
    """The name of the SLA clock that crossed the threshold."""
    threshold: Fraction
    crossed_at: datetime
    reason: str


@attrs.frozen(kw_only=True)
class Escalator:
    """Tiered support (L1 → L2 → L3) with functional escalation driven by SLA clocks.

    ``tiers`` lists the tiers, L1 first; each is one group or a sequence of groups, the
    first of which receives escalations. When one of ``clocks`` crosses ``threshold`` of its
    target (a fraction in (0, 1]; one per step up, or one for all) after the record arrived
    at its tier, and the record is still active there, an escalation to the next tier is due.
    A crossing at the very instant the record arrived belongs to the tier it came from. A
    record at the top tier, outside the tiers, or not active is never due; a paused clock
    does not advance, so it crosses nothing.

    The escalation is the record's own: a record with an ``escalate`` verb taking ``group=``
    and ``reason=`` (an incident, whose tier it raises) is escalated with it; any other
    ``Assignable`` record is reassigned with ``assign``.

    Raises:
        DefinitionError: when built, for a tier group not in ``groups``, a group listed
            twice, fewer than two tiers, no clocks, or a threshold outside (0, 1].
    """

    tiers: tuple[tuple[str, ...], ...] = attrs.field(converter=_tiers)
    clocks: tuple[SLADefinition, ...] = attrs.field(converter=_clocks)
    groups: dict[str, Group] = attrs.field(converter=_groups, hash=False)
    threshold: tuple[Fraction, ...] = attrs.field(default=(Fraction(3, 4),), converter=_thresholds)
    _tier_of: dict[str, int] = attrs.field(init=False, eq=False, repr=False, hash=False)
    _watch: tuple[tuple[SLADefinition, ...], ...] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        for groups in self.tiers:
            for group in groups:
                if group not in self.groups:
                    known = ", ".join(sorted(self.groups))
                    raise DefinitionError(
                        f"tier group {group!r} is not a declared group (groups: {known})"
                    )
        steps = len(self.tiers) - 1
        if len(self.threshold) == 1:
            object.__setattr__(self, "threshold", self.threshold * steps)
        elif len(self.threshold) != steps:
            raise DefinitionError(
                f"give one threshold, or one per step up ({steps} for {len(self.tiers)} "
                f"tiers), not {len(self.threshold)}"
            )
        object.__setattr__(
            self, "_tier_of", {g: n for n, groups in enumerate(self.tiers) for g in groups}
        )
        # Each clock again with the step's threshold as its only warning: its status then
        # lists the crossing, and its next_event_at names the instant of the next one.
        object.__setattr__(
            self,
            "_watch",
            tuple(
                tuple(attrs.evolve(clock, warnings=(fraction,)) for clock in self.clocks)
                for fraction in self.threshold
            ),
        )

    def tier(self, group: str | None) -> int | None:
        """The tier of ``group``, 1 for L1; ``None`` for a group outside the tiers."""
        found = self._tier_of.get(group) if isinstance(group, str) else None
        return None if found is None else found + 1

    def due(self, record: Assignable, *, at: datetime) -> Escalation | None:
        """The escalation due at ``at``, if any (of the earliest crossing, if clocks crossed).

        ``at`` must not be before the record's last event (ask about the record as it is).
        """
        where = self._where(record, at)
        if where is None:
            return None
        index, arrived = where
        crossings: list[tuple[datetime, str]] = []
        for clock in self._watch[index]:
            status = clock.evaluate(record, at=at)
            crossings.extend(
                (when, clock.name)
                for cycle in status.cycles
                for _fraction_crossed, when in cycle.warnings
                if when > arrived
            )
        if not crossings:
            return None
        crossed_at, clock_name = min(crossings)
        threshold = self.threshold[index]
        to_group = self.tiers[index + 1][0]
        percent = f"{float(threshold * 100):g} %"
        return Escalation(
            record_id=record.id,
            from_group=str(record.assignment_group),
            from_tier=index + 1,
            to_group=to_group,
            to_tier=index + 2,
            clock=clock_name,
            threshold=threshold,
            crossed_at=crossed_at,
            reason=(
                f"{clock_name} reached {percent} of its target at "
                f"{crossed_at:%Y-%m-%d %H:%M %Z} while with L{index + 1} "
                f"({record.assignment_group}): escalated to L{index + 2} ({to_group})"
            ),
        )

    def next_check(self, record: Assignable, *, at: datetime) -> datetime | None:
        """When an escalation could next become due: ``at`` if one is due now, ``None`` if never.

        Computed from the clocks' ``next_event_at``: a scheduler that wakes only then (and
        whenever the record changes) escalates exactly when polling every instant would.
        """
        if self.due(record, at=at) is not None:
            return at
        where = self._where(record, at)
        if where is None:
            return None
        index, _arrived = where
        instants = []
        for clock in self._watch[index]:
            if clock.evaluate(record, at=at).warnings:
                continue  # crossed already, before the record arrived: no second crossing
            instant = clock.next_event_at(record, at=at)
            if instant is not None:
                instants.append(instant)
        return min(instants, default=None)

    def escalate(self, record: _R, *, at: datetime, by: str) -> _R:
        """Apply the escalation due at ``at`` (the record as it is when none is due)."""
        escalation = self.due(record, at=at)
        if escalation is None:
            return record
        if _escalates_itself(type(record)):
            new: _R = record.escalate(  # type: ignore[attr-defined]
                group=escalation.to_group, reason=escalation.reason, at=at, by=by
            )
            return new
        return record.assign(group=escalation.to_group, at=at, by=by)

    def _where(self, record: Assignable, at: datetime) -> tuple[int, datetime] | None:
        """The record's tier index (below the top) and when it arrived there, if escalable."""
        require_aware(at, "at")
        if not isinstance(record, Assignable):
            raise ValidationError(
                f"only assignable records are escalated, not {type(record).__name__}"
            )
        if at < record.updated_at:
            raise ValidationError(
                f"{record.id}: at {at.isoformat()} is before its last event "
                f"({record.updated_at.isoformat()}); ask about the record as it is"
            )
        index = self._tier_of.get(record.assignment_group)  # type: ignore[arg-type]
        if index is None or index + 1 >= len(self.tiers):
            return None
        if record.state not in record.workflow.tagged(ACTIVE):
            return None
        verb = "escalate" if _escalates_itself(type(record)) else "assign"
        if verb not in record.workflow.allowed(record):
            return None
        return index, self._arrival(record)

    def _arrival(self, record: Assignable) -> datetime:
        """When the record last arrived at the tier it is in now."""
        tier_of = self._tier_of.get
        arrived = record.opened_at
        current: object = _UNTYPED
        scratch, events = record._steps(history=False)  # noqa: SLF001 - the engine's fold
        for event in events:
            tier = tier_of(scratch.assignment_group)  # type: ignore[arg-type]
            if tier != current:
                current, arrived = tier, event.at
        return arrived


_SELF_ESCALATING: dict[type, bool] = {}


def _escalates_itself(kind: type) -> bool:
    """Whether records of ``kind`` have an ``escalate(group=..., reason=...)`` verb."""
    found = _SELF_ESCALATING.get(kind)
    if found is None:
        method = getattr(kind, "escalate", None)
        names = set(inspect.signature(method).parameters) if callable(method) else set()
        found = _SELF_ESCALATING[kind] = {"group", "reason", "at", "by"} <= names
    return found
