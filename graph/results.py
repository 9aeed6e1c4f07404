"""What a run gives back: the final `OrchestratorResult`, and the events streamed on the way.

`Orchestrator.stream(task)` yields `Token`s as the model writes, `ModelReply`, `ToolResult`
and `Compacted` as nodes finish, any other node `Update`, then `Paused` or `Finished`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, ToolMessage
from langgraph.types import Interrupt

from graphloop.checkpointers import UsageTotals
from graphloop.nodes import (
    CALL_MODEL,
    COMPACT,
    RUN_TOOL,
    CompactionRecord,
    HITLRequest,
    StopReason,
    requested_calls,
    this_run,
)

__all__ = [
    "AWAITING",
    "Compacted",
    "Finished",
    "ModelReply",
    "OrchestratorResult",
    "Paused",
    "PendingConfirmation",
    "RunEvent",
    "Token",
    "ToolCallRecord",
    "ToolResult",
    "Update",
    "Usage",
    "event_of",
    "result_of",
]

AWAITING = "[awaiting confirmation]"


class ToolCallRecord(TypedDict):
    """One tool call of the run, as the original loop's `tool_call_log` had it."""

    tool: str
    args: dict[str, object]
    result: str


@dataclass(frozen=True)
class PendingConfirmation:
    """A run paused for a person. Pass it (or its `thread_id`) to `resume`.

    `kind` is "confirm" at the confirmation gate (`request` is the HITL request), or
    "question" when a branch such as `clarify` asks something (`request` is
    `{"question": ...}`; resume with `answer=`).
    """

    thread_id: str
    interrupt_id: str
    question: str
    request: HITLRequest
    """The interrupt payload: `action_requests` and `review_configs`."""
    kind: Literal["confirm", "question"] = "confirm"


@dataclass(frozen=True)
class Usage:
    """The model calls of one run (or resume) and their tokens, as the ledger recorded them
    (see `graphloop.nodes.usage`): the question and the final answer count too."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    model_calls: int = 0
    """Requests sent, retries and failures included."""
    counted_calls: int = 0
    """Calls whose tokens graphloop counted because the server reported none."""
    by_model: Mapping[str, UsageTotals] = field(default_factory=dict[str, UsageTotals])
    """The same sums per model label."""

    @classmethod
    def of(cls, by_model: Sequence[UsageTotals]) -> Usage:
        """From `Ledger.usage` sums per model: the run's are theirs added up."""
        return cls(input_tokens=sum(t["input_tokens"] for t in by_model),
                   output_tokens=sum(t["output_tokens"] for t in by_model),
                   total_tokens=sum(t["total_tokens"] for t in by_model),
                   model_calls=sum(t["model_calls"] for t in by_model),
                   counted_calls=sum(t["counted_calls"] for t in by_model),
                   by_model={str(t["key"]): t for t in by_model})


@dataclass(frozen=True)
class OrchestratorResult:
    """What a run or resume returns. `checkpoint` is set only while waiting for a decision."""

    response: str
    tool_calls: list[ToolCallRecord]
    backend: str
    """Label of the model that produced `response` ("graphloop" for the limit summary)."""
    checkpoint: PendingConfirmation | None
    thread_id: str
    usage: Usage | None = None
    """This run's model calls and tokens; None without a ledger (a saver you opened yourself
    without `attach_ledger`)."""
    stopped_by: StopReason | None = None
    """The limit the run ended at (`"rounds"`, or one of its `UsageLimits`); None when the
    model answered in time, or while paused."""


def _records(messages: Sequence[AnyMessage]) -> list[ToolCallRecord]:
    run = this_run(messages)
    results = {m.tool_call_id: m.text for m in run if isinstance(m, ToolMessage)}
    return [
        ToolCallRecord(tool=c.name, args=c.args, result=results.get(c.id, AWAITING))
        for m in run if isinstance(m, AIMessage)
        for c in requested_calls(m)
    ]


def pending_of(interrupt: Interrupt, thread_id: str) -> PendingConfirmation:
    """The pause an interrupt stands for."""
    value = cast(Mapping[str, Any], interrupt.value)
    if "action_requests" in value:
        request = cast(HITLRequest, value)
        return PendingConfirmation(thread_id, interrupt.id, request["action_requests"][0]["description"],
                                   request)
    return PendingConfirmation(thread_id, interrupt.id, str(value.get("question", value)),
                               cast(HITLRequest, value), kind="question")


def result_of(values: Mapping[str, Any], interrupts: Sequence[Interrupt], thread_id: str) -> OrchestratorResult:
    """The result of a run that stopped with `values` in state, paused at `interrupts` if any."""
    messages: list[AnyMessage] = values.get("messages", [])
    checkpoint = pending_of(interrupts[0], thread_id) if interrupts else None
    response = checkpoint.question if checkpoint else (messages[-1].text if messages else "")
    return OrchestratorResult(response=response, tool_calls=_records(messages),
                              backend=values.get("answered_by", ""), checkpoint=checkpoint,
                              thread_id=thread_id, stopped_by=None if checkpoint else values.get("stopped_by"))


@dataclass(frozen=True)
class Token:
    """A piece of text as the model streams it (`node` says which: call_model, finalize, ...)."""

    text: str
    node: str


@dataclass(frozen=True)
class ModelReply:
    """The model's whole reply, once received."""

    message: AIMessage
    model: str
    """Label of the model that answered."""


@dataclass(frozen=True)
class ToolResult:
    """A tool call finished (or was answered without running)."""

    name: str
    call_id: str
    text: str
    status: str


@dataclass(frozen=True)
class Compacted:
    """What `compact` decided for the next request: the budget and tokens before and after."""

    record: CompactionRecord


@dataclass(frozen=True)
class Update:
    """Any other node's state update, as LangGraph's `stream_mode="updates"` gives it."""

    node: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Paused:
    """The run waits for a person; resume with this checkpoint."""

    checkpoint: PendingConfirmation


@dataclass(frozen=True)
class Finished:
    """The run is over (answered, paused or at its limit); the last event of every stream."""

    result: OrchestratorResult


RunEvent = Token | ModelReply | ToolResult | Compacted | Update | Paused | Finished


def event_of(mode: str, chunk: Any, answered_by: str = "") -> list[RunEvent]:
    """The progress events for one item of `astream(stream_mode=["messages", "updates"])`.

    `answered_by` is the thread's latest before this item: `call_model` writes the label only
    when the model changes, so a reply without one came from the same model.
    """
    if mode == "messages":
        message, meta = chunk
        if isinstance(message, AIMessageChunk) and message.text:
            return [Token(message.text, str(meta.get("langgraph_node", "")))]
        return []
    events: list[RunEvent] = []
    for node, values in cast(Mapping[str, Any], chunk).items():
        if node == "__interrupt__":
            continue  # `Paused` comes once the run has stopped and its state is saved
        values = cast(Mapping[str, Any], values or {})
        if node == COMPACT and "compaction" in values:
            events.append(Compacted(values["compaction"]))
        elif node == CALL_MODEL and values.get("messages"):  # none when a limit stopped the round
            events.append(ModelReply(values["messages"][-1], values.get("answered_by", answered_by)))
        elif node == RUN_TOOL or any(isinstance(m, ToolMessage) for m in values.get("messages", [])):
            events += [ToolResult(m.name or "", m.tool_call_id, m.text, m.status)
                       for m in values.get("messages", []) if isinstance(m, ToolMessage)]
        else:
            events.append(Update(node, values))
    return events
