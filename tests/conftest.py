"""Shared fixtures: a scripted OpenAI-compatible server, tools, SQLite paths."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True)
"""CI explores the same examples on every run (`HYPOTHESIS_PROFILE=ci`, set by `.ci/run`), so
a landing never depends on luck; runs elsewhere draw new examples each time."""
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from graphloop.checkpointers import COMPRESSED, expanded
from graphloop.graph import LoopContext, ModelConfig
from graphloop.graph.testing import ScriptedServer
from graphloop.nodes.wire import forget

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


def send_email(to: list[str], subject: str, copies: int = 1) -> str:
    """Send an email to a list of people, in a number of copies (not in TOOLS: tests count those)."""
    CALLS.append(("send_email", {"to": to, "subject": subject, "copies": copies}))
    return f"sent {subject!r} to {to!r} x{copies}"


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()
    forget()  # what servers refused is kept per process, keyed by URL: a new server may reuse a port


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A started scripted server in strict mode (it answers and refuses as real servers do,
    see `graphloop.graph.strict`); the test fails if a scripted reply is left unused."""
    with ScriptedServer(strict=True) as srv:
        yield srv
        srv.assert_all_used()


@pytest.fixture
def streaming_server() -> Iterator[ScriptedServer]:
    """Strict, but streaming replies to requests with tools as OpenAI does (llama-cpp-python's
    empty stream would leave nothing to see): for tests of streamed tokens."""
    with ScriptedServer(strict=True, streams_tools=True) as srv:
        yield srv
        srv.assert_all_used()


@pytest.fixture
def model(server: ScriptedServer) -> ModelConfig:
    return server.model_config(label="primary", api_key=SECRET)


@pytest.fixture
def context(model: ModelConfig) -> LoopContext:
    return LoopContext.create(models=[model], tools=TOOLS, confirm_required=["delete_file"])


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    return tmp_path / "graphloop.db"


@pytest.fixture
def db(sqlite_db: Path) -> Path:
    return sqlite_db


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the whole test run, started from the machine's installation."""
    from postgres_server import start_postgres

    url, stop = start_postgres()
    try:
        yield url
    finally:
        stop()


_databases = itertools.count()


@pytest.fixture
def postgres_db(postgres_server: str) -> str:
    """A fresh, empty database on the test server."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # pyright: ignore[reportArgumentType]
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, sqlite_db: Path) -> Path | str:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_db
    return request.getfixturevalue("postgres_db")


def _expanded_rows(db: Path) -> bytes:
    """The rows graphloop's savers compressed, expanded: a secret must not hide in them."""
    if not db.exists():
        return b""
    with closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = [*(conn.execute("SELECT checkpoint FROM checkpoints WHERE type = ?", (COMPRESSED,))
                  if "checkpoints" in tables else []),
                *(conn.execute("SELECT value FROM writes WHERE type = ?", (COMPRESSED,)) if "writes" in tables else [])]
    return b"".join(expanded(row[0]) for row in rows)


def stored_bytes(db: Path | str) -> bytes:
    """Every byte a test database holds: the SQLite files, or every PostgreSQL table's rows."""
    if isinstance(db, Path):
        files = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
        return files + _expanded_rows(db)
    import psycopg

    chunks: list[bytes] = []
    with psycopg.connect(db) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:  # pyright: ignore[reportArgumentType]
                chunks += [bytes(block) for block in copy]
    return b"".join(chunks)
