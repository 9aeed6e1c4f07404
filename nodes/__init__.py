"""The loop's nodes, its state schema, its runtime context, and the helpers they share."""

from graphloop.nodes.abandon import dismiss_pause
from graphloop.nodes.aio import run_sync
from graphloop.nodes.audit import LEDGER_KEY, decision_entries, inbox_entry
from graphloop.nodes.branches import (
    Branch,
    BranchNode,
    BranchRouter,
    ask_user,
    check_branches,
    clarify,
    guardrail,
)
from graphloop.nodes.call_model import call_model
from graphloop.nodes.calls import (
    RequestedCall,
    is_answer,
    requested_calls,
    this_run,
    unanswered_calls,
)
from graphloop.nodes.compact import compact
from graphloop.nodes.confirm import (
    ActionRequest,
    HITLRequest,
    ReviewConfig,
    ask_confirmation,
    check_decisions,
    hitl_request,
    interrupt_for_confirm,
    shown_calls,
)
from graphloop.nodes.context import CompactionSettings, LoopContext, RoleTools
from graphloop.nodes.execute_tools import execute_tools, run_tool
from graphloop.nodes.finalize import finalize
from graphloop.nodes.models import HostType, ModelConfig, ModelLike, ToolChoice

from graphloop.nodes.names import (  # isort: skip  # the node names, as one list
    ASK_CONFIRMATION, CALL_MODEL, COMPACT, EXECUTE_TOOLS, FINALIZE, INTERRUPT_FOR_CONFIRM, NODE_NAMES, RUN_TOOL,
    NodeName,
)
from graphloop.nodes.limits import NOTHING_SPENT, check_limits, checked_limits, task_start
from graphloop.nodes.policy import allowed_tools, check_policy
from graphloop.nodes.replies import exact_text
from graphloop.nodes.route import (
    AfterTools,
    ToolCalls,
    route_after_execute,
    route_after_model,
    route_after_tools,
)
from graphloop.nodes.state import (
    DEFAULT_MAX_ROUNDS,
    STATE_VERSION,
    CompactionAction,
    CompactionEvent,
    CompactionRecord,
    Decision,
    DecisionType,
    Gate,
    LoopState,
    LoopUpdate,
    PendingCall,
    Policy,
    Spent,
    StopReason,
    ToolJob,
    UsageLimits,
    policy_of,
)
from graphloop.nodes.tally import TallyCache, TallyKey, TokenTally
from graphloop.nodes.tokens import TokenCounter, count_tokens
from graphloop.nodes.toolbox import ToolBox, ToolLike
from graphloop.nodes.tracing import SpanLike, detached_span, span, step_in
from graphloop.nodes.usage import RUN_KEY, ModelCall
from graphloop.nodes.view import state_view

__all__ = [
    "ASK_CONFIRMATION",
    "CALL_MODEL",
    "COMPACT",
    "DEFAULT_MAX_ROUNDS",
    "EXECUTE_TOOLS",
    "FINALIZE",
    "INTERRUPT_FOR_CONFIRM",
    "LEDGER_KEY",
    "NODE_NAMES",
    "NOTHING_SPENT",
    "RUN_KEY",
    "RUN_TOOL",
    "STATE_VERSION",
    "ActionRequest",
    "AfterTools",
    "Branch",
    "BranchNode",
    "BranchRouter",
    "CompactionAction",
    "CompactionEvent",
    "CompactionRecord",
    "CompactionSettings",
    "Decision",
    "DecisionType",
    "Gate",
    "HITLRequest",
    "HostType",
    "LoopContext",
    "LoopState",
    "LoopUpdate",
    "ModelCall",
    "ModelConfig",
    "ModelLike",
    "NodeName",
    "PendingCall",
    "Policy",
    "RequestedCall",
    "ReviewConfig",
    "RoleTools",
    "SpanLike",
    "Spent",
    "StopReason",
    "TallyCache",
    "TallyKey",
    "TokenCounter",
    "TokenTally",
    "ToolBox",
    "ToolCalls",
    "ToolChoice",
    "ToolJob",
    "ToolLike",
    "UsageLimits",
    "allowed_tools",
    "ask_confirmation",
    "ask_user",
    "call_model",
    "check_branches",
    "check_decisions",
    "check_limits",
    "check_policy",
    "checked_limits",
    "clarify",
    "compact",
    "count_tokens",
    "decision_entries",
    "detached_span",
    "dismiss_pause",
    "exact_text",
    "execute_tools",
    "finalize",
    "guardrail",
    "hitl_request",
    "inbox_entry",
    "interrupt_for_confirm",
    "is_answer",
    "policy_of",
    "requested_calls",
    "route_after_execute",
    "route_after_model",
    "route_after_tools",
    "run_sync",
    "run_tool",
    "shown_calls",
    "span",
    "state_view",
    "step_in",
    "task_start",
    "this_run",
    "unanswered_calls",
]
