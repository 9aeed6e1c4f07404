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

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Unpack, cast
from uuid import uuid4

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langgraph.checkpoint.base import BaseCheckpointSaver

from graphloop.checkpointers import (
    ConfigurationError,
    DbLike,
    Ledger,
    ThreadPausedError,
    UnknownThreadError,
    db_label,
)
from graphloop.checkpointers.blocking import in_db_thread
from graphloop.graph.approvals import Approvals
from graphloop.graph.builder import LoopGraph, compile_graph
from graphloop.graph.ownership import own_threads
from graphloop.graph.results import (
    AWAITING,
    OrchestratorResult,
    PendingConfirmation,
    RunEvent,
    ToolCallRecord,
    at_gate,
    pending_of,
)
from graphloop.graph.resumes import (
    VERSION,
    check_version,
    inbox_entry_of,
)
from graphloop.graph.retention import PruneReport, prune_threads
from graphloop.graph.running import (
    ResumeOptions,
    RunOptions,
    command_for,
    config_for,
    drive,
    final,
    holding,
    settled,
)
from graphloop.graph.sessions import SharedSession
from graphloop.nodes import (
    Branch,
    CompactionSettings,
    LoopContext,
    LoopState,
    ModelLike,
    Policy,
    run_sync,
)
from graphloop.nodes.config import RoleTools
from graphloop.nodes.gate import check_policy
from graphloop.nodes.state import DEFAULT_MAX_ROUNDS, STATE_VERSION, DecisionType
from graphloop.nodes.toolbox import ToolLike

__all__ = [
    "AWAITING",
    "SESSION_MESSAGES_KEPT",
    "TOOL_INSTRUCTION",
    "Orchestrator",
    "OrchestratorResult",
    "PendingConfirmation",
    "ResumeOptions",
    "RunOptions",
    "ToolCallRecord",
]

TOOL_INSTRUCTION = (
    "\n\nYou have access to tools. Use them when you need current information, need to read "
    "files, or need to take actions on the user's behalf. Respond naturally once you have "
    "what you need."
)
"""Appended to the system prompt so the model knows it has tools (as the original loop did)."""

SESSION_MESSAGES_KEPT = 6

logger = logging.getLogger(__name__)


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
        branches: Your own branch nodes (see `graphloop.nodes.branches`); a branch that
            pauses with `{"question": ...}` (like `clarify`) is resumed with `answer=`.
        tool_timeout: Seconds a tool call may take (`tool_timeouts`: per tool). An async tool
            is cancelled then; a sync tool's thread cannot be stopped, so the model is told its
            outcome is unknown and the same call is not run again while it may still run
            (see `graphloop.nodes.invoke`).

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
        branches: Sequence[Branch] = (),
        tool_timeout: float = 60.0,
        tool_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        if max_rounds < 1:
            raise ConfigurationError(f"max_rounds must be at least 1, got {max_rounds!r}")
        self.db = db
        self.max_rounds = max_rounds
        self.ask_model_to_confirm = ask_model_to_confirm
        self.tool_instruction = tool_instruction
        self.one_call_per_pause = one_call_per_pause
        self.branches = tuple(branches)
        # compiled once (a bad branch fails here); each session copies it onto its saver
        self._shared = SharedSession(db, compile_graph(branches=self.branches))
        self.context = LoopContext.create(models=models or (), tools=tools,
                                          confirm_required=confirm_required, roles=roles,
                                          compaction=compaction, allowed_decisions=allowed_decisions,
                                          tool_timeout=tool_timeout, tool_timeouts=tool_timeouts)

    @property
    def approvals(self) -> Approvals:
        """The inbox, remembered rules and audit of this Orchestrator's database."""
        if isinstance(self.db, BaseCheckpointSaver):
            raise self._no_ledger()
        return Approvals(self.db, self.context.tools.names)

    @asynccontextmanager
    async def _session(self, context: LoopContext) -> AsyncGenerator[tuple[LoopGraph, LoopContext], None]:
        """The compiled graph on this database, and `context` with its ledger (shared by the
        runs in progress on this event loop, see `graphloop.graph.sessions`)."""
        async with self._shared() as (graph, ledger):
            yield graph, replace(context, ledger=ledger)

    def _no_ledger(self) -> ConfigurationError:
        return ConfigurationError(
            "approvals live in the database (a SQLite file or a PostgreSQL URL); this Orchestrator "
            f"was given a saver object ({type(self.db).__name__}), so it keeps no ledger")

    def _ledger_of(self, context: LoopContext) -> Ledger:
        if context.ledger is None:
            raise self._no_ledger()
        return context.ledger

    def _context(self, model_cfg: ModelLike | Iterable[ModelLike] | None) -> LoopContext:
        context = self.context if model_cfg is None else self.context.with_models(model_cfg)
        _ = context.primary  # raises ConfigurationError when no model is configured
        return context

    async def run(self, task: str, **options: Unpack[RunOptions]) -> OrchestratorResult:
        """Run `task`; the result has `checkpoint` set if it waits for a person.

        Options (`RunOptions`): the original loop's `system_prompt`, `session_messages` (the
        last six are kept; both are used only when the thread is new), `model_cfg`,
        `respond_with_final`, `user_role`, `tool_list`, `confirm_allow`, `confirm_deny`; and
        `thread_id` (a finished thread's id continues that conversation) and `user_id` (whose
        remembered rules apply, and whom the audit names).
        """
        return await final(self.stream(task, tokens=False, **options))

    def stream(self, task: str, *, tokens: bool = True,
               **options: Unpack[RunOptions]) -> AsyncGenerator[RunEvent, None]:
        """`run`, as events: `Token`s as the model writes (unless `tokens=False`), then
        `ModelReply`, `ToolResult`, `Compacted` and other `Update`s as nodes finish, and at
        the end `Paused` (if it waits) and `Finished` with the `OrchestratorResult`; by then
        everything is saved and the database closed.
        """
        return settled(self._stream(task, tokens, options))

    async def _stream(self, task: str, tokens: bool, options: RunOptions) -> AsyncGenerator[RunEvent, None]:
        context = self._context(options.get("model_cfg"))
        policy = self._policy(options)
        check_policy(policy, context)
        given = options.get("thread_id")
        if given is not None and not str(given).strip():
            raise ConfigurationError(f"thread_id {given!r} is empty: pass a thread's id, or none for a new thread")
        thread_id = given or uuid4().hex
        async with self._session(context) as (graph, context), holding(context, thread_id, options.get("wait")):
            user_id = policy.get("user_id")
            if user_id is not None and context.ledger is not None:
                policy["remembered"] = await in_db_thread(context.ledger.rules, user_id)
            snapshot = await graph.aget_state(config_for(thread_id))
            check_version(snapshot, thread_id)
            # a new task at the gate answers the waiting calls as not run (graphloop.nodes.abandon)
            if snapshot.next and not at_gate(snapshot):
                raise ThreadPausedError(
                    f"thread {thread_id!r} has unfinished work (stopped by a crash or an error, "
                    "or waiting for the answer to a question); resume it first, or run this "
                    "task with another thread_id"
                )
            start = self._input(task, policy, options, new_thread=not snapshot.values.get("messages"))
            async for event in drive(graph, start, thread_id, context, tokens):
                yield event

    def _policy(self, options: RunOptions) -> Policy:
        tool_list = options.get("tool_list")
        return Policy(
            user_role=options.get("user_role", "user"),
            tool_list=list(tool_list) if tool_list is not None else None,
            confirm_allow=sorted(options.get("confirm_allow") or ()),
            confirm_deny=sorted(options.get("confirm_deny") or ()),
            max_rounds=self.max_rounds,
            respond_with_final=options.get("respond_with_final", True),
            ask_model_to_confirm=self.ask_model_to_confirm,
            user_id=options.get("user_id"),
            remembered={},
            one_call_per_pause=self.one_call_per_pause,
            state_version=STATE_VERSION,
            graphloop_version=VERSION,
        )

    def _input(self, task: str, policy: Policy, options: RunOptions, *, new_thread: bool) -> LoopState:
        messages: list[BaseMessage] = []
        system = (options.get("system_prompt") or "") + self.tool_instruction
        if new_thread and system:  # no system text, no system message
            messages.append(SystemMessage(system))
        if new_thread:
            recent = list(options.get("session_messages") or ())[-SESSION_MESSAGES_KEPT:]
            messages += convert_to_messages([{"role": m["role"], "content": m["content"]} for m in recent])
        messages.append(HumanMessage(task))
        return LoopState(messages=cast(list[AnyMessage], messages), rounds=0, policy=policy,
                         pending=[], question="")

    async def resume(
        self, checkpoint_or_thread_id: PendingConfirmation | str, **options: Unpack[ResumeOptions]
    ) -> OrchestratorResult:
        """Continue a run, here or in another process using the same database.

        A run paused at the gate needs `confirmed=True/False` (every call shown approved or
        rejected) or `decisions` (one per call shown: approve, edit or reject); a run paused
        by a question (the `clarify` branch) needs `answer="..."`. Everything is checked
        before anything is stored; a wrong resume raises a `ResumeError` and the thread stays
        paused. The decisions are bound to the pause they answer when given a
        `PendingConfirmation` or an `interrupt_id`: an answer to an earlier pause is refused.
        They are recorded with `decided_by` before anything runs, and only once: a second
        resume of the same pause (a double click, another server) raises
        `AlreadyDecidedError`. A run stopped by a crash or an error is continued from its
        last checkpoint when no decision is given; completed tool calls are not run again,
        and decisions recorded before the crash are carried out.
        """
        return await final(self.stream_resume(checkpoint_or_thread_id, tokens=False, **options))

    def stream_resume(
        self, checkpoint_or_thread_id: PendingConfirmation | str, *, tokens: bool = True,
        **options: Unpack[ResumeOptions],
    ) -> AsyncGenerator[RunEvent, None]:
        """`resume`, as the events `stream` yields."""
        return settled(self._stream_resume(checkpoint_or_thread_id, tokens, options))

    async def _stream_resume(
        self, checkpoint_or_thread_id: PendingConfirmation | str, tokens: bool, options: ResumeOptions,
    ) -> AsyncGenerator[RunEvent, None]:
        given = [k for k in ("confirmed", "decisions", "answer") if options.get(k) is not None]
        if len(given) > 1:
            raise ConfigurationError(f"pass one of confirmed=, decisions= or answer=, not {given}")
        context = self._context(options.get("model_cfg"))
        if isinstance(checkpoint_or_thread_id, PendingConfirmation):
            thread_id = checkpoint_or_thread_id.thread_id
            expected = options.get("interrupt_id") or checkpoint_or_thread_id.interrupt_id
        else:
            thread_id, expected = checkpoint_or_thread_id, options.get("interrupt_id")
        async with self._session(context) as (graph, context), holding(context, thread_id, options.get("wait")):
            snapshot = await graph.aget_state(config_for(thread_id))
            if not snapshot.values:
                raise UnknownThreadError(
                    f"no thread {thread_id!r} in the database {db_label(self.db)!r}; check the id and "
                    "that this Orchestrator uses the same db as the run"
                )
            check_version(snapshot, thread_id)
            command = await command_for(snapshot, thread_id, expected, context, options)
            async for event in drive(graph, command, thread_id, context, tokens):
                yield event

    async def rebuild_inbox(self) -> int:
        """Re-list every paused thread in the inbox from the checkpoints; return how many wait.

        Run it once after upgrading from graphloop 0.1.0 (which kept no inbox), or after
        threads were resumed through the graph without a ledger. It reads every thread's
        latest checkpoint: seconds for ten thousand threads.
        """
        async with self._session(self.context) as (graph, context):
            ledger = self._ledger_of(context)
            waiting = 0
            saver = cast(BaseCheckpointSaver[str], graph.checkpointer)  # pyright: ignore[reportUnknownMemberType]  # the session's saver
            for thread_id, _ in await own_threads(saver, ledger):  # another application's stay out
                snapshot = await graph.aget_state(config_for(thread_id))
                if not snapshot.interrupts or pending_of(snapshot.interrupts[0], thread_id).kind != "confirm":
                    await in_db_thread(ledger.remove_from_inbox, thread_id)
                    continue
                await in_db_thread(ledger.add_to_inbox, inbox_entry_of(thread_id, snapshot))
                waiting += 1
        return waiting

    async def prune(self, older_than: timedelta, *, audit: bool = False) -> PruneReport:
        """Delete finished threads whose last activity is older than `older_than`, then
        reclaim the space (`VACUUM` in SQLite). Paused and unfinished threads are kept.
        With `audit=True` their audit rows (tool calls, decisions) go too; by default the
        audit outlives the threads.
        """
        async with self._session(self.context) as (graph, context):
            ledger = self._ledger_of(context)
            saver = cast(BaseCheckpointSaver[str], graph.checkpointer)  # pyright: ignore[reportUnknownMemberType]  # the session's saver
            return await prune_threads(graph, saver, ledger, older_than, audit=audit)

    def prune_sync(self, older_than: timedelta, *, audit: bool = False) -> PruneReport:
        """`prune` for synchronous code."""
        return run_sync(self.prune(older_than, audit=audit))

    def rebuild_inbox_sync(self) -> int:
        """`rebuild_inbox` for synchronous code."""
        return run_sync(self.rebuild_inbox())

    def run_sync(self, task: str, **options: Unpack[RunOptions]) -> OrchestratorResult:
        """`run` for synchronous code (also works inside a running event loop, e.g. Jupyter)."""
        return run_sync(self.run(task, **options))

    def resume_sync(self, checkpoint_or_thread_id: PendingConfirmation | str,
                    **options: Unpack[ResumeOptions]) -> OrchestratorResult:
        """`resume` for synchronous code."""
        return run_sync(self.resume(checkpoint_or_thread_id, **options))
