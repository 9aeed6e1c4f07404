"""The gate's questions at a terminal: which calls wait, and the person's answer to each.

Only `approve`, `edit` and `reject` (or their first letters, in any case) are taken, and only
those the call's gate allows; anything else is asked again. Edited arguments must be a JSON
object that fits the tool's schema. The end of input raises `typer.Abort`, having decided
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import typer
from rich.console import Console
from rich.markup import escape

from graphloop.graph.options import ResumeOptions
from graphloop.graph.results import PendingConfirmation
from graphloop.nodes import Decision, DecisionType, ToolBox

__all__ = ["ask", "call_text"]

Answer = Literal["approve", "edit", "reject"]
_ANSWERS: tuple[Answer, ...] = ("approve", "edit", "reject")


def call_text(call: Mapping[str, Any]) -> str:
    """A tool call as the person reads it: `name({"arg": ...})`."""
    return f"{call['name']}({json.dumps(call['args'], ensure_ascii=False)})"


def _either(words: list[str]) -> str:
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]


def _chooser(offered: list[Answer]) -> Callable[[str], Answer]:
    """Reads an answer at the gate: one of `offered`, or its first letter, in any case;
    anything else is asked again (click prints the error)."""

    def choose(text: str) -> Answer:
        typed = text.strip().lower()
        for answer in offered:
            if typed in (answer, answer[0]):
                return answer
        hint = _either([f"{a[0]} ({a})" for a in offered])
        raise typer.BadParameter(f"{text.strip()!r} is not an answer here; type {hint}")

    return choose


def _arguments(name: str, tools: ToolBox) -> Callable[[str], dict[str, Any]]:
    """Reads the edited arguments typed at the gate: a JSON object that fits the tool's
    schema (converted by it), or asked again."""

    def read(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON ({exc.msg} at column {exc.colno}); type a JSON object") from None
        if not isinstance(value, dict):
            raise typer.BadParameter(f"the arguments must be a JSON object {{...}}, not a {type(value).__name__}")
        if tools.get(name) is None:
            return cast(dict[str, Any], value)  # the resume refuses it, naming the missing tool
        try:
            return tools.coerce(name, cast(dict[str, object], value))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return read


def _decision(name: str, args: dict[str, Any], allowed: list[DecisionType], tools: ToolBox) -> Decision:
    """Ask the person at the terminal about one call (the decisions its gate allows)."""
    offered: list[Answer] = [a for a in _ANSWERS if a in allowed]
    if not offered:  # only decisions this prompt cannot take: leave the call waiting
        raise typer.Abort()
    question = "  " + _either([f"[{a[0]}]{a[1:]}" for a in offered]) + "?"
    default = "a" if "approve" in offered else None
    choice = typer.prompt(question, default=default, value_proc=_chooser(offered))
    if choice == "edit":
        edited = typer.prompt("  arguments as JSON", default=json.dumps(args), value_proc=_arguments(name, tools))
        return Decision(type="edit", edited_action={"name": name, "args": edited})
    if choice == "reject":
        note = typer.prompt("  a note for the model (optional)", default="", show_default=False)
        return Decision(type="reject", message=note) if note else Decision(type="reject")
    return Decision(type="approve")


def ask(checkpoint: PendingConfirmation, tools: ToolBox, console: Console) -> ResumeOptions:
    """Ask the person at the terminal; the options for `resume`. Raises `typer.Abort` at the
    end of input (or Ctrl-C), having decided nothing."""
    if checkpoint.kind == "question":
        return {"answer": typer.prompt(checkpoint.question)}
    console.print(f"[bold]{escape(checkpoint.question)}[/bold]", soft_wrap=True)
    decisions: list[Decision] = []
    request = checkpoint.request
    for action, review in zip(request["action_requests"], request["review_configs"], strict=True):
        console.print(escape(f"  {call_text(action)}"))
        decisions.append(_decision(action["name"], action["args"], review["allowed_decisions"], tools))
    return {"decisions": decisions}
