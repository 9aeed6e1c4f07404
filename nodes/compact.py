"""The `compact` node: decide which old tool results the next request shows truncated."""

from __future__ import annotations

import logging

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime

from graphloop.nodes.config import LoopContext
from graphloop.nodes.state import CompactionRecord, LoopState
from graphloop.nodes.tokens import CHARS_PER_TOKEN, estimate_tokens
from graphloop.nodes.view import TRUNCATED_CHARS, render_view

__all__ = ["KEEP_RECENT_TOOL_RESULTS", "compact"]

logger = logging.getLogger(__name__)

KEEP_RECENT_TOOL_RESULTS = 6
"""The newest tool results are always shown whole (about two rounds of three calls)."""


def compact(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, CompactionRecord]:
    """Record which tool results to truncate so the request fits the smallest model's budget.

    Parity with the original loop: when the estimate passes the budget, every tool result
    older than the newest six is shown cut to 400 characters. A result once cleared stays
    cleared; the messages in state are never changed.
    """
    messages = state["messages"]
    budget = runtime.context.budget_tokens
    previous = state.get("compaction")
    cleared = list(previous["cleared"]) if previous else []
    whole = estimate_tokens(messages)
    sent = estimate_tokens(render_view(messages, set(cleared))) if cleared else whole
    if sent > budget:
        tool_results = [m for m in messages if isinstance(m, ToolMessage)]
        old = tool_results[: max(0, len(tool_results) - KEEP_RECENT_TOOL_RESULTS)]
        already = set(cleared)
        fresh = [m.id for m in old
                 if m.id and m.id not in already and len(m.text) > TRUNCATED_CHARS]
        if fresh:
            cleared += fresh
            sent = estimate_tokens(render_view(messages, set(cleared)))
            logger.info(
                "context compaction: saved ~%d tokens (%d chars), now ~%d / %d tokens",
                whole - sent, (whole - sent) * CHARS_PER_TOKEN, sent, budget,
            )
    return {"compaction": CompactionRecord(
        cleared=cleared, budget=budget, tokens_before=whole, tokens_after=sent)}
