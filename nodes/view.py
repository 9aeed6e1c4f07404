"""What the model sees: the history with compaction decisions applied.

The state keeps every message whole; the view is rebuilt for each request from the decision
log (`compacted`), so the same decisions always render the same prompt prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from langchain_core.messages import AnyMessage

from graphloop.nodes.state import CompactionEvent, LoopState

if TYPE_CHECKING:  # the context holds the tallies, which render views: only the type is needed here
    from graphloop.nodes.context import CompactionSettings

__all__ = ["DROPPED", "decisions", "render_view", "shown", "state_view"]

DROPPED = -1
"""Marker in `decisions` for a message left out of the view."""


def shown(text: str, chars: int, settings: CompactionSettings) -> str:
    """The first `chars` characters of `text` and the placeholder naming what was omitted.

    Example:
        >>> from graphloop.nodes import CompactionSettings
        >>> shown("a" * 1000, 400, CompactionSettings())[-22:]
        'a …[600 chars omitted]'
    """
    if chars >= len(text):
        return text
    note = settings.placeholder.format(omitted=len(text) - chars)
    return f"{text[:chars]} {note}" if chars else note


def decisions(events: Iterable[CompactionEvent]) -> dict[str, int]:
    """Characters shown per compacted message id (`DROPPED` when left out)."""
    out: dict[str, int] = {}
    for event in events:
        previous = out.get(event["id"])
        if event["action"] == "dropped" or previous == DROPPED:
            out[event["id"]] = DROPPED
        else:
            out[event["id"]] = event["chars"] if previous is None else min(previous, event["chars"])
    return out


def render(message: AnyMessage, chars: int, settings: CompactionSettings) -> AnyMessage:
    """`message` with its text cut to `chars` characters (and the placeholder)."""
    return message.model_copy(update={"content": shown(message.text, chars, settings)})


def render_view(
    messages: Sequence[AnyMessage], chosen: Mapping[str, int], settings: CompactionSettings
) -> list[AnyMessage]:
    """`messages` with the decisions in `chosen` applied."""
    if not chosen:
        return list(messages)
    view: list[AnyMessage] = []
    for message in messages:
        chars = chosen.get(message.id or "")
        if chars is None:
            view.append(message)
        elif chars != DROPPED:
            view.append(render(message, chars, settings))
    return view


def state_view(state: LoopState, settings: CompactionSettings) -> list[AnyMessage]:
    """The view of `state`'s messages under its decision log."""
    return render_view(state["messages"], decisions(state.get("compacted", [])), settings)
