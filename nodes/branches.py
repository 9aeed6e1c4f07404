"""Branch nodes: the one extension point for developers' own steps in the loop.

A `Branch` names a node, the condition (a pure function of state) that sends the run to it
after the model replied, and where the run continues afterwards. Branches are checked in
order, before the default routing; the first whose condition holds wins. `build_graph`
rejects a duplicate name and an unknown target when the graph is built.

Two ready branches show the pattern: `guardrail` answers tool calls that match a pattern
before anything runs, and `clarify` lets the model ask the user a question through
`interrupt()`.

Example (pass the branches to `build_graph(branches=[...])` or `compile_graph`):
    >>> branch = guardrail(r"rm\\s+-rf")
    >>> branch.name, branch.then
    ('guardrail', 'execute_tools')
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypedDict, cast

from langchain_core.messages import AnyMessage, ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt

from graphloop.checkpointers import ConfigurationError
from graphloop.nodes.calls import RequestedCall, unanswered_calls
from graphloop.nodes.context import LoopContext
from graphloop.nodes.names import EXECUTE_TOOLS, NODE_NAMES
from graphloop.nodes.route import route_after_model
from graphloop.nodes.state import LoopState, LoopUpdate

__all__ = [
    "ASK_USER",
    "Branch",
    "BranchNode",
    "BranchRouter",
    "ClarifyRequest",
    "ask_user",
    "check_branches",
    "clarify",
    "guardrail",
]

BranchNode = Callable[[LoopState, Runtime[LoopContext]], LoopUpdate]
"""A node: `(state, runtime) -> partial state update`, like the built-in ones."""

END_TARGET = "__end__"


@dataclass(frozen=True)
class Branch:
    """A developer's node, entered after the model replied when `condition(state)` holds.

    Args:
        name: The node's name in the graph (unique; not a built-in node's).
        condition: A pure function of state: enter this branch now?
        node: The node itself.
        then: Where the run continues: a built-in node ("compact", "execute_tools",
            "finalize", ...), another branch, or "__end__".
    """

    name: str
    condition: Callable[[LoopState], bool]
    node: BranchNode
    then: str = EXECUTE_TOOLS


def check_branches(branches: Sequence[Branch]) -> None:
    """Reject duplicate names and unknown targets, naming them (`ConfigurationError`)."""
    names = [b.name for b in branches]
    for branch in branches:
        if branch.name in NODE_NAMES or branch.name.startswith("__"):
            raise ConfigurationError(
                f"branch {branch.name!r} has the name of a built-in node; built-in nodes: "
                f"{list(NODE_NAMES)!r}")
        if names.count(branch.name) > 1:
            raise ConfigurationError(f"branch {branch.name!r} is registered twice; give each a unique name")
    targets = {*NODE_NAMES, *names, END_TARGET}
    for branch in branches:
        if branch.then not in targets:
            raise ConfigurationError(
                f"branch {branch.name!r} continues at {branch.then!r}, which is not a node; use "
                f"one of {sorted(targets)!r}")


@dataclass(frozen=True)
class BranchRouter:
    """The router after `call_model`: the first branch whose condition holds, else the default."""

    branches: tuple[Branch, ...]

    def __call__(self, state: LoopState) -> str | list[Send]:
        for branch in self.branches:
            if branch.condition(state):
                return branch.name
        return route_after_model(state)


# -- guardrail: block tool calls matching a pattern ---------------------------------------------

def _matching(pattern: str, state: LoopState) -> list[RequestedCall]:
    regex = re.compile(pattern)
    return [c for c in unanswered_calls(state["messages"])
            if regex.search(f"{c.name} {json.dumps(c.args, ensure_ascii=False, default=str)}")
            or regex.search(c.raw_args or "")]


def _guardrail_condition(pattern: str, state: LoopState) -> bool:
    return bool(_matching(pattern, state))


def _guardrail_node(pattern: str, state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Answer every matching call with a refusal; the others go on to `execute_tools`."""
    blocked = [ToolMessage(f"Blocked by guardrail: the call to {c.name!r} matches {pattern!r} and "
                           "was not run. Do not retry it; find another way or explain to the user.",
                           tool_call_id=c.id, name=c.name, status="error")
               for c in _matching(pattern, state)]
    return {"messages": blocked}


def guardrail(pattern: str, *, name: str = "guardrail") -> Branch:
    """A branch that blocks tool calls whose name or arguments match the regex `pattern`.

    The model reads why; the calls that do not match run as usual.
    """
    re.compile(pattern)  # a bad pattern fails here, at build time
    return Branch(name=name, condition=partial(_guardrail_condition, pattern),
                  node=partial(_guardrail_node, pattern), then=EXECUTE_TOOLS)


# -- clarify: the model asks the user a question ------------------------------------------------

ASK_USER = "ask_user"


def ask_user(question: str) -> str:
    """Ask the user a clarifying question and wait for the answer. Use it when the task is
    ambiguous and a wrong guess would waste work."""
    raise RuntimeError("ask_user is answered by the clarify branch; add clarify() to the graph")


class ClarifyRequest(TypedDict):
    """The interrupt payload of `clarify`. Resume with the answer text."""

    question: str


def _asks_user(state: LoopState) -> bool:
    return any(c.name == ASK_USER for c in unanswered_calls(state["messages"]))


def _clarify_node(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Pause with the model's question; on resume, the answer is the tool result."""
    calls = [c for c in unanswered_calls(state["messages"]) if c.name == ASK_USER]
    question = "\n".join(str(c.args.get("question", "")) for c in calls)
    answer = interrupt(ClarifyRequest(question=question))
    text = answer if isinstance(answer, str) else str(cast(object, answer))
    replies: list[AnyMessage] = [ToolMessage(text, tool_call_id=c.id, name=ASK_USER) for c in calls]
    return {"messages": replies}


def clarify(*, name: str = "clarify") -> Branch:
    """A branch that lets the model ask the user a question: add the `ask_user` tool too.

    When the model calls `ask_user(question)`, the run pauses with `{"question": ...}`;
    resume with `Command(resume="the user's answer")` and the model reads it as the result.
    """
    return Branch(name=name, condition=_asks_user, node=_clarify_node, then=EXECUTE_TOOLS)

