"""What the model sees: the history with cleared tool results shown truncated.

The state keeps every message whole; the view is rebuilt for each request from the compaction
record, so the same cleared set always renders the same prompt prefix.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from langchain_core.messages import AnyMessage, ToolMessage

__all__ = ["TRUNCATED_CHARS", "render_view", "truncate"]

TRUNCATED_CHARS = 400


def truncate(text: str, keep: int = TRUNCATED_CHARS) -> str:
    """The first `keep` characters and a note of how many were omitted."""
    if len(text) <= keep:
        return text
    return f"{text[:keep]} …[{len(text) - keep} chars omitted]"


def render_view(messages: Sequence[AnyMessage], cleared: Collection[str]) -> list[AnyMessage]:
    """`messages` with each tool message whose id is in `cleared` truncated."""
    if not cleared:
        return list(messages)
    view: list[AnyMessage] = []
    for message in messages:
        if isinstance(message, ToolMessage) and message.id in cleared:
            message = message.model_copy(update={"content": truncate(message.text)})
        view.append(message)
    return view
