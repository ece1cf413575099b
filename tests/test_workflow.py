"""The lifecycle engine: validation when defined, guards, derivation, diagrams."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from itsmcore import DefinitionError, InvalidTransitionError, ValidationError
from itsmcore.events import Event, StateChanged, event_type
from itsmcore.workflow import Transition, Workflow

if TYPE_CHECKING:
    from collections.abc import Mapping


@attrs.frozen
class Ticket:
    state: str
    approved: bool = False


def needs_approval(record: Any, _context: Mapping[str, Any]) -> str | None:
    return None if record.approved else "not approved yet"


def door() -> Workflow:
    return Workflow(
        name="ticket",
        states=("new", "open", "done", "void"),
        initial="new",
        terminal=("done", "void"),
        transitions=(
            Transition("start", "new", "open"),
            Transition("finish", "open", "done", guards=(needs_approval,)),
            Transition("void", ("new", "open"), "void"),
            Transition("note", ("new", "open")),
        ),
    )


def test_allowed_and_refusals_apply_guards() -> None:
    wf = door()
    assert wf.allowed(Ticket("open")) == ("note", "void")
    assert wf.refusals(Ticket("open")) == {"finish": "needs_approval: not approved yet"}
    assert wf.allowed(Ticket("open", approved=True)) == ("finish", "note", "void")
    assert wf.triggers("open") == ("finish", "note", "void")
    assert wf.allowed(Ticket("done")) == ()


def test_impossible_triggers_say_what_is_allowed() -> None:
    wf = door()
    with pytest.raises(InvalidTransitionError) as err:
        wf.transition(Ticket("open"), "finish")
    assert err.value.trigger == "finish"
    assert err.value.state == "open"
    assert err.value.allowed == ("note", "void")
    assert "not approved yet" in str(err.value)
    with pytest.raises(InvalidTransitionError) as err:
        wf.transition(Ticket("done"), "start")
    assert err.value.allowed == ()
    assert "terminal" in str(err.value)
    with pytest.raises(InvalidTransitionError, match="not a state"):
        wf.transition(Ticket("limbo"), "start")


def test_actions_keep_the_state() -> None:
    wf = door()
    assert wf.target(Ticket("open"), "note") == "open"
    assert wf.target(Ticket("new"), "start") == "open"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"states": ()}, "non-empty"),
        ({"states": ("new", "new")}, "unique"),
        ({"initial": "nowhere"}, "unknown state 'nowhere'"),
        ({"terminal": ("gone",)}, "unknown state 'gone'"),
        ({"transitions": (Transition("go", "new", "mars"),)}, "unknown state 'mars'"),
        (
            {"transitions": (Transition("go", "new", "done"), Transition("go", "new", "new"))},
            "two transitions for 'go' from 'new'",
        ),
        (
            {"transitions": (Transition("go", "new", "done"), Transition("undo", "done", "new"))},
            "terminal state 'done' has an exit",
        ),
        (
            {
                "states": ("new", "done", "island"),
                "transitions": (Transition("go", "new", "done"),),
            },
            "no transition reaches island",
        ),
        (
            {
                "states": ("new", "mid", "done"),
                "transitions": (
                    Transition("go", "new", "mid"),
                    Transition("skip", "new", "done"),
                    Transition("poke", "mid"),
                ),
            },
            "mid cannot be left",
        ),
    ],
)
def test_broken_definitions_fail_when_defined(kwargs: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {
        "name": "broken",
        "states": ("new", "done"),
        "initial": "new",
        "terminal": ("done",),
        "transitions": (Transition("go", "new", "done"),),
    } | kwargs
    with pytest.raises(DefinitionError, match=message):
        Workflow(**spec)


def test_bad_rows_fail_when_defined() -> None:
    with pytest.raises(DefinitionError, match="lower-case identifier"):
        Transition("Go Now", "new", "done")
    with pytest.raises(DefinitionError, match="no source"):
        Transition("go", (), "done")


def test_derive_adds_a_state_and_guard_without_touching_the_original() -> None:
    base = door()
    custom = base.derive(
        add_states=("review",),
        add_transitions=(
            Transition("submit", "open", "review"),
            Transition("approve", "review", "open"),
        ),
        add_guards={"void": lambda _r, ctx: None if ctx.get("reason") else "say why"},
        remove=[("void", "open")],
    )
    assert custom.name == "ticket+custom"
    assert "review" in custom.states
    assert custom.target(Ticket("open"), "submit") == "review"
    assert custom.allowed(Ticket("open")) == ("note", "submit")
    assert custom.allowed(Ticket("new"), reason="dup") == ("note", "start", "void")
    assert "say why" in custom.refusals(Ticket("new"))["void"]
    # The original is untouched.
    assert base.allowed(Ticket("open")) == ("note", "void")
    # Removing rows is validated like any definition: the last route to a state cannot go.
    assert "void" not in base.derive(remove=[("void", "new")]).triggers("new")
    with pytest.raises(DefinitionError, match="no transition reaches void"):
        custom.derive(remove=["void"])
    with pytest.raises(DefinitionError, match="no such transition"):
        base.derive(remove=["fly"])
    with pytest.raises(DefinitionError, match="no such trigger"):
        base.derive(add_guards={"fly": needs_approval})
    with pytest.raises(DefinitionError, match="open cannot be left"):
        base.derive(
            remove=[("finish", "open"), ("void", "open")],
            add_transitions=[Transition("finish", "new", "done")],
        )


def test_mermaid_and_dot_render_the_table() -> None:
    wf = door()
    assert wf.to_mermaid() == (
        "stateDiagram-v2\n"
        "    [*] --> new\n"
        "    new --> open : start\n"
        "    new --> void : void\n"
        "    open --> done : finish\n"
        "    open --> void : void\n"
        "    done --> [*]\n"
        "    void --> [*]\n"
    )
    assert "    new --> new : note\n" in wf.to_mermaid(actions=True)
    dot = wf.to_dot()
    assert dot.startswith('digraph "ticket" {')
    assert '"done" [shape=doublecircle];' in dot
    assert '"open" -> "done" [label="finish"];' in dot


def test_events_are_registered_by_type_and_normalised_to_utc() -> None:
    event = StateChanged(
        at=datetime(2025, 3, 30, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        by="ana",
        state="review",
        trigger="submit",
        source="open",
    )
    assert event.at.isoformat() == "2025-03-30T01:30:00+00:00"
    assert event_type("state_changed") is StateChanged
    assert StateChanged.schema_version == 1
    with pytest.raises(ValidationError, match="unknown event type 'nope'"):
        event_type("nope")
    with pytest.raises(ValidationError, match="naive"):
        StateChanged(at=datetime(2025, 1, 1), by="ana", state="x", trigger="t", source="s")
    with pytest.raises(ValidationError, match="who acted"):
        StateChanged(at=event.at, by=" ", state="x", trigger="t", source="s")
    with pytest.raises(DefinitionError, match="already used"):

        class Clash(Event):  # pyright: ignore[reportUnusedClass]
            type = "state_changed"


def test_a_state_whose_every_exit_is_guarded_does_not_claim_to_be_terminal() -> None:
    def never(_record: Any, _context: Mapping[str, Any]) -> str:
        return "not yet"

    wf = Workflow(
        name="gate",
        states=("waiting", "done"),
        initial="waiting",
        terminal=("done",),
        transitions=(Transition("pass", "waiting", "done", guards=(never,)),),
    )
    with pytest.raises(InvalidTransitionError) as err:
        wf.transition(Ticket("waiting"), "pass")
    assert "none now (a guard refuses every way out of this state)" in str(err.value)
    with pytest.raises(InvalidTransitionError, match=r"none \(the state is terminal\)"):
        wf.transition(Ticket("done"), "pass")
