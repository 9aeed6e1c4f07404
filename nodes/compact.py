"""The `compact` node: make the next request fit the budget of the smallest model."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graphloop.nodes.compaction import plan_compaction
from graphloop.nodes.config import LoopContext
from graphloop.nodes.state import LoopState

__all__ = ["compact"]


def compact(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Decide what the model will see (see `graphloop.nodes.compaction`); history stays whole."""
    return plan_compaction(state, runtime.context)
