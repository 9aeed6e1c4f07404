"""Tools by name: LangChain tools, toolkits and plain functions, with their OpenAI schemas.

MCP servers' tools come in as LangChain tools through `langchain-mcp-adapters`
(`await MultiServerMCPClient({...}).get_tools()`).

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

from langchain_core.tools import BaseTool, BaseToolkit, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from graphloop.checkpointers.errors import ConfigurationError

__all__ = ["ToolBox", "ToolLike"]

ToolLike = BaseTool | BaseToolkit | Callable[..., Any]
"""A LangChain tool (`@tool`, `BaseTool`), a toolkit (all its tools), or a plain sync or
async function with a docstring."""


def _expand(tools: Iterable[ToolLike]) -> Iterable[BaseTool | Callable[..., Any]]:
    for tool in tools:
        if isinstance(tool, BaseToolkit):
            yield from tool.get_tools()
        else:
            yield tool


def _as_tool(tool: BaseTool | Callable[..., Any]) -> BaseTool:
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
        for tool in map(_as_tool, _expand(tools)):
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
