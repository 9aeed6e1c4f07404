"""Running token totals of one thread's history and of its view, so a round counts only what is new.

`TokenTally` follows one thread: it ingests new messages, applies the compaction decisions in the
state's log, and plans the next ones (see `graphloop.nodes.compaction` for the rules). A
`TallyCache` keeps the tallies of recent threads; each `LoopContext` owns one, shared by the runs
of that context (an Orchestrator's) and safe under LangGraph's worker threads. After a restart a
thread's tally is rebuilt once from its state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage, ToolMessage

from graphloop.checkpointers import ContextBudgetError
from graphloop.nodes.state import CompactionAction, CompactionEvent, CompactionRecord
from graphloop.nodes.tokens import REPLY_PRIMING, TokenCounter
from graphloop.nodes.view import DROPPED, render

if TYPE_CHECKING:  # the context owns a cache of tallies; a tally only reads its settings
    from graphloop.nodes.context import CompactionSettings

__all__ = ["TallyCache", "TallyKey", "TokenTally", "Unit"]

Unit = list[str]
"""Ids of messages that are kept or dropped together: a user message, or an assistant message
with the tool results answering it."""


class TokenTally:
    """Token totals of one thread's history and of its view, kept up to date incrementally."""

    def __init__(self, counter: TokenCounter, settings: CompactionSettings) -> None:
        self.counter = counter
        self.settings = settings
        self.count = 0
        """Messages ingested."""
        self.last_id: str | None = None
        self.events = 0
        """Decisions applied (the length of the state's decision log)."""
        self.messages: dict[str, AnyMessage] = {}
        self.raw: dict[str, int] = {}
        self.view: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        """Characters shown per compacted message id (`DROPPED` when left out): the view."""
        self.raw_total = 0
        self.view_total = 0
        self.system: list[str] = []
        self.task: str | None = None
        self.before_task: deque[Unit] = deque()
        self.after_task: deque[Unit] = deque()
        self.latest: Unit = []
        self.tool_queue: deque[tuple[int, str]] = deque()
        self.tool_count = 0

    # -- keeping up with the history ---------------------------------------------------------

    def matches(self, messages: Sequence[AnyMessage], events: int) -> bool:
        """Whether this tally describes a prefix of `messages` with `events` decisions."""
        if self.count > len(messages) or self.events != events:
            return False
        return self.count == 0 or messages[self.count - 1].id == self.last_id

    def ingest(self, messages: Sequence[AnyMessage]) -> None:
        """Count the messages after the ones already ingested."""
        start = self.count - len(self.latest)
        for message in messages[start:self.count]:  # the latest round may have been edited (approve-with-edit)
            self._recount(message)
        for message in messages[self.count:]:
            self._add(message)
        self.count = len(messages)
        self.last_id = messages[-1].id if messages else None

    def _recount(self, message: AnyMessage) -> None:
        mid = message.id or ""
        tokens = self.counter.message(message)
        if mid in self.raw and mid not in self.shown and tokens != self.raw[mid]:
            self.raw_total += tokens - self.raw[mid]
            self.view_total += tokens - self.view[mid]
            self.raw[mid] = self.view[mid] = tokens
            self.messages[mid] = message

    def _add(self, message: AnyMessage) -> None:
        mid = message.id or ""
        tokens = self.counter.message(message)
        self.messages[mid] = message
        self.raw[mid] = self.view[mid] = tokens
        self.raw_total += tokens
        self.view_total += tokens
        if isinstance(message, SystemMessage):
            self.system.append(mid)
        elif isinstance(message, ToolMessage):
            self.latest.append(mid)
            if (message.name not in self.settings.exclude_tools
                    and len(message.text) > self.settings.keep_chars):
                self.tool_queue.append((self.tool_count, mid))
            self.tool_count += 1
        else:
            self._retire_latest()
            if isinstance(message, HumanMessage):
                if self.task is not None:  # the previous task may now be dropped like a round
                    self.before_task.append([self.task])
                    self.before_task.extend(self.after_task)
                    self.after_task.clear()
                self.task = mid
            else:
                self.latest = [mid]

    def _retire_latest(self) -> None:
        if self.latest:
            (self.after_task if self.task is not None else self.before_task).append(self.latest)
        self.latest = []

    def apply(self, event: CompactionEvent) -> None:
        """Apply one decision to the running totals."""
        mid = event["id"]
        self.events += 1
        if mid not in self.view or self.shown.get(mid) == DROPPED:
            return
        if event["action"] == "dropped":
            chars, tokens = DROPPED, 0
        else:
            chars = min(event["chars"], self.shown.get(mid, event["chars"]))
            tokens = self.counter.message(render(self.messages[mid], chars, self.settings))
        self.view_total += tokens - self.view[mid]
        self.view[mid] = tokens
        self.shown[mid] = chars

    # -- deciding ------------------------------------------------------------------------------

    def _decide(self, mid: str, action: CompactionAction, chars: int) -> CompactionEvent:
        event = CompactionEvent(id=mid, action=action, chars=chars)
        self.apply(event)
        return event

    def _oldest_unit(self) -> Unit | None:
        for units in (self.before_task, self.after_task):
            while units:
                unit = units.popleft()
                if any(self.shown.get(m) != DROPPED for m in unit):
                    return unit
        return None

    def _chars_to_fit(self, mid: str, excess: int) -> int:
        """How many characters of result `mid` to keep to save at least `excess` tokens."""
        message = self.messages[mid]
        text_chars = min(len(message.text), self.shown.get(mid, len(message.text)))
        target = self.view[mid] - excess
        chars = int(text_chars * max(target, 0) / max(self.view[mid], 1))
        while chars > 0 and self.counter.message(render(message, chars, self.settings)) > target:
            chars = int(chars * 0.9) - 1
        return max(chars, 0)

    def plan(self, budget: int, schema_tokens: int) -> tuple[list[CompactionEvent], CompactionRecord]:
        """Decide what to compact so the request fits `budget`; apply and return the decisions."""
        fixed = schema_tokens + REPLY_PRIMING
        system = sum(self.view[m] for m in self.system)
        task = self.view[self.task] if self.task is not None else 0
        if system + task + fixed > budget:
            raise ContextBudgetError(
                f"the system prompt ({system} tokens), the task ({task} tokens) and the tool "
                f"schemas ({schema_tokens} tokens) alone exceed the budget of {budget} tokens; "
                "shorten them, send fewer tools (tool_list), or use a model with a larger context_k",
                needed=system + task + fixed, budget=budget,
            )

        def over() -> int:
            return self.view_total + fixed - budget

        events: list[CompactionEvent] = []
        keep = self.settings.keep
        while over() > 0 and self.tool_queue and self.tool_queue[0][0] < self.tool_count - keep:
            _, mid = self.tool_queue.popleft()
            if self.shown.get(mid, self.settings.keep_chars + 1) > self.settings.keep_chars:
                events.append(self._decide(mid, "cleared", self.settings.keep_chars))
        while over() > 0 and (unit := self._oldest_unit()) is not None:
            events += [self._decide(m, "dropped", 0) for m in unit if self.shown.get(m) != DROPPED]
        results = [m for m in self.latest if isinstance(self.messages[m], ToolMessage)]
        for mid in sorted(results, key=lambda m: -self.view[m]):
            if over() <= 0:
                break
            events.append(self._decide(mid, "shortened", self._chars_to_fit(mid, over())))
        if over() > 0:
            latest = sum(self.view[m] for m in self.latest)
            raise ContextBudgetError(
                f"the system prompt ({system} tokens), the task ({task} tokens), the tool schemas "
                f"({schema_tokens} tokens) and the latest round at its shortest ({latest} tokens) "
                f"exceed the budget of {budget} tokens; use a model with a larger context_k",
                needed=self.view_total + fixed, budget=budget,
            )
        record = CompactionRecord(
            budget=budget, tokens_before=self.raw_total + fixed, tokens_after=self.view_total + fixed,
            cleared=[e["id"] for e in events if e["action"] == "cleared"],
            dropped=[e["id"] for e in events if e["action"] == "dropped"],
            shortened=[e["id"] for e in events if e["action"] == "shortened"],
        )
        return events, record


TallyKey = tuple[str, str, str, "CompactionSettings"]
"""Thread id, first message id, encoding name and settings: what a tally is valid for."""


class TallyCache:
    """The tallies of the most recent threads, least recently used dropped first; thread-safe."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._tallies: OrderedDict[TallyKey, TokenTally] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: TallyKey) -> TokenTally | None:
        with self._lock:
            return self._tallies.get(key)

    def put(self, key: TallyKey, tally: TokenTally) -> None:
        with self._lock:
            self._tallies[key] = tally
            self._tallies.move_to_end(key)
            while len(self._tallies) > self.size:
                self._tallies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tallies)
