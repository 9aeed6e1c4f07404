"""Shared fixtures: a scripted OpenAI-compatible server, tools, SQLite paths."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphloop.graph import LoopContext, ModelConfig
from graphloop.graph.testing import ScriptedServer

SECRET = "sk-test-SECRET-0123456789"

CALLS: list[tuple[str, dict[str, object]]] = []
"""Every real tool execution in a test, in order (cleared per test)."""


def add(a: int, b: int) -> int:
    """Add two integers."""
    CALLS.append(("add", {"a": a, "b": b}))
    return a + b


def get_weather(city: str) -> str:
    """Current weather for a city."""
    CALLS.append(("get_weather", {"city": city}))
    return f"{city}: sunny"


def delete_file(path: str) -> str:
    """Delete a file."""
    CALLS.append(("delete_file", {"path": path}))
    return f"deleted {path}"


def fail(reason: str) -> str:
    """Always raises."""
    CALLS.append(("fail", {"reason": reason}))
    raise RuntimeError(f"boom: {reason}")


async def slow_lookup(key: str) -> dict[str, str]:
    """An async tool that returns a dict."""
    await asyncio.sleep(0)
    CALLS.append(("slow_lookup", {"key": key}))
    return {"key": key, "value": key.upper()}


TOOLS = [add, get_weather, delete_file, fail, slow_lookup]


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A started scripted server; the test fails if a scripted reply is left unused."""
    with ScriptedServer() as srv:
        yield srv
        srv.assert_all_used()


@pytest.fixture
def model(server: ScriptedServer) -> ModelConfig:
    return server.model_config(label="primary", api_key=SECRET)


@pytest.fixture
def context(model: ModelConfig) -> LoopContext:
    return LoopContext.create(models=[model], tools=TOOLS, confirm_required=["delete_file"])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "graphloop.db"
