"""What an HTTP client of the served graph may send: new user messages, and decisions.

A client is not trusted with the thread's state. The run's policy, its pinned gate, the
waiting calls and the decisions come from the server's settings and from the graph itself,
so a client that sends any of them (in a run's input, a command's `update`, or a state
update) is refused with a message saying so. Assistant and system messages are refused too:
a client could otherwise change a call after the person decided on it. Tool messages are
dropped: the graph answers a call nobody decided as not run (Agent Chat UI sends
"Successfully handled tool call." for a waiting call when the person types instead).
A command may go to `__end__` (Agent Chat UI's "Mark as Resolved") and nowhere else: a
`Send` to `run_tool` would run a call nobody approved. State updates are refused, but for
Agent Inbox's dismissal: the state moves only through runs of the graph.

Example:
    >>> client_values({"messages": [{"type": "tool", "tool_call_id": "c1", "content": "ok"},
    ...                             {"type": "human", "content": "never mind"}]})["messages"][0].content
    'never mind'
"""

from __future__ import annotations

from typing import Any, cast

from langchain_core.messages import HumanMessage, ToolMessage, convert_to_messages
from langgraph.graph import END
from langgraph.types import Command

from graphloop.checkpointers import ClientInputError

__all__ = ["client_command", "client_update", "client_values"]


def client_values(values: object) -> dict[str, Any] | None:
    """`values` as the served graph takes them from a client: its user messages only."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise ClientInputError(f"the served graph takes {{'messages': [...]}} from a client, got {values!r}")
    fields = cast(dict[str, Any], values)
    others = sorted(set(fields) - {"messages"})
    if others:
        raise ClientInputError(
            f"a client may send only 'messages' to the served graph, not {others!r}: the policy, "
            "the tools and the gate come from the server's settings (graphloop.toml)")
    given: object = fields.get("messages") or []
    messages = convert_to_messages(cast(list[Any], given if isinstance(given, list) else [given]))
    refused = sorted({m.type for m in messages if not isinstance(m, HumanMessage | ToolMessage)})
    if refused:
        raise ClientInputError(
            f"a client may send user messages to the served graph, not {refused!r} messages")
    # new ids: a client's message never replaces one of the thread's (a message with the id of
    # an assistant message would take its calls out of the history)
    return {"messages": [m.model_copy(update={"id": None}) for m in messages if isinstance(m, HumanMessage)]}


def client_command(command: Command[Any]) -> Command[Any]:
    """`command` as the served graph takes it from a client: a resume, an update of user
    messages, and no destination but `__end__`."""
    goto: object = command.goto  # pyright: ignore[reportUnknownMemberType]  # langgraph types goto loosely
    if goto not in ((), [], None, END, [END], (END,)):
        raise ClientInputError(
            f"a client's command may go to '__end__' only, not {goto!r}: the graph decides where a "
            "run goes, and a call runs only once a person approved it")
    if command.update is None:
        return command
    if command.resume is not None:
        raise ClientInputError(
            "a client's resume may not carry a state update: decide the pause, then send a new "
            "message as a new run (a message sent with the decision would leave it unused)")
    return Command(update=client_values(command.update), goto=command.goto)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


def client_update(values: object, as_node: str | None) -> None:
    """Refuse a client's state update: the graph's state moves only through runs. The one
    update taken, Agent Inbox's dismissal (values null, as node `__end__`), is handled by the
    served graph before this."""
    given = sorted(cast(dict[str, Any], values)) if isinstance(values, dict) else values
    raise ClientInputError(
        f"the served graph takes no state updates from clients (got {given!r} as {as_node!r}): send a new message as a run, decide a pause with a resume, or dismiss it "
        "(Command(goto='__end__'), or values null as node '__end__')")
