"""The graph's node names, defined once. Routers return these `Literal` types."""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ASK_CONFIRMATION",
    "CALL_MODEL",
    "COMPACT",
    "EXECUTE_TOOLS",
    "RUN_TOOL",
    "FINALIZE",
    "INTERRUPT_FOR_CONFIRM",
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
