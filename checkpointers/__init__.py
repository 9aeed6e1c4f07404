"""Storage: checkpoint savers and the exceptions every layer shares."""

from graphloop.checkpointers.errors import (
    ConfigurationError,
    ContextBudgetError,
    ContextOverflowError,
    GraphloopError,
    InvalidDecisionError,
    ModelCallError,
    ModelUnavailableError,
    NotPausedError,
    ResumeError,
    RunError,
    ThreadPausedError,
    UnknownThreadError,
)
from graphloop.checkpointers.savers import DbLike, memory_saver, open_async_saver, open_saver

__all__ = [
    "ConfigurationError",
    "ContextBudgetError",
    "ContextOverflowError",
    "DbLike",
    "GraphloopError",
    "InvalidDecisionError",
    "ModelCallError",
    "ModelUnavailableError",
    "NotPausedError",
    "ResumeError",
    "RunError",
    "ThreadPausedError",
    "UnknownThreadError",
    "memory_saver",
    "open_async_saver",
    "open_saver",
]
