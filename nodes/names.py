"""The graph's node names, defined once. Routers return these `Literal` types."""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "ASK_CONFIRMATION",
    "CALL_MODEL",
    "COMPACT",
    "EXECUTE_TOOLS",
    "RUN_TOOL",
    "FINALIZE",
    "INTERRUPT_FOR_CONFIRM",
    "NODE_NAMES",
    "NodeName",
]

NodeName = Literal[
    "compact",
    "call_model",
    "execute_tools",
    "run_tool",
    "ask_confirmation",
    "interrupt_for_confirm",
    "finalize",
]

COMPACT: Final = "compact"
CALL_MODEL: Final = "call_model"
EXECUTE_TOOLS: Final = "execute_tools"
RUN_TOOL: Final = "run_tool"
ASK_CONFIRMATION: Final = "ask_confirmation"
INTERRUPT_FOR_CONFIRM: Final = "interrupt_for_confirm"
FINALIZE: Final = "finalize"

NODE_NAMES: tuple[NodeName, ...] = get_args(NodeName)
"""Every built-in node, in the order the loop meets them."""
