"""The options of `Orchestrator.run` and `resume`, and the checks every call makes before
anything is opened: an unknown option (a typo) is named, and so is a thread id that is not text.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict, cast

from langchain_core.messages import BaseMessage

from graphloop.checkpointers import ConfigurationError
from graphloop.nodes import Decision, ModelLike, UsageLimits

__all__ = ["ResumeOptions", "RunOptions", "check_options", "names_of", "new_thread_id", "session_message", "thread_id_of"]


class RunOptions(TypedDict, total=False):
    """The options of `Orchestrator.run` and `stream` (see `run`)."""

    system_prompt: str
    session_messages: Sequence[Mapping[str, Any] | BaseMessage] | None
    model_cfg: ModelLike | Iterable[ModelLike] | None
    respond_with_final: bool
    user_role: str
    tool_list: Sequence[str] | None
    confirm_allow: Iterable[str] | None
    confirm_deny: Iterable[str] | None
    thread_id: str | None
    user_id: str | None
    wait: float
    """Seconds to wait for the thread while another run has it (0: `ThreadBusyError` at once)."""
    limits: UsageLimits
    """What this run may spend on model calls, over the Orchestrator's own `limits`."""


class ResumeOptions(TypedDict, total=False):
    """The options of `Orchestrator.resume` and `stream_resume` (see `resume`)."""

    confirmed: bool | None
    decisions: Sequence[Decision] | None
    answer: str | None
    """The reply to a question pause (`PendingConfirmation.kind == "question"`)."""
    model_cfg: ModelLike | Iterable[ModelLike] | None
    decided_by: str | None
    interrupt_id: str | None
    wait: float
    """Seconds to wait for the thread while another run has it (0: `ThreadBusyError` at once)."""
    all_tools: bool
    """Refuse (`MissingToolsError`, nothing stored) unless this process has every tool the
    thread may use, not only the ones its pending calls need (the CLI asks for this)."""


def names_of(names: Iterable[str], *, sort: bool = False) -> list[str]:
    """`names` as a list; a single string stays one, for `check_policy` to refuse by name
    (`list("add")` would make it three one-letter tools)."""
    if isinstance(names, str):
        return cast(list[str], names)
    return sorted(names) if sort else list(names)


def check_options(options: Mapping[str, object], kind: type[RunOptions] | type[ResumeOptions], call: str) -> None:
    """Refuse an option `call` does not have (a typo would otherwise be ignored in silence)."""
    unknown = sorted(set(options) - kind.__optional_keys__ - kind.__required_keys__)
    if unknown:
        raise ConfigurationError(
            f"{call}() got unknown options {unknown!r}; its options: {sorted(kind.__optional_keys__)!r}")


def new_thread_id() -> str:
    """A new thread's id: 80 random bits in 20 hex digits (`3f9a0c…`).

    Shorter than a uuid's 32 because every checkpoint row and every write row (and its index
    entry) repeats it: 4% of a long thread's file. 80 bits make two equal ids unlikely to one
    in a million even among a billion threads.
    """
    return secrets.token_hex(10)


def thread_id_of(given: object) -> str:
    """`given` as a thread id: text that is not blank."""
    if not isinstance(given, str):
        raise ConfigurationError(
            f"thread_id {given!r} is not a thread's id: pass the text `thread_id` of a run (or the "
            "`checkpoint` of a paused one; a run that did not pause has none)")
    if not given.strip():
        raise ConfigurationError(f"thread_id {given!r} is empty: pass a thread's id, or none for a new thread")
    return given


_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def session_message(given: object) -> dict[str, Any]:
    """An earlier message of the session as the original loop kept it: its role and content
    (a `{"role", "content"}` dict, or a LangChain human, AI or system message)."""
    if isinstance(given, BaseMessage) and given.type in _ROLES:
        return {"role": _ROLES[given.type], "content": given.content}
    if isinstance(given, Mapping):
        fields = cast(Mapping[str, Any], given)
        if "role" in fields and "content" in fields:
            return {"role": fields["role"], "content": fields["content"]}
    raise ConfigurationError(
        f"session_messages item {given!r} is not a message: give {{'role': 'user', 'content': '...'}} "
        "dicts or LangChain human, AI or system messages")
