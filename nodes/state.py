"""The checkpointed state of a run, and the run's policy.

Only what must survive a restart lives here. Model configs (with their API keys) and tool
callables are runtime context (`graphloop.nodes.context.LoopContext`), never state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, Required, TypedDict, cast, get_args

from langchain_core.messages import AnyMessage, BaseMessage
from langgraph.channels import DeltaChannel

# langgraph's batch form of the add-messages reducer, made for DeltaChannel: it is
# batching-invariant, and langgraph stamps stable ids on every message written to it.
from langgraph.graph.message import _messages_delta_reducer  # pyright: ignore[reportPrivateUsage]

from graphloop.checkpointers import Rule

__all__ = [
    "DECISION_TYPES",
    "DEFAULT_DECISIONS",
    "DEFAULT_MAX_ROUNDS",
    "IGNORE",
    "MESSAGES_SNAPSHOT_EVERY",
    "STATE_VERSION",
    "CompactionAction",
    "CompactionEvent",
    "CompactionRecord",
    "Decision",
    "DecisionType",
    "Gate",
    "LoopState",
    "LoopUpdate",
    "PendingCall",
    "Policy",
    "Spent",
    "StopReason",
    "ToolJob",
    "UsageLimits",
    "apply_messages",
    "policy_of",
]

DEFAULT_MAX_ROUNDS = 10

STATE_VERSION = 1
"""Shape of the checkpointed state. A thread records the version that started it; a thread
from a newer version is refused with a message naming it, older ones are read as they are
(every field added since is `NotRequired`)."""

MESSAGES_SNAPSHOT_EVERY = 1000
"""Writes to `messages` between two full copies of the history in a checkpoint (two a tool
round). A copy bounds what reading a thread replays; LangGraph's default of 100 made copies
of the whole history 26% of the database after 200 rounds, and reading a 200-round thread
(replaying 400 writes) costs 25 ms instead of 9 ms."""

DecisionType = Literal["approve", "edit", "reject", "respond"]
"""LangChain's four decisions on a gated call (`HumanInTheLoopMiddleware`)."""
DECISION_TYPES: tuple[DecisionType, ...] = get_args(DecisionType)
DEFAULT_DECISIONS: tuple[DecisionType, ...] = ("approve", "edit", "reject")
"""What a person may decide about a gated tool unless `allowed_decisions` says otherwise."""
IGNORE: Literal["ignore"] = "ignore"
"""Not a decision on the call but on the pause: the person dismissed it (Agent Inbox's
"ignore", Agent Chat UI's "Mark as Resolved"). Every waiting call is answered as not run and
the run ends. Always allowed."""


class Gate(TypedDict):
    """The gate a thread pinned when its run started (see `graphloop.nodes.policy`)."""

    tools: list[str]
    """Tools the run may see and call: the role's set, narrowed by `tool_list`."""
    gated: list[str]
    """Tools whose calls wait for a person's decision."""
    decisions: dict[str, list[DecisionType]]
    """Per gated tool, the decisions a person may make."""


class UsageLimits(TypedDict, total=False):
    """What one run may spend on its model calls (`graphloop.nodes.limits`); each a whole
    number, 1 or more. Like `max_rounds`, they count from the task's start, across its pauses."""

    model_calls: int
    """Requests to models: retries, the question and the final answer included."""
    input_tokens: int
    output_tokens: int
    total_tokens: int


StopReason = Literal["rounds", "model_calls", "input_tokens", "output_tokens", "total_tokens"]
"""Why a run ended at a limit: `max_rounds`, or one of its `UsageLimits`."""


class Spent(TypedDict):
    """What a run with `UsageLimits` has spent so far (kept only when it has limits)."""

    model_calls: int
    input_tokens: int
    output_tokens: int
    rows: NotRequired[int]
    """The thread's `model_calls` rows in the ledger that this count includes, or that came
    before the task: a row beyond them (a round whose every model failed, so its node could
    not update the state) is added when the next request is checked."""


class Policy(TypedDict):
    """What a run may do, fixed when it starts so a resume needs only the thread id."""

    user_role: str
    """Role whose tool set applies (a key of `roles`)."""
    tool_list: list[str] | None
    """Further narrows the role's tools for this run; None means the role's whole set."""
    confirm_allow: list[str]
    """Tools exempt from confirmation for this user."""
    confirm_deny: list[str]
    """Tools that always need confirmation for this user."""
    max_rounds: int
    """Model calls allowed before `finalize` asks for an answer without tools."""
    respond_with_final: bool
    """At the round limit, ask the model for a final answer (True) or return the summary."""
    ask_model_to_confirm: bool
    """Ask the model (tools disabled) to phrase the confirmation question before pausing."""
    user_id: NotRequired[str | None]
    """Who the run is for: the key of remembered rules, recorded in the audit."""
    remembered: NotRequired[dict[str, Rule]]
    """The user's remembered rules (tool → allow/ask/never) as they were when the run started."""
    one_call_per_pause: NotRequired[bool]
    """Pause once per gated call instead of once per turn (review UIs showing one action)."""
    limits: NotRequired[UsageLimits]
    """What the run may spend on model calls; none when absent (`graphloop.nodes.limits`)."""
    state_version: NotRequired[int]
    """`STATE_VERSION` of the graphloop that started the run (absent: 1)."""
    graphloop_version: NotRequired[str]
    """The graphloop release that started the run, for error messages."""
    gate: NotRequired[Gate]
    """Pinned by the run's first step from the context it ran with; a resume in another
    process can add gates, never remove them (absent in threads of graphloop 0.2.0 and older:
    pinned at their next run)."""


def apply_messages(messages: list[AnyMessage], update: Sequence[BaseMessage]) -> list[AnyMessage]:
    """`messages` after a node's write of `update` to them (what LangGraph will store)."""
    return _messages_delta_reducer(messages, [list(update)])  # pyright: ignore[reportArgumentType]  # RemoveMessage too, as LangGraph takes it


def policy_of(state: LoopState | Mapping[str, Any]) -> Policy:
    """The run's policy; what a given policy leaves out takes its default (role "user" with
    all its tools, no per-user exemptions, `DEFAULT_MAX_ROUNDS`, a final answer at the limit,
    the model phrasing the question), so `{"user_role": "admin"}` is a whole policy.

    Example:
        >>> policy_of({"messages": [], "policy": {"user_role": "admin"}})["max_rounds"]
        10
    """
    given: Mapping[str, object] = state.get("policy") or {}
    if Policy.__required_keys__ <= given.keys():
        return cast(Policy, given)
    return cast(Policy, {**_default_policy(), **given})


def _default_policy() -> Policy:
    return Policy(user_role="user", tool_list=None, confirm_allow=[], confirm_deny=[],
                  max_rounds=DEFAULT_MAX_ROUNDS, respond_with_final=True, ask_model_to_confirm=True)


class Decision(TypedDict):
    """A person's answer for one gated call (LangChain's HITL decision shape)."""

    type: DecisionType | Literal["ignore"]
    edited_action: NotRequired[dict[str, object]]
    """For `edit`: `{"name": ..., "args": {...}}`, the arguments checked against the tool's schema."""
    message: NotRequired[str]
    """For `reject`: told to the model with the denial; for `respond`: the result the model reads."""


class PendingCall(TypedDict):
    """A gated tool call waiting for, or carrying, a decision."""

    id: str
    name: str
    args: dict[str, object]
    decision: NotRequired[Decision]
    allowed: NotRequired[list[DecisionType]]
    """The decisions a person may make for this call (absent: approve, edit, reject)."""


CompactionAction = Literal["cleared", "dropped", "shortened"]


class CompactionEvent(TypedDict):
    """One decision about what the model sees of one message. Decisions are never undone."""

    id: str
    """The message's id."""
    action: CompactionAction
    """`cleared`: an old tool result cut short; `dropped`: left out with its whole round;
    `shortened`: a result of the latest round cut to fit."""
    chars: int
    """Characters of the original content still shown (0 when dropped)."""


def _append_events(events: list[CompactionEvent], writes: Sequence[list[CompactionEvent]]) -> list[CompactionEvent]:
    """DeltaChannel reducer: the log only grows (batching-invariant by construction)."""
    return [*events, *(event for write in writes for event in write)]


class ToolJob(TypedDict):
    """One call for the `run_tool` node: the input of its `Send`, with what its audit row needs."""

    id: str
    name: str
    args: dict[str, object]
    round: NotRequired[int]
    model: NotRequired[str]
    """Label of the model that asked for the call."""
    user_id: NotRequired[str | None]
    user_role: NotRequired[str]
    direct: NotRequired[bool]
    """Sent straight from the model's turn (`runnable_now`), not through `execute_tools`: the
    gate was checked by the process that routed it, so `run_tool` checks it again in the process
    that runs it (a resume after a crash may add gates, or lack the tool)."""
    exempt: NotRequired[list[str]]
    """For a `direct` job: the tools this run exempts from `confirm_required` (`exempt_tools`)."""


class CompactionRecord(TypedDict):
    """What compaction decided for the latest request. History itself is never changed."""

    budget: int
    """Tokens the request may use: the smallest budget in the model chain."""
    tokens_before: int
    """Tokens the request would cost with nothing compacted (whole history, schemas)."""
    tokens_after: int
    """Tokens of the request as sent."""
    cleared: list[str]
    """Ids cleared for this request (earlier decisions are in `compacted`)."""
    dropped: list[str]
    shortened: list[str]


class LoopState(TypedDict, total=False):
    """The graph's state. `messages` is the whole, lossless conversation."""

    messages: Required[Annotated[
        list[AnyMessage],
        # langgraph types this reducer narrower than DeltaChannel's parameter; they match at run time
        DeltaChannel(_messages_delta_reducer, snapshot_frequency=MESSAGES_SNAPSHOT_EVERY),  # pyright: ignore[reportArgumentType]
    ]]
    """Every message of the thread; stored as per-step deltas, so storage grows linearly."""
    rounds: int
    """Model calls made in this run."""
    policy: Policy
    pending: list[PendingCall]
    """Gated calls of the latest turn: waiting for decisions, or decided and about to run."""
    question: str
    """The confirmation question shown while paused."""
    compaction: CompactionRecord
    """The latest compaction decision and its token counts."""
    compacted: Annotated[list[CompactionEvent], DeltaChannel(_append_events)]
    """Every compaction decision of the thread, oldest first; the view is rebuilt from it."""
    answered_by: str
    """Label of the model that produced the latest reply (never its key)."""
    dismissed: bool
    """The person dismissed the latest pause: its calls were answered as not run and the run
    ended there. Cleared when the next run starts."""
    spent: Spent
    """Model calls and tokens of the task so far, kept when its policy has `limits`."""
    stopped_by: StopReason | None
    """The limit the task's run ended at, if any (None when it answered in time)."""


class LoopUpdate(TypedDict, total=False):
    """What a node returns: some of `LoopState`'s fields, each merged by its reducer (`messages`
    added, or replaced by id, or removed with `RemoveMessage`; `compacted` appended; the rest
    overwritten). The same keys as `LoopState` (a test keeps them in step)."""

    messages: Sequence[BaseMessage]
    rounds: int
    policy: Policy
    pending: list[PendingCall]
    question: str
    compaction: CompactionRecord
    compacted: list[CompactionEvent]
    answered_by: str
    dismissed: bool
    spent: Spent
    stopped_by: StopReason | None
