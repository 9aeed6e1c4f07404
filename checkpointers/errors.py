"""Every exception graphloop raises.

The tree::

    GraphloopError                  root: catch this to catch anything of ours
    ├── ConfigurationError          misuse found before a run starts (bad model config, role, tool)
    │   └── UnusableDatabaseError   the db is not a SQLite file, or cannot be opened or written
    └── RunError                    a run could not go on
        ├── ContextBudgetError      the fixed part of the request alone exceeds the budget
        ├── ModelCallError          the model endpoint failed or answered something unusable
        │   ├── ContextOverflowError    the server said the request exceeds its context window
        │   ├── EmptyReplyError         the model answered nothing (no text, no calls, no chunk)
        │   │   └── StreamCutError      a stream stopped before its finish reason
        │   └── ModelUnavailableError   every model of the chain failed (each one's last error)
        ├── ThreadPausedError       a new task for a thread with unfinished work
        ├── ThreadBusyError         another caller is running the thread now
        ├── ForeignThreadError      a thread another application wrote in the same database
        ├── ClientInputError        a client of the served graph sent what only the server sets
        └── ResumeError             a resume that cannot be applied; nothing was stored
            ├── UnknownThreadError      no thread with that id in the database
            ├── NotPausedError          the thread is not waiting for a decision
            ├── InvalidDecisionError    decisions that do not fit the pending calls
            ├── AlreadyDecidedError     someone else already decided this pause (a race lost)
            ├── MissingToolsError       this process lacks tools the thread may use
            └── ThreadVersionError      the thread was saved by a graphloop this one cannot resume

Each error carries its context as attributes, not only in its message: `thread_id` on the
thread errors (`ThreadPausedError`, `ThreadBusyError`, `ForeignThreadError`, every
`ResumeError`), `label` and `status` on `ModelCallError`, each model's last error in
`ModelUnavailableError.failures`, the sizes in `ContextBudgetError`. An attribute is None
where the raising code did not know it.

Warnings (each a `UserWarning`): `LedgerWarning`, when a graph is compiled with a saver
graphloop cannot attach its ledger to; `SeamWarning`, at import, when the installed
langchain-openai lacks, or has changed, a method graphloop's repairs override
(`graphloop.nodes.repairs`).

Tool failures are not exceptions for the caller: they become tool messages the model reads.
This module sits at the bottom of the import chain (graph → nodes → checkpointers) so every
layer can raise these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AlreadyDecidedError",
    "ClientInputError",
    "ConfigurationError",
    "ContextBudgetError",
    "ContextOverflowError",
    "EmptyReplyError",
    "StreamCutError",
    "ForeignThreadError",
    "GraphloopError",
    "InvalidDecisionError",
    "LedgerWarning",
    "MissingToolsError",
    "ModelCallError",
    "ModelUnavailableError",
    "NotPausedError",
    "ResumeError",
    "RunError",
    "SeamWarning",
    "ThreadBusyError",
    "ThreadPausedError",
    "ThreadVersionError",
    "UnknownThreadError",
    "UnusableDatabaseError",
]


class GraphloopError(Exception):
    """Root of every graphloop exception."""


class ConfigurationError(GraphloopError):
    """Build-time misuse: a bad model config, an unknown role or tool name, a wrong argument."""


class UnusableDatabaseError(ConfigurationError):
    """The database graphloop was given cannot be used: a file that is not SQLite (left as it
    was), a folder, a missing folder (never created), a file it may not read or write, a stored
    row that is damaged.

    Attributes:
        path: The database as given (None where the raising code did not know it: a damaged row
            is found by the serializer, which knows no file).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class RunError(GraphloopError):
    """A run could not continue; its thread stays resumable from the last checkpoint."""


class ModelCallError(RunError):
    """The model endpoint failed (HTTP error, connection error) or its reply was unusable.

    Attributes:
        label: The failing model's label.
        status: The HTTP status, or None for connection errors, timeouts and bad replies.
        retry_after: Seconds the server asked to wait (`Retry-After`), if it said.
    """

    def __init__(self, message: str, *, label: str = "", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.status = status
        self.retry_after = retry_after


class ContextBudgetError(RunError):
    """What must be sent (system prompt, task, tool schemas, latest round) exceeds the budget.

    Raised before anything is sent; the message names each size and the budget.

    Attributes:
        needed: Tokens the request needs at its shortest (None if not counted).
        budget: Tokens it may have: the budget of the smallest-window model that may be
            called next (None if not known).

    Example:
        >>> error = ContextBudgetError("too long", needed=9000, budget=6000)
        >>> error.needed - error.budget
        3000
    """

    def __init__(self, message: str, *, needed: int | None = None, budget: int | None = None) -> None:
        super().__init__(message)
        self.needed = needed
        self.budget = budget


class ContextOverflowError(ModelCallError):
    """The server rejected the request as longer than its context window."""


class EmptyReplyError(ModelCallError):
    """The model answered nothing: no text, no tool calls (or a stream without a chunk).

    Attributes:
        nothing_streamed: The stream had not one chunk (llama-cpp-python's answer to streaming
            with tools): the model is asked without streaming from then on, if that answers.
    """

    def __init__(self, message: str, *, label: str = "", nothing_streamed: bool = False) -> None:
        super().__init__(message, label=label)
        self.nothing_streamed = nothing_streamed


class StreamCutError(EmptyReplyError):
    """A streamed reply stopped before the server said it was finished (no finish reason: the
    connection closed mid-reply). What came is not used; the model is asked again, once,
    without streaming."""


class ModelUnavailableError(ModelCallError):
    """Every model of the chain failed; the message lists each model's last error.

    Attributes:
        failures: Each model's label and its last error, in the chain's order (a pair per
            model, so two models of one label both show). The errors are the ones the chain
            caught: their messages are redacted, and they hold no cause with the server's
            own exception. `dict(error.failures)` looks them up by label.

    Example:
        >>> down = ModelCallError("model 'a' answered HTTP 503", label="a", status=503)
        >>> error = ModelUnavailableError("every model failed (1)", failures=[("a", down)])
        >>> dict(error.failures)["a"].status
        503
    """

    def __init__(self, message: str, *, failures: Sequence[tuple[str, ModelCallError]] = ()) -> None:
        super().__init__(message, status=None)
        self.failures = tuple(failures)


class ThreadPausedError(RunError):
    """A new task for a thread with unfinished work (a pause, or a crash); resume it first.

    Attributes:
        thread_id: The thread (None if the raising code did not know it).
    """

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class ThreadBusyError(RunError, ValueError):
    """Another caller is running the thread now (a double submit, a second tab, another
    worker): a thread has one driver at a time. Nothing was read or stored; try again when
    it is done, or ask to wait (`wait=` seconds on the Orchestrator, `wait_for_thread` in a
    run's `configurable`). Also a `ValueError`, so a LangGraph server passes it on.

    Attributes:
        thread_id: The thread another caller is running (None if not known).
    """

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class ForeignThreadError(RunError, ValueError):
    """The thread id names a thread graphloop did not create: another LangGraph application's,
    in the same database. graphloop neither reads nor changes it; nothing was stored. Also a
    `ValueError`, so a LangGraph server passes the message on to the client.

    Attributes:
        thread_id: The other application's thread (None if not known).
    """

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class ClientInputError(RunError, ValueError):
    """A client of the served graph sent what it may not (the policy, the gate, assistant
    messages, a destination for the run); nothing was stored. Also a `ValueError`, so a
    LangGraph server passes the message on to the client."""


class ResumeError(RunError, ValueError):
    """A resume that cannot be applied. Raised before anything is stored.

    Also a `ValueError` (a resume value that does not fit the thread), which is what lets a
    LangGraph server pass its message on to the client instead of "An internal error occurred".

    Attributes:
        thread_id: The thread the resume named (None if the raising code did not know it, as
            when a decision is checked apart from its thread).

    Example:
        >>> NotPausedError("thread 't1' has finished; nothing to resume", thread_id="t1").thread_id
        't1'
    """

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class UnknownThreadError(ResumeError):
    """The thread id names no thread in the database."""


class NotPausedError(ResumeError):
    """The thread exists but is not waiting for a decision."""


class InvalidDecisionError(ResumeError):
    """The decisions do not fit the pending calls (count, type, or edited tool)."""


class MissingToolsError(ResumeError):
    """The resuming process lacks tools the thread may use (asked for with `all_tools=True`,
    as the CLI does, so a decision is never carried out by a process that cannot finish it).

    Attributes:
        missing: The thread's tools this process does not have, sorted.
        thread_id: The thread (see `ResumeError`).
    """

    def __init__(self, message: str, *, thread_id: str | None = None, missing: Sequence[str] = ()) -> None:
        super().__init__(message, thread_id=thread_id)
        self.missing = list(missing)


class AlreadyDecidedError(ResumeError):
    """The pause was already decided (another process or a second click won the race).

    Attributes:
        decisions: The recorded decisions: `call_id`, `tool`, `decision`, `decided_by`,
            `decided_at` each.
        thread_id: The thread (see `ResumeError`).
    """

    def __init__(self, message: str, decisions: Sequence[Mapping[str, object]] = (), *,
                 thread_id: str | None = None) -> None:
        super().__init__(message, thread_id=thread_id)
        self.decisions = list(decisions)

    @classmethod
    def of(cls, decisions: Sequence[Mapping[str, object]]) -> AlreadyDecidedError:
        """The error for `decisions` already on record."""
        first = decisions[0]
        return cls(
            f"thread {first['thread_id']!r}: call {first['call_id']!r} ({first['tool']}) was already "
            f"decided ({first['decision']!r} by {first['decided_by']!r} at {first['decided_at']}); "
            "nothing was changed. If the process that decided it crashed, call resume(thread_id) "
            "without decisions to carry out the recorded decision",
            decisions, thread_id=str(first["thread_id"]),
        )

    @classmethod
    def carried_out(cls, thread_id: str, answered: Sequence[Mapping[str, object]],
                    decisions: Sequence[Mapping[str, object]]) -> AlreadyDecidedError:
        """The error for a resume of a pause whose calls were already answered (`answered`:
        their `tool_calls` rows; `decisions`: what was decided, if anything)."""
        first = answered[0]
        how = (f"decided ({decisions[0]['decision']!r} by {decisions[0]['decided_by']!r} at "
               f"{decisions[0]['decided_at']})" if decisions else "answered without a decision")
        return cls(
            f"thread {thread_id!r}: this pause was already {how} and its call to {first['tool']!r} "
            f"is {first['status']}; this resume came from an earlier view of the thread (a second "
            "tab, a double submit, a view from before the user went on) and was refused: nothing "
            "ran. Reload the thread to see where it is now",
            decisions, thread_id=thread_id,
        )


class ThreadVersionError(ResumeError):
    """The thread's state was written by a graphloop version this one cannot resume.

    Attributes:
        thread_id: The thread (see `ResumeError`).
        saved_version: The state version the thread was saved with (None if not known).
        supported_version: The newest state version this graphloop reads (None if not known).
    """

    def __init__(self, message: str, *, thread_id: str | None = None, saved_version: int | None = None,
                 supported_version: int | None = None) -> None:
        super().__init__(message, thread_id=thread_id)
        self.saved_version = saved_version
        self.supported_version = supported_version


class LedgerWarning(UserWarning):
    """A graph compiled with a saver graphloop cannot attach its ledger to: calls are not
    claimed (at most once) nor audited unless the context brings a ledger."""


class SeamWarning(UserWarning):
    """The installed langchain-openai lacks (or has changed) a private method graphloop's
    repairs override (`graphloop.nodes.repairs`); that repair is off and langchain-openai's
    own behaviour is used. Warned once, at import, naming the method, the release and what is
    lost."""
