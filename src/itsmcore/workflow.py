"""Lifecycles as data: states, transitions and guards, validated when defined.

A ``Workflow`` is a table of ``Transition(trigger, sources, target, guards)`` rows. The engine
answers which triggers a record can fire now, refuses impossible ones with an
``InvalidTransitionError`` that says what *is* possible, derives customised workflows
(extra states, guards, removed transitions) without subclassing, and renders itself as a
Mermaid or Graphviz diagram. A transition whose ``target`` is ``None`` is an *action*: allowed
only in its source states, it leaves the state as it is (assigning, escalating, linking).

What a state *means* is data too: ``tags`` name sets of states (``"active"``, ``"paused"``,
``"met"``, ``"canceled"`` are the ones the library reads), so SLA presets, auto-close and
family cascades work for any practice and for a vendor's own states.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import attrs

from itsmcore.errors import DefinitionError, InvalidTransitionError, ValidationError

__all__ = ["ACTIVE", "CANCELED", "MET", "PAUSED", "Guard", "Transition", "Workflow"]


class _HasState(Protocol):
    @property
    def state(self) -> str: ...


Guard = Callable[[Any, Mapping[str, Any]], str | None]
"""``guard(record, context) -> reason or None``: ``None`` lets the trigger fire, a string
refuses it and says why. ``context`` holds the verb's arguments (``code``, ``notes`` …)."""

_TRIGGER_RE = re.compile(r"[a-z][a-z0-9_]*")


def _names(value: object, what: str) -> list[str]:
    """State names from one name or a collection of them (``DefinitionError`` otherwise)."""
    items: Any = [value] if isinstance(value, str) else value
    try:
        names: list[str] = list(items)
    except TypeError:
        raise DefinitionError(f"{what} must be a state name or names, got {value!r}") from None
    for name in names:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"{what} must be non-empty state names, got {name!r}")
    return names


def _states(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset(_names(value, "states"))


def _state_list(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise DefinitionError(f"states must be a collection of names, not the string {value!r}")
    return tuple(_names(value, "states"))


def _guards(value: Iterable[Guard]) -> tuple[Guard, ...]:
    try:
        guards = tuple(value)
    except TypeError:
        raise DefinitionError(f"guards must be a collection of functions: {value!r}") from None
    if not all(callable(g) for g in guards):
        raise DefinitionError(f"guards must be functions guard(record, context): {guards!r}")
    return guards


def _rows(value: Iterable[Transition]) -> tuple[Transition, ...]:
    rows = tuple(value) if not isinstance(value, str | bytes) else (value,)
    if not all(isinstance(r, Transition) for r in rows):
        raise DefinitionError(f"transitions must be Transition rows, got {value!r}")
    return rows


def normalized(value: str) -> str:
    """A choice as stored: ``"Awaiting Evidence"`` is ``"awaiting_evidence"``."""
    return value.strip().lower().replace(" ", "_").replace("-", "_")


def _choices(value: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DefinitionError(f"choices must map a field to its allowed values, got {value!r}")
    out = {}
    for name, allowed in value.items():
        if isinstance(allowed, str):
            raise DefinitionError(f"choices[{name!r}] must be a collection of values")
        values = frozenset(normalized(str(v)) for v in allowed)
        if not values or "" in values:
            raise DefinitionError(f"choices[{name!r}] must name some non-empty values")
        out[str(name)] = values
    return out


def _tags(value: Mapping[str, str | Iterable[str]] | None) -> dict[str, frozenset[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DefinitionError(f"tags must map tag names to states, got {value!r}")
    return {str(tag): _states(states) for tag, states in value.items()}


ACTIVE: Final = "active"
"""Tag of the states in which work is still to be done (``is_active``)."""
PAUSED: Final = "paused"
"""Tag of the states in which SLA clocks stop counting (waiting on someone else)."""
MET: Final = "met"
"""Tag of the states in which the work is delivered (resolved, fulfilled, closed)."""
CANCELED: Final = "canceled"
"""Tag of the states in which the record no longer applies (withdrawn, logged in error)."""


@attrs.frozen
class Transition:
    """One lifecycle row: ``trigger`` moves a record from any of ``sources`` to ``target``.

    ``target=None`` makes the row an action that keeps the current state. ``guards`` are
    checked in order; the first refusal wins.
    """

    trigger: str
    sources: frozenset[str] = attrs.field(converter=_states)
    target: str | None = None
    guards: tuple[Guard, ...] = attrs.field(default=(), converter=_guards)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.trigger, str) or not _TRIGGER_RE.fullmatch(self.trigger):
            raise DefinitionError(
                f"trigger {self.trigger!r} must be a lower-case identifier such as 'resolve'"
            )
        if not self.sources:
            raise DefinitionError(f"transition {self.trigger!r} has no source state")


def _guard_name(guard: Guard) -> str:
    return getattr(guard, "__name__", repr(guard))


# The hash is cached: SLA clocks memoize their conditions per (state, …, workflow).
@attrs.frozen(cache_hash=True)
class Workflow:
    """A validated lifecycle: states, the initial state, terminal states and transitions.

    Raises ``DefinitionError`` on construction for unknown states, states that cannot be
    reached from ``initial``, terminal states with exits, non-terminal states with no way
    forward or no way to any terminal state, tags naming unknown states, and two rows for
    one ``(trigger, source)`` pair.

    ``tags`` maps a tag name to the states that carry it; :meth:`tagged` answers it. Any
    name is allowed; :data:`ACTIVE`, :data:`PAUSED`, :data:`MET` and :data:`CANCELED` are
    the ones the library reads.

    >>> wf = Workflow(
    ...     name="door",
    ...     states=("closed", "open", "broken"),
    ...     initial="closed",
    ...     terminal=("broken",),
    ...     transitions=(
    ...         Transition("open", "closed", "open"),
    ...         Transition("close", "open", "closed"),
    ...         Transition("kick", ("closed", "open"), "broken"),
    ...     ),
    ... )
    >>> wf.triggers("closed")
    ('kick', 'open')
    """

    name: str
    states: tuple[str, ...] = attrs.field(converter=_state_list)
    initial: str
    terminal: frozenset[str] = attrs.field(converter=_states)
    transitions: tuple[Transition, ...] = attrs.field(converter=_rows)
    tags: dict[str, frozenset[str]] = attrs.field(factory=dict, converter=_tags, hash=False)
    choices: dict[str, frozenset[str]] = attrs.field(factory=dict, converter=_choices, hash=False)
    """The values a desk allows for a field its verbs take (``"hold_reason"``,
    ``"channel"``, ``"resolution_code"`` …), normalised by :func:`normalized`."""
    _table: dict[tuple[str, str], Transition] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _by_state: dict[str, tuple[Transition, ...]] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DefinitionError(f"a workflow needs a name, got {self.name!r}")
        if not isinstance(self.initial, str):
            raise DefinitionError(f"initial must be a state name, got {self.initial!r}")
        known = set(self.states)
        if not self.states or len(known) != len(self.states):
            raise DefinitionError(
                f"workflow {self.name!r}: states must be a non-empty, unique list"
            )
        for state in (self.initial, *self.terminal):
            if state not in known:
                raise DefinitionError(f"workflow {self.name!r}: unknown state {state!r}")
        table = self._rows_by_pair(known)
        for tag, tagged in self.tags.items():
            unknown = sorted(tagged - known)
            if unknown:
                raise DefinitionError(
                    f"workflow {self.name!r}: tag {tag!r} names unknown state "
                    f"{', '.join(map(repr, unknown))}"
                )
        by_state = {
            state: tuple(sorted((t for (_, s), t in table.items() if s == state), key=_trigger))
            for state in self.states
        }
        self._check_reachable(by_state)
        self._check_finishable(by_state)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_by_state", by_state)

    def _rows_by_pair(self, known: set[str]) -> dict[tuple[str, str], Transition]:
        """Each row by ``(trigger, source)``: known states only, no exit from a terminal."""
        table: dict[tuple[str, str], Transition] = {}
        for row in self.transitions:
            for state in (*row.sources, *([row.target] if row.target is not None else [])):
                if state not in known:
                    raise DefinitionError(
                        f"workflow {self.name!r}: transition {row.trigger!r} names unknown state "
                        f"{state!r}; known states: {', '.join(self.states)}"
                    )
            for source in sorted(row.sources):
                if source in self.terminal:
                    raise DefinitionError(
                        f"workflow {self.name!r}: terminal state {source!r} has an exit "
                        f"({row.trigger!r}); terminal states are final"
                    )
                if (row.trigger, source) in table:
                    raise DefinitionError(
                        f"workflow {self.name!r}: two transitions for {row.trigger!r} from "
                        f"{source!r}; give each (trigger, source) pair one row"
                    )
                table[row.trigger, source] = row
        return table

    def _check_reachable(self, by_state: Mapping[str, tuple[Transition, ...]]) -> None:
        seen = {self.initial}
        queue = deque([self.initial])
        while queue:
            for row in by_state[queue.popleft()]:
                if row.target is not None and row.target not in seen:
                    seen.add(row.target)
                    queue.append(row.target)
        unreachable = [s for s in self.states if s not in seen]
        if unreachable:
            raise DefinitionError(
                f"workflow {self.name!r}: no transition reaches {', '.join(unreachable)} "
                f"from {self.initial!r}"
            )
        stuck = [
            s
            for s in self.states
            if s not in self.terminal and not any(r.target not in (None, s) for r in by_state[s])
        ]
        if stuck:
            raise DefinitionError(
                f"workflow {self.name!r}: {', '.join(stuck)} cannot be left but is not "
                "terminal; add a transition out or mark it terminal"
            )

    def _check_finishable(self, by_state: Mapping[str, tuple[Transition, ...]]) -> None:
        """Every state must still be able to reach a terminal one: no loop without a way out."""
        finishable = set(self.terminal)
        grew = True
        while grew:
            grew = False
            for state in self.states:
                if state not in finishable and any(
                    row.target in finishable for row in by_state[state]
                ):
                    finishable.add(state)
                    grew = True
        trapped = [s for s in self.states if s not in finishable]
        if trapped:
            raise DefinitionError(
                f"workflow {self.name!r}: {', '.join(trapped)} can never reach a terminal "
                f"state ({', '.join(sorted(self.terminal)) or 'none is declared'}); a record "
                "there would loop forever"
            )

    # ----------------------------------------------------------------------- questions

    def tagged(self, tag: str) -> frozenset[str]:
        """The states carrying ``tag`` (empty if no state does)."""
        return self.tags.get(tag, _NO_STATES)

    def choice(self, name: str, value: object, what: str) -> str:
        """``value`` normalised, if it is one of ``choices[name]``; ``ValidationError`` if not.

        Any non-empty text passes when the workflow declares no choices for ``name``.
        """
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
        found = normalized(value)
        allowed = self.choices.get(name)
        if allowed is not None and found not in allowed:
            raise ValidationError(
                f"unknown {what} {value!r}; this desk's workflow {self.name!r} allows: "
                f"{', '.join(sorted(allowed))}"
            )
        return found

    def triggers(self, state: str) -> tuple[str, ...]:
        """Every trigger defined from ``state``, guards not applied, sorted."""
        return tuple(row.trigger for row in self._rows(state))

    def destination(self, state: str, trigger: str) -> str | None:
        """Where ``trigger`` leads from ``state``, guards not applied (``None``: no such row).

        An action leads back to ``state``.
        """
        row = self._table.get((trigger, state))
        if row is None:
            return None
        return state if row.target is None else row.target

    def allowed(self, record: _HasState, /, **context: Any) -> tuple[str, ...]:
        """The triggers ``record`` can fire now: defined from its state and no guard refuses."""
        return tuple(
            row.trigger
            for row in self._rows(record.state)
            if _refusal(row, record, context) is None
        )

    def refusals(self, record: _HasState, /, **context: Any) -> dict[str, str]:
        """The triggers defined from ``record``'s state that a guard refuses now, with why."""
        out = {}
        for row in self._rows(record.state):
            reason = _refusal(row, record, context)
            if reason is not None:
                out[row.trigger] = reason
        return out

    def transition(self, record: _HasState, trigger: str, /, **context: Any) -> Transition:
        """The row ``trigger`` fires for ``record`` now; ``InvalidTransitionError`` if none may.

        The error carries the trigger, the current state, the triggers that are allowed and,
        when a guard refused, its reason. Nothing is changed either way.
        """
        row = self._table.get((trigger, record.state))
        if row is None or row.guards:
            self._refuse(row, record, trigger, context)
        return row  # type: ignore[return-value] # _refuse raised unless a row may fire

    def target(self, record: _HasState, trigger: str, /, **context: Any) -> str:
        """The state ``record`` is in after ``trigger`` (its current one for an action)."""
        # transition() inlined: every verb of every record comes through here.
        state = record.state
        row = self._table.get((trigger, state))
        if row is None or row.guards:
            self._refuse(row, record, trigger, context)
        target = row.target  # type: ignore[union-attr] # _refuse raised unless a row may fire
        return state if target is None else target

    def _refuse(
        self, row: Transition | None, record: _HasState, trigger: str, context: Mapping[str, Any]
    ) -> None:
        """Raise ``InvalidTransitionError`` unless ``row`` exists and no guard refuses."""
        state = record.state
        if row is None:
            if state not in self._by_state:
                raise InvalidTransitionError(
                    trigger, state, (), f"{state!r} is not a state of workflow {self.name!r}"
                )
            allowed = self.allowed(record, **context)
            terminal = state in self.terminal
            raise InvalidTransitionError(trigger, state, allowed, terminal=terminal)
        reason = _refusal(row, record, context)
        if reason is not None:
            allowed = self.allowed(record, **context)
            raise InvalidTransitionError(
                trigger, state, allowed, reason, terminal=state in self.terminal
            )

    def _rows(self, state: str) -> tuple[Transition, ...]:
        return self._by_state.get(state, ())

    # ----------------------------------------------------------------------- customising

    def derive(
        self,
        *,
        name: str | None = None,
        add_states: Iterable[str] | Mapping[str, Iterable[str]] = (),
        add_terminal: Iterable[str] = (),
        add_transitions: Iterable[Transition] = (),
        remove: Iterable[tuple[str, str] | str] = (),
        add_guards: Mapping[str, Guard | Iterable[Guard]] | None = None,
        add_tags: Mapping[str, str | Iterable[str]] | None = None,
        remove_tags: Mapping[str, str | Iterable[str]] | None = None,
        add_choices: Mapping[str, Iterable[str]] | None = None,
    ) -> Workflow:
        """A customised copy, validated like any workflow.

        Args:
            name: the new workflow's name (default: this one's with ``"+custom"``).
            add_states: extra states (e.g. ``"awaiting_approval"``), or a mapping of extra
                states to their tags (``{"awaiting_approval": ["active"]}``).
            add_terminal: states (new or existing) that become terminal.
            add_transitions: extra rows; a row for an existing ``(trigger, source)`` pair
                replaces it.
            remove: ``(trigger, source)`` pairs, or whole triggers, to delete.
            add_guards: extra guards per trigger, appended to that trigger's rows.
            add_tags: states (new or existing) to add to each tag.
            remove_tags: states to take out of each tag.
            add_choices: values to allow for each field, added to the declared ones.
        """
        added = tuple(add_transitions)
        replaced = {(row.trigger, s) for row in added for s in row.sources}
        drop = {r for r in remove if isinstance(r, tuple)} | replaced
        drop_triggers = {r for r in remove if isinstance(r, str)}
        unknown = (drop_triggers - {t for t, _ in self._table}) | (
            {r for r in remove if isinstance(r, tuple)} - set(self._table)
        )
        if unknown:
            raise DefinitionError(f"cannot remove {sorted(unknown)!r}: no such transition")
        guards = {
            trigger: (g,) if callable(g) else tuple(g) for trigger, g in (add_guards or {}).items()
        }
        missing = set(guards) - {t for t, _ in self._table} - {r.trigger for r in added}
        if missing:
            raise DefinitionError(f"cannot guard {sorted(missing)!r}: no such trigger")
        rows = []
        for row in (*self.transitions, *added):
            sources = {
                s
                for s in row.sources
                if row.trigger not in drop_triggers
                and ((row.trigger, s) not in drop or row in added)
            }
            if sources:
                extra = guards.get(row.trigger, ())
                rows.append(attrs.evolve(row, sources=sources, guards=(*row.guards, *extra)))
        new_states = list(add_states)
        tags = self._derived_tags(add_states, add_tags, remove_tags)
        return Workflow(
            name=name or f"{self.name}+custom",
            states=(*self.states, *(s for s in new_states if s not in self.states)),
            initial=self.initial,
            terminal=self.terminal | set(add_terminal),
            transitions=rows,
            tags=tags,
            choices={
                name: self.choices.get(name, frozenset()) | added
                for name, added in {
                    **dict.fromkeys(self.choices, frozenset()),
                    **_choices(add_choices),
                }.items()
            },
        )

    def _derived_tags(
        self,
        add_states: Iterable[str] | Mapping[str, Iterable[str]],
        add_tags: Mapping[str, str | Iterable[str]] | None,
        remove_tags: Mapping[str, str | Iterable[str]] | None,
    ) -> dict[str, set[str]]:
        tags = {tag: set(states) for tag, states in self.tags.items()}
        if isinstance(add_states, Mapping):
            for state, state_tags in add_states.items():
                for tag in _states(state_tags):
                    tags.setdefault(tag, set()).add(state)
        for tag, states in _tags(add_tags).items():
            tags.setdefault(tag, set()).update(states)
        for tag, states in _tags(remove_tags).items():
            if tag not in tags:
                raise DefinitionError(f"cannot remove from tag {tag!r}: no state carries it")
            tags[tag] -= states
        return tags

    # ----------------------------------------------------------------------- diagrams

    def to_mermaid(self, *, actions: bool = False) -> str:
        """A Mermaid ``stateDiagram-v2`` of the lifecycle (actions drawn only if asked).

        A state whose name is not a plain identifier (spaces, punctuation) is declared with
        its name as a quoted label and drawn under an alias.
        """
        taken = set(self.states)
        ids = {}
        for k, s in enumerate(self.states):
            alias = s if _PLAIN.fullmatch(s) else f"state{k}"
            while alias != s and alias in taken:  # never a real state's name
                alias = f"_{alias}"
            ids[s] = alias
        lines = ["stateDiagram-v2"]
        lines.extend(
            f'    state "{_mermaid_text(s)}" as {ids[s]}' for s in self.states if ids[s] != s
        )
        lines.append(f"    [*] --> {ids[self.initial]}")
        for source, target, label in self._edges(actions=actions):
            lines.append(f"    {ids[source]} --> {ids[target]} : {label}")
        lines.extend(f"    {ids[s]} --> [*]" for s in self.states if s in self.terminal)
        return "\n".join(lines) + "\n"

    def to_dot(self, *, actions: bool = False) -> str:
        """A Graphviz ``digraph`` of the lifecycle (actions drawn only if asked)."""
        lines = [f"digraph {_dot(self.name)} {{", "    rankdir=LR;"]
        for state in self.states:
            shape = "doublecircle" if state in self.terminal else "circle"
            lines.append(f"    {_dot(state)} [shape={shape}];")
        for source, target, label in self._edges(actions=actions):
            lines.append(f"    {_dot(source)} -> {_dot(target)} [label={_dot(label)}];")
        return "\n".join([*lines, "}"]) + "\n"

    def _edges(self, *, actions: bool) -> list[tuple[str, str, str]]:
        """``(source, target, triggers)`` per drawn edge, in state order, triggers merged."""
        edges: dict[tuple[str, str], list[str]] = {}
        for source in self.states:
            for row in self._by_state[source]:
                if row.target is None and not actions:
                    continue
                target = source if row.target is None else row.target
                edges.setdefault((source, target), []).append(row.trigger)
        return [(s, t, ", ".join(triggers)) for (s, t), triggers in edges.items()]


_NO_STATES: Final[frozenset[str]] = frozenset()
_PLAIN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _mermaid_text(text: str) -> str:
    """Text inside a Mermaid label's quotes: quotes and line breaks as entities."""
    return text.replace('"', "#quot;").replace("\n", " ").replace("\r", " ")


def _dot(text: str) -> str:
    """A Graphviz double-quoted string: backslashes and quotes escaped, one line."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _trigger(row: Transition) -> str:
    return row.trigger


def _refusal(row: Transition, record: object, context: Mapping[str, Any]) -> str | None:
    for guard in row.guards:
        reason = guard(record, context)
        if reason is not None:
            return f"{_guard_name(guard)}: {reason}"
    return None
