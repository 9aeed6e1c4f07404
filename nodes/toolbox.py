"""Tools by name: LangChain tools and plain functions, with their OpenAI schemas.

Example:
    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> box = ToolBox([add])
    >>> box.names
    ('add',)
    >>> box.schemas(["add"])[0]["function"]["name"]
    'add'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from graphloop.checkpointers.errors import ConfigurationError

__all__ = ["ToolBox", "ToolLike"]

ToolLike = BaseTool | Callable[..., Any]
"""A LangChain tool (`@tool`, `BaseTool`) or a plain sync or async function with a docstring."""


def _as_tool(tool: ToolLike) -> BaseTool:
    if isinstance(tool, BaseTool):
        return tool
    if not callable(tool):
        raise ConfigurationError(f"tool {tool!r} is neither a LangChain tool nor a function")
    try:
        if inspect.iscoroutinefunction(tool):
            return StructuredTool.from_function(coroutine=tool)
        return StructuredTool.from_function(func=tool)
    except ValueError as exc:  # langchain's wording: "Function must have a docstring ..."
        name = getattr(tool, "__name__", repr(tool))
        raise ConfigurationError(
            f"tool {name!r}: {exc}; the docstring is the description the model reads"
        ) from exc


class ToolBox:
    """An ordered, name-unique set of tools and their OpenAI function schemas."""

    def __init__(self, tools: Iterable[ToolLike] = ()) -> None:
        self._tools: dict[str, BaseTool] = {}
        for tool in map(_as_tool, tools):
            if tool.name in self._tools:
                raise ConfigurationError(f"two tools are named {tool.name!r}; names must be unique")
            self._tools[tool.name] = tool
        self._schemas = {name: convert_to_openai_tool(t) for name, t in self._tools.items()}

    @property
    def names(self) -> tuple[str, ...]:
        """Every tool's name, in the order given."""
        return tuple(self._tools)

    def get(self, name: str) -> BaseTool | None:
        """The tool called `name`, or None."""
        return self._tools.get(name)

    def schemas(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """OpenAI `tools` entries for `names`, in the order given."""
        return [self._schemas[n] for n in names]

    def __len__(self) -> int:
        return len(self._tools)
