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
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any, Unpack, cast
from uuid import uuid4

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, StateSnapshot, StreamMode

from graphloop.checkpointers import (
    ConfigurationError,
    DbLike,
    InvalidDecisionError,
    Ledger,
    in_db_thread,
)
from graphloop.graph.approvals import Approvals
from graphloop.graph.builder import LoopGraph, compile_graph
from graphloop.graph.options import (
    ResumeOptions,
    RunOptions,
    check_options,
    names_of,
    new_thread_id,
    session_message,
    thread_id_of,
)
from graphloop.graph.results import (
    AWAITING,
    Finished,
    OrchestratorResult,
    Paused,
    PendingConfirmation,
    RunEvent,
    ToolCallRecord,
    result_of,
)
from graphloop.graph.resumes import command_for
from graphloop.graph.retention import PruneReport, prune_threads
from graphloop.graph.runs import describe_run, run_attributes, run_ended, run_events
from graphloop.graph.sessions import SharedSession
from graphloop.graph.snapshots import VERSION, check_new_task, relist_paused
from graphloop.nodes import (
    DEFAULT_MAX_ROUNDS,
    RUN_KEY,
    STATE_VERSION,
    Branch,
    CompactionSettings,
    DecisionType,
    LoopContext,
    LoopState,
    ModelLike,
    Policy,
    RoleTools,
    ToolLike,
    UsageLimits,
    check_policy,
    checked_limits,
    detached_span,
    run_sync,
)

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

Start = LoopState | Command[Any] | None
"""What the graph is invoked with: a run's new input, a resume's command, or None to go on."""


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
        limits: What each run may spend on model calls (`UsageLimits`: `model_calls`,
            `input_tokens`, `output_tokens`, `total_tokens`); `run(limits=...)` adds to or
            overrides them. A run at a limit ends as at the round limit (see
            `graphloop.nodes.limits`), and its result's `stopped_by` names the limit.

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
        limits: UsageLimits | None = None,
    ) -> None:
        if max_rounds < 1:
            raise ConfigurationError(f"max_rounds must be at least 1, got {max_rounds!r}")
        if not isinstance(cast(object, ask_model_to_confirm), bool):  # typed bool, but "false" is true
            raise ConfigurationError(f"ask_model_to_confirm={ask_model_to_confirm!r} must be True or False")
        self.db = db
        self.max_rounds = max_rounds
        self.ask_model_to_confirm = ask_model_to_confirm
        self.tool_instruction = tool_instruction
        self.one_call_per_pause = one_call_per_pause
        self.limits = checked_limits(limits)
        self.branches = tuple(branches)
        # compiled once (a bad branch fails here); each session copies it onto its saver
        self._shared = SharedSession(db, compile_graph(branches=self.branches))
        self.context = LoopContext.create(models=models or (), tools=tools,
                                          confirm_required=confirm_required, roles=roles,
                                          compaction=compaction, allowed_decisions=allowed_decisions,
                                          tool_timeout=tool_timeout, tool_timeouts=tool_timeouts,
                                          one_call_per_pause=one_call_per_pause)

    @property
    def approvals(self) -> Approvals:
        """The inbox, remembered rules and audit of this Orchestrator's database."""
        if isinstance(self.db, BaseCheckpointSaver):
            raise self._no_ledger()
        return Approvals(self.db, self.context.tools.names)

    # -- run and resume ------------------------------------------------------------------------

    async def run(self, task: str, **options: Unpack[RunOptions]) -> OrchestratorResult:
        """Run `task`; the result has `checkpoint` set if it waits for a person.

        Options (`RunOptions`): the original loop's `system_prompt`, `session_messages` (the
        last six are kept; both are used only when the thread is new), `model_cfg`,
        `respond_with_final`, `user_role`, `tool_list`, `confirm_allow`, `confirm_deny`; and
        `thread_id` (a finished thread's id continues that conversation) and `user_id` (whose
        remembered rules apply, and whom the audit names).
        """
        return await _result(self.stream(task, tokens=False, **options))

    async def stream(self, task: str, *, tokens: bool = True,
                     **options: Unpack[RunOptions]) -> AsyncGenerator[RunEvent, None]:
        """`run`, as events: `Token`s as the model writes (unless `tokens=False`), then
        `ModelReply`, `ToolResult`, `Compacted` and other `Update`s as nodes finish, and at
        the end `Paused` (if it waits) and `Finished` with the `OrchestratorResult`; by then
        everything is saved and the database closed.
        """
        check_options(options, RunOptions, "run")
        given = options.get("thread_id")
        thread_id = new_thread_id() if given is None else thread_id_of(given)
        policy = self._policy(options)
        begin = partial(self._new_task, thread_id, task, policy, options)
        async for event in self._drive(thread_id, options, tokens, begin, policy):
            yield event

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
        return await _result(self.stream_resume(checkpoint_or_thread_id, tokens=False, **options))

    async def stream_resume(
        self, checkpoint_or_thread_id: PendingConfirmation | str, *, tokens: bool = True,
        **options: Unpack[ResumeOptions],
    ) -> AsyncGenerator[RunEvent, None]:
        """`resume`, as the events `stream` yields."""
        check_options(options, ResumeOptions, "resume")
        if isinstance(checkpoint_or_thread_id, PendingConfirmation):
            thread_id = checkpoint_or_thread_id.thread_id
            expected = options.get("interrupt_id") or checkpoint_or_thread_id.interrupt_id
        else:
            thread_id, expected = thread_id_of(checkpoint_or_thread_id), options.get("interrupt_id")
        given = [k for k in ("confirmed", "decisions", "answer") if options.get(k) is not None]
        if len(given) > 1:
            raise InvalidDecisionError(f"pass one of confirmed=, decisions= or answer=, not {given}",
                                       thread_id=thread_id)
        begin = partial(command_for, thread_id, expected, options, self.db)
        async for event in self._drive(thread_id, options, tokens, begin):
            yield event

    async def _drive(
        self, thread_id: str, options: RunOptions | ResumeOptions, tokens: bool,
        begin: Callable[[StateSnapshot, LoopContext], Awaitable[Start]], policy: Policy | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        """The one path of every run and resume, top to bottom.

        Context (the models to use, checked) → session (this database's saver and ledger) →
        the thread held (one driver at a time) → its saved state, checked → `begin` (a run's
        new input, or a resume's checked and recorded decisions) → the graph, streamed as
        events → the result, yielded once everything is saved and the session closed, so a
        caller that stops reading at `Paused` leaves nothing open and nothing unsaved.
        """
        context = self._context(options.get("model_cfg"))
        if policy is not None:
            check_policy(policy, context)
        run_id = uuid4().hex  # the ledger's rows of this run's model calls (`result.usage`)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, RUN_KEY: run_id}}
        modes: list[StreamMode] = ["updates", "messages"] if tokens else ["updates"]
        async with self._session(context) as (graph, context), _held(context, thread_id, options.get("wait")):
            snapshot = await graph.aget_state(config)
            start = await begin(snapshot, context)
            with detached_span("invoke_agent graphloop", run_attributes(thread_id, run_id, options)) as traced:
                answered_by = str(snapshot.values.get("answered_by", ""))
                async for event in run_events(graph.astream(  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]  # langgraph's astream is partly untyped
                        # durability="sync": each step is written before the next starts, so a killed
                        # process resumes where it was; what must survive a power cut is flushed by
                        # the ledger (`graphloop.checkpointers.ledger`: a call's claim, before it runs)
                        start, config, context=context, durability="sync", stream_mode=modes), answered_by, traced):
                    yield event
                snapshot = await graph.aget_state(config)
                usage = None
                if context.ledger is not None:  # every result is in the checkpoint now: the ledger's copies can go
                    # flushed when the run pauses: the pause a person will answer is on disk
                    usage = await in_db_thread(run_ended, context.ledger, thread_id, run_id, bool(snapshot.interrupts))
                result = replace(result_of(snapshot.values, snapshot.interrupts, thread_id), usage=usage)
                describe_run(traced, result)
        if result.checkpoint is not None:
            yield Paused(result.checkpoint)
        yield Finished(result)

    async def _new_task(self, thread_id: str, task: str, policy: Policy, options: RunOptions,
                        snapshot: StateSnapshot, context: LoopContext) -> LoopState:
        """A run's input, once the thread is known to take a new task."""
        check_new_task(snapshot, thread_id)
        user_id = policy.get("user_id")
        if user_id is not None and context.ledger is not None:
            policy["remembered"] = await in_db_thread(context.ledger.rules, user_id)
        messages: list[BaseMessage] = []
        if not snapshot.values.get("messages"):  # a new thread: its system prompt and session
            system = (options.get("system_prompt") or "") + self.tool_instruction
            if system:  # no system text, no system message
                messages.append(SystemMessage(system))
            recent = list(options.get("session_messages") or ())[-SESSION_MESSAGES_KEPT:]
            messages += convert_to_messages([session_message(m) for m in recent])
        messages.append(HumanMessage(task))
        # what the task spends, and the limit it stops at, start over in `compact` (new input)
        return LoopState(messages=cast(list[AnyMessage], messages), rounds=0, policy=policy,
                         pending=[], question="")

    def _policy(self, options: RunOptions) -> Policy:
        tool_list = options.get("tool_list")
        policy = Policy(
            user_role=options.get("user_role", "user"),
            tool_list=names_of(tool_list) if tool_list is not None else None,
            confirm_allow=names_of(options.get("confirm_allow") or (), sort=True),
            confirm_deny=names_of(options.get("confirm_deny") or (), sort=True),
            max_rounds=self.max_rounds,
            respond_with_final=options.get("respond_with_final", True),
            ask_model_to_confirm=self.ask_model_to_confirm,
            user_id=options.get("user_id"),
            remembered={},
            one_call_per_pause=self.one_call_per_pause,
            state_version=STATE_VERSION,
            graphloop_version=VERSION,
        )
        limits: UsageLimits = {**(self.limits or {}), **(checked_limits(options.get("limits")) or {})}
        if limits:  # a run without limits keeps no `spent`
            policy["limits"] = limits
        return policy

    def _context(self, model_cfg: ModelLike | Iterable[ModelLike] | None) -> LoopContext:
        context = self.context if model_cfg is None else self.context.with_models(model_cfg)
        _ = context.primary  # raises ConfigurationError when no model is configured
        return context

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

    # -- the database: inbox and retention -----------------------------------------------------

    async def rebuild_inbox(self) -> int:
        """Re-list every paused thread in the inbox from the checkpoints; return how many wait.

        Run it once after upgrading from graphloop 0.1.0 (which kept no inbox), or after
        threads were resumed through the graph without a ledger. It reads every thread's
        latest checkpoint: seconds for ten thousand threads.
        """
        async with self._session(self.context) as (graph, context):
            saver = cast(BaseCheckpointSaver[str], graph.checkpointer)  # pyright: ignore[reportUnknownMemberType]  # the session's saver
            return await relist_paused(graph, saver, self._ledger_of(context))

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


def _held(context: LoopContext, thread_id: str, wait: float | None) -> AbstractAsyncContextManager[None]:
    """The thread held for a whole run, from the first read of its state to the last write:
    one driver per thread (`graphloop.checkpointers.drivers`); the graph's own hold, in the
    same task, then lets it through. Not re-entrant: another run of the thread started in this
    task (inside the loop over a run's events) is refused."""
    if context.ledger is None:
        return nullcontext()
    return context.ledger.drivers.adrive(thread_id, wait or 0.0, reentrant=False)


async def _result(events: AsyncGenerator[RunEvent, None]) -> OrchestratorResult:
    """The result that ends `events` (read to the end, so the session is closed by then)."""
    result: OrchestratorResult | None = None
    async for event in events:
        if isinstance(event, Finished):
            result = event.result
    assert result is not None, "every run ends with Finished"
    return result
