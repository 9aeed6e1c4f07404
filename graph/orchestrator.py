"""The original loop's interface on top of the graph: `run(task)`, `resume(decision)`.

Example:
    >>> orch = Orchestrator([get_weather, send_email], confirm_required=["send_email"],
    ...                     db="graphloop.db", models=[model_cfg])       # doctest: +SKIP
    >>> result = orch.run_sync("Mail Ann the weather")                  # doctest: +SKIP
    >>> result.checkpoint.question                                       # doctest: +SKIP
    'May I send the email to ann@example.com?'
    >>> orch.resume_sync(result.thread_id, confirmed=True).response      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from typing import Any, TypedDict, cast
from uuid import uuid4

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, Interrupt, StateSnapshot

from graphloop.checkpointers import (
    ConfigurationError,
    DbLike,
    InboxEntry,
    InvalidDecisionError,
    Ledger,
    NotPausedError,
    ThreadPausedError,
    ThreadVersionError,
    UnknownThreadError,
    open_async_saver,
)
from graphloop.graph.approvals import Approvals
from graphloop.graph.builder import LoopGraph, compile_graph
from graphloop.nodes import (
    CompactionSettings,
    Decision,
    HITLRequest,
    LoopContext,
    LoopState,
    ModelLike,
    PendingCall,
    Policy,
    check_decisions,
    is_answer,
    requested_calls,
    run_sync,
    this_run,
)
from graphloop.nodes.audit import decision_entries, inbox_entry
from graphloop.nodes.config import RoleTools
from graphloop.nodes.confirm import shown_calls
from graphloop.nodes.state import DEFAULT_MAX_ROUNDS, STATE_VERSION, DecisionType
from graphloop.nodes.toolbox import ToolLike

__all__ = [
    "SESSION_MESSAGES_KEPT",
    "TOOL_INSTRUCTION",
    "Orchestrator",
    "OrchestratorResult",
    "PendingConfirmation",
    "ToolCallRecord",
]

TOOL_INSTRUCTION = (
    "\n\nYou have access to tools. Use them when you need current information, need to read "
    "files, or need to take actions on the user's behalf. Respond naturally once you have "
    "what you need."
)
"""Appended to the system prompt so the model knows it has tools (as the original loop did)."""

SESSION_MESSAGES_KEPT = 6
AWAITING = "[awaiting confirmation]"
VERSION = version("graphloop")

logger = logging.getLogger(__name__)


class ToolCallRecord(TypedDict):
    """One tool call of the run, as the original loop's `tool_call_log` had it."""

    tool: str
    args: dict[str, object]
    result: str


@dataclass(frozen=True)
class PendingConfirmation:
    """A run paused at the confirmation gate. Pass it (or its `thread_id`) to `resume`."""

    thread_id: str
    interrupt_id: str
    question: str
    request: HITLRequest
    """The interrupt payload: `action_requests` and `review_configs`."""


@dataclass(frozen=True)
class OrchestratorResult:
    """What a run or resume returns. `checkpoint` is set only while waiting for a decision."""

    response: str
    tool_calls: list[ToolCallRecord]
    backend: str
    """Label of the model that produced `response` ("graphloop" for the limit summary)."""
    checkpoint: PendingConfirmation | None
    thread_id: str


def _records(messages: Sequence[AnyMessage]) -> list[ToolCallRecord]:
    run = this_run(messages)
    results = {m.tool_call_id: m.text for m in run if isinstance(m, ToolMessage)}
    return [
        ToolCallRecord(tool=c.name, args=c.args, result=results.get(c.id, AWAITING))
        for m in run if isinstance(m, AIMessage)
        for c in requested_calls(m)
    ]


def _result(output: Mapping[str, Any], thread_id: str) -> OrchestratorResult:
    messages: list[AnyMessage] = output["messages"]
    interrupts: list[Interrupt] = output.get("__interrupt__") or []
    checkpoint = None
    response = messages[-1].text if messages else ""
    if interrupts:
        request: HITLRequest = interrupts[0].value
        response = request["action_requests"][0]["description"]
        checkpoint = PendingConfirmation(thread_id, interrupts[0].id, response, request)
    return OrchestratorResult(response=response, tool_calls=_records(messages),
                              backend=output.get("answered_by", ""), checkpoint=checkpoint,
                              thread_id=thread_id)


def _answer(
    snapshot: StateSnapshot, thread_id: str, expected: str | None, context: LoopContext,
    confirmed: bool | None, decisions: Sequence[Decision] | None,
) -> tuple[list[PendingCall], list[Decision]]:
    """The calls asked about and their decisions, checked against what the thread waits for."""
    if confirmed is None and decisions is None:
        raise InvalidDecisionError(
            f"thread {thread_id!r} is waiting for a decision; pass confirmed=True/False or "
            "decisions=[...]")
    if expected is not None and expected != snapshot.interrupts[0].id:
        raise InvalidDecisionError(
            f"this decision answers pause {expected!r}, but thread {thread_id!r} now waits at "
            f"pause {snapshot.interrupts[0].id!r}; show the person the latest pause "
            "(Orchestrator.approvals.pending()) and decide that one")
    policy: Policy = snapshot.values["policy"]
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    context.check_policy(policy)
    answer = list(decisions) if decisions is not None else [
        Decision(type="approve" if confirmed else "reject") for _ in shown]
    check_decisions({"decisions": answer}, shown, context.allowed_tools(policy))
    return shown, answer


def _recorded(ledger: Ledger | None, thread_id: str, shown: Sequence[PendingCall]) -> list[Decision]:
    """Decisions recorded for this pause by a process that stopped before carrying them out."""
    rows = {r["call_id"]: r for r in ledger.decisions(thread_id)} if ledger is not None else {}
    if not shown or any(p["id"] not in rows for p in shown):
        raise InvalidDecisionError(
            f"thread {thread_id!r} is waiting for a decision; pass confirmed=True/False or "
            "decisions=[...]")
    logger.warning("thread %s: carrying out the decisions recorded before an interruption", thread_id)
    return [cast(Decision, json.loads(rows[p["id"]]["payload"])) for p in shown]


def _check_version(snapshot: StateSnapshot, thread_id: str) -> None:
    policy: Mapping[str, Any] = snapshot.values.get("policy") or {}
    saved = int(policy.get("state_version", 1))
    if saved > STATE_VERSION:
        raise ThreadVersionError(
            f"thread {thread_id!r} was saved by graphloop {policy.get('graphloop_version', '?')} "
            f"(state version {saved}); this graphloop {VERSION} reads state versions up to "
            f"{STATE_VERSION}: resume it with graphloop {policy.get('graphloop_version', '?')} "
            "or newer")


def _check_unfinished(snapshot: StateSnapshot, thread_id: str, decided: bool) -> None:
    """Refuse to continue a thread that is not paused unless it stopped before its answer.

    A crash after every task of a step saved its result, but before the step's checkpoint,
    leaves no next task although the run has no answer: LangGraph applies those results and
    goes on when the thread is invoked again.
    """
    messages: Sequence[AnyMessage] = snapshot.values.get("messages", [])
    if not snapshot.next and messages and is_answer(messages[-1]):
        raise NotPausedError(f"thread {thread_id!r} has finished; nothing to resume")
    if decided:
        raise NotPausedError(
            f"thread {thread_id!r} is not waiting for a decision: it stopped before finishing "
            "(a crash or an error); resume it without decisions to continue")


def _inbox_entry(thread_id: str, snapshot: StateSnapshot) -> InboxEntry:
    """The inbox row of a paused thread, from its checkpoint."""
    policy: Policy = snapshot.values["policy"]
    request: HITLRequest = snapshot.interrupts[0].value
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    return inbox_entry(thread_id, snapshot.interrupts[0].id, shown,
                       request["action_requests"][0]["description"], policy,
                       waiting_since=snapshot.created_at)


def _forget_results(context: LoopContext, thread_id: str) -> None:
    """The run stopped with every result in its checkpoint: the ledger's copies can go."""
    if context.ledger is not None:
        context.ledger.forget_results(thread_id)


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


class Orchestrator:
    """The tool loop with the original orchestrator's arguments, backed by a checkpointed graph.

    Args:
        tools: LangChain tools or plain functions (with docstrings).
        confirm_required: Tools that need the user's confirmation before running.
        roles: Tool names per role, or `"*"` for all; None lets every role use every tool.
        db: SQLite file for the checkpoints, or an opened async-capable langgraph saver.
        models: Default model chain (primary first); `run(model_cfg=...)` overrides it.
        max_rounds: Model calls per run before the loop asks for a final answer.
        ask_model_to_confirm: Let the model phrase the confirmation question (tools disabled).
        tool_instruction: Appended to every new thread's system prompt.
        compaction: How requests are made to fit the context budget.
        allowed_decisions: Per gated tool, the decisions a person may make (default: all).
        one_call_per_pause: Pause once per gated call rather than once per turn.

    With a SQLite `db`, graphloop's own tables live in the same file: each tool call is
    claimed there before it runs (so it runs at most once), every call and decision is
    audited, paused threads are listed, and per-user rules are kept (see `approvals`).
    """

    def __init__(
        self,
        tools: Iterable[ToolLike] = (),
        *,
        confirm_required: Iterable[str] = (),
        roles: Mapping[str, RoleTools] | None = None,
        db: DbLike = "graphloop.db",
        models: ModelLike | Iterable[ModelLike] | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        ask_model_to_confirm: bool = True,
        tool_instruction: str = TOOL_INSTRUCTION,
        compaction: CompactionSettings | None = None,
        allowed_decisions: Mapping[str, Iterable[DecisionType]] | None = None,
        one_call_per_pause: bool = False,
    ) -> None:
        if max_rounds < 1:
            raise ConfigurationError(f"max_rounds must be at least 1, got {max_rounds!r}")
        self.db = db
        self.max_rounds = max_rounds
        self.ask_model_to_confirm = ask_model_to_confirm
        self.tool_instruction = tool_instruction
        self.one_call_per_pause = one_call_per_pause
        self.context = LoopContext.create(models=models or (), tools=tools,
                                          confirm_required=confirm_required, roles=roles,
                                          compaction=compaction, allowed_decisions=allowed_decisions)

    @property
    def approvals(self) -> Approvals:
        """The inbox, remembered rules and audit of this Orchestrator's database."""
        if isinstance(self.db, BaseCheckpointSaver):
            raise ConfigurationError(
                "approvals live in a SQLite file; this Orchestrator was given a saver object "
                f"({type(self.db).__name__}), so it keeps no ledger")
        return Approvals(self.db, self.context.tools.names)

    @contextmanager
    def _ledger(self) -> Generator[Ledger | None, None, None]:
        if isinstance(self.db, BaseCheckpointSaver):
            yield None
            return
        with Ledger.open(self.db) as ledger:
            yield ledger

    @asynccontextmanager
    async def _session(self, context: LoopContext) -> AsyncGenerator[tuple[LoopGraph, LoopContext], None]:
        """The compiled graph on this database, and `context` with its ledger."""
        async with open_async_saver(self.db) as saver:
            with self._ledger() as ledger:
                yield compile_graph(saver), replace(context, ledger=ledger)

    def _context(self, model_cfg: ModelLike | Iterable[ModelLike] | None) -> LoopContext:
        context = self.context if model_cfg is None else self.context.with_models(model_cfg)
        _ = context.primary  # raises ConfigurationError when no model is configured
        return context

    async def run(
        self,
        task: str,
        *,
        system_prompt: str = "",
        session_messages: Sequence[Mapping[str, Any]] | None = None,
        model_cfg: ModelLike | Iterable[ModelLike] | None = None,
        respond_with_final: bool = True,
        user_role: str = "user",
        tool_list: Sequence[str] | None = None,
        confirm_allow: Iterable[str] | None = None,
        confirm_deny: Iterable[str] | None = None,
        thread_id: str | None = None,
        user_id: str | None = None,
    ) -> OrchestratorResult:
        """Run `task`; the result has `checkpoint` set if it waits for confirmation.

        A `thread_id` of a finished thread continues that conversation; the system prompt
        and `session_messages` are used only when the thread is new (the last six are kept).
        `user_id` names the person the run acts for: their remembered rules apply (see
        `approvals.grant`), and the audit records them.
        """
        context = self._context(model_cfg)
        policy = Policy(
            user_role=user_role,
            tool_list=list(tool_list) if tool_list is not None else None,
            confirm_allow=sorted(confirm_allow or ()),
            confirm_deny=sorted(confirm_deny or ()),
            max_rounds=self.max_rounds,
            respond_with_final=respond_with_final,
            ask_model_to_confirm=self.ask_model_to_confirm,
            user_id=user_id,
            remembered={},
            one_call_per_pause=self.one_call_per_pause,
            state_version=STATE_VERSION,
            graphloop_version=VERSION,
        )
        context.check_policy(policy)
        thread_id = thread_id or uuid4().hex
        async with self._session(context) as (graph, context):
            if user_id is not None and context.ledger is not None:
                policy["remembered"] = context.ledger.rules(user_id)
            config = _config(thread_id)
            snapshot = await graph.aget_state(config)
            _check_version(snapshot, thread_id)
            if snapshot.next:
                raise ThreadPausedError(
                    f"thread {thread_id!r} has unfinished work (waiting for a decision, or "
                    "stopped by a crash or an error); resume it first, or run this task with "
                    "another thread_id"
                )
            messages: list[BaseMessage] = []
            if not snapshot.values.get("messages"):
                messages.append(SystemMessage((system_prompt or "") + self.tool_instruction))
                recent = list(session_messages or ())[-SESSION_MESSAGES_KEPT:]
                messages += convert_to_messages(
                    [{"role": m["role"], "content": m["content"]} for m in recent])
            messages.append(HumanMessage(task))
            state = LoopState(messages=cast(list[AnyMessage], messages), rounds=0, policy=policy,
                              pending=[], question="")
            # durability="sync": each step is on disk before the next starts (crash safety)
            output = await graph.ainvoke(state, config, context=context, durability="sync")  # pyright: ignore[reportUnknownMemberType]  # langgraph's ainvoke is partly untyped
            _forget_results(context, thread_id)
        return _result(output, thread_id)

    async def resume(
        self,
        checkpoint_or_thread_id: PendingConfirmation | str,
        *,
        confirmed: bool | None = None,
        decisions: Sequence[Decision] | None = None,
        model_cfg: ModelLike | Iterable[ModelLike] | None = None,
        decided_by: str | None = None,
        interrupt_id: str | None = None,
    ) -> OrchestratorResult:
        """Continue a run, here or in another process using the same database.

        A run paused at the gate needs `confirmed=True/False` (every call shown approved or
        rejected) or `decisions` (one per call shown: approve, edit or reject). Everything is
        checked before anything is stored; a wrong resume raises a `ResumeError` and the
        thread stays paused. The decisions are bound to the pause they answer when given a
        `PendingConfirmation` or an `interrupt_id`: an answer to an earlier pause is refused.
        They are recorded with `decided_by` before anything runs, and only once: a second
        resume of the same pause (a double click, another server) raises
        `AlreadyDecidedError`. A run stopped by a crash or an error is continued from its
        last checkpoint when neither is given; completed tool calls are not run again, and
        decisions recorded before the crash are carried out.
        """
        if confirmed is not None and decisions is not None:
            raise ConfigurationError("pass confirmed=True/False or decisions=[...], not both")
        context = self._context(model_cfg)
        if isinstance(checkpoint_or_thread_id, PendingConfirmation):
            thread_id = checkpoint_or_thread_id.thread_id
            expected = interrupt_id or checkpoint_or_thread_id.interrupt_id
        else:
            thread_id, expected = checkpoint_or_thread_id, interrupt_id
        async with self._session(context) as (graph, context):
            config = _config(thread_id)
            snapshot = await graph.aget_state(config)
            if not snapshot.values:
                raise UnknownThreadError(
                    f"no thread {thread_id!r} in the database {self.db!r}; check the id and "
                    "that this Orchestrator uses the same db as the run"
                )
            _check_version(snapshot, thread_id)
            command = await self._command(snapshot, thread_id, expected, context,
                                          confirmed, decisions, decided_by)
            output = await graph.ainvoke(command, config, context=context, durability="sync")  # pyright: ignore[reportUnknownMemberType]  # langgraph's ainvoke is partly untyped
            _forget_results(context, thread_id)
        return _result(output, thread_id)

    async def _command(
        self, snapshot: StateSnapshot, thread_id: str, expected: str | None, context: LoopContext,
        confirmed: bool | None, decisions: Sequence[Decision] | None, decided_by: str | None,
    ) -> Command[Any] | None:
        """What to invoke the graph with: the checked and recorded decisions, or None to continue."""
        decided = confirmed is not None or decisions is not None
        if not snapshot.interrupts:
            _check_unfinished(snapshot, thread_id, decided)
            return None
        ledger = context.ledger
        if not decided:
            shown = shown_calls(snapshot.values.get("pending", []), snapshot.values["policy"])
            return Command(resume={"decisions": _recorded(ledger, thread_id, shown)})
        shown, answer = _answer(snapshot, thread_id, expected, context, confirmed, decisions)
        if ledger is not None:
            entries = decision_entries(thread_id, snapshot.interrupts[0].id, shown, answer, decided_by)
            await asyncio.to_thread(ledger.claim_decisions, entries)
        return Command(resume={"decisions": answer})

    async def rebuild_inbox(self) -> int:
        """Re-list every paused thread in the inbox from the checkpoints; return how many wait.

        Run it once after upgrading from graphloop 0.1.0 (which kept no inbox), or after
        threads were resumed through the graph without a ledger. It reads every thread's
        latest checkpoint: seconds for ten thousand threads.
        """
        async with self._session(self.context) as (graph, context):
            saver = cast(BaseCheckpointSaver[str], graph.checkpointer)  # pyright: ignore[reportUnknownMemberType]  # compiled with the saver above
            if context.ledger is None:
                raise ConfigurationError("the inbox lives in a SQLite file; this Orchestrator has none")
            threads = {str(c.config.get("configurable", {})["thread_id"]) async for c in saver.alist(None)}
            waiting = 0
            for thread_id in sorted(threads):
                snapshot = await graph.aget_state(_config(thread_id))
                if not snapshot.interrupts:
                    context.ledger.remove_from_inbox(thread_id)
                    continue
                context.ledger.add_to_inbox(_inbox_entry(thread_id, snapshot))
                waiting += 1
        return waiting

    def rebuild_inbox_sync(self) -> int:
        """`rebuild_inbox` for synchronous code."""
        return run_sync(self.rebuild_inbox())

    def run_sync(self, task: str, **kwargs: Any) -> OrchestratorResult:
        """`run` for synchronous code (also works inside a running event loop, e.g. Jupyter)."""
        return run_sync(self.run(task, **kwargs))

    def resume_sync(self, checkpoint_or_thread_id: PendingConfirmation | str,
                    **kwargs: Any) -> OrchestratorResult:
        """`resume` for synchronous code."""
        return run_sync(self.resume(checkpoint_or_thread_id, **kwargs))
