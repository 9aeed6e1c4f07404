"""The loop's nodes, its state schema, its runtime context, and the helpers they share."""

from graphloop.nodes.aio import run_sync
from graphloop.nodes.branches import Branch, clarify, guardrail
from graphloop.nodes.call_model import call_model
from graphloop.nodes.calls import (
    RequestedCall,
    is_answer,
    requested_calls,
    this_run,
    unanswered_calls,
)
from graphloop.nodes.compact import compact
from graphloop.nodes.config import CompactionSettings, LoopContext, ModelConfig, ModelLike
from graphloop.nodes.confirm import (
    HITLRequest,
    ask_confirmation,
    check_decisions,
    hitl_request,
    interrupt_for_confirm,
)
from graphloop.nodes.execute_tools import execute_tools, run_tool
from graphloop.nodes.finalize import finalize
from graphloop.nodes.names import NodeName
from graphloop.nodes.replies import exact_text
from graphloop.nodes.route import route_after_execute, route_after_model, route_after_tools
from graphloop.nodes.state import (
    CompactionEvent,
    CompactionRecord,
    Decision,
    LoopState,
    PendingCall,
    Policy,
    ToolJob,
)
from graphloop.nodes.tokens import TokenCounter, count_tokens
from graphloop.nodes.toolbox import ToolBox, ToolLike
from graphloop.nodes.view import state_view

__all__ = [
    "Branch",
    "CompactionEvent",
    "CompactionRecord",
    "CompactionSettings",
    "Decision",
    "HITLRequest",
    "LoopContext",
    "LoopState",
    "ModelConfig",
    "ModelLike",
    "NodeName",
    "PendingCall",
    "Policy",
    "RequestedCall",
    "TokenCounter",
    "ToolJob",
    "ToolBox",
    "ToolLike",
    "ask_confirmation",
    "call_model",
    "check_decisions",
    "clarify",
    "compact",
    "count_tokens",
    "exact_text",
    "execute_tools",
    "finalize",
    "guardrail",
    "hitl_request",
    "interrupt_for_confirm",
    "is_answer",
    "requested_calls",
    "route_after_execute",
    "route_after_model",
    "route_after_tools",
    "run_sync",
    "run_tool",
    "state_view",
    "this_run",
    "unanswered_calls",
]
