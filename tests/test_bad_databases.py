"""Databases graphloop cannot use (not SQLite, a folder, a missing folder, read-only) and tools
that fail on import: one line naming the file and what to do, and nothing overwritten.

The CLI cases run the real `graphloop` command in a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Generator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from graphloop.graph import (
    Orchestrator,
    UnusableDatabaseError,
    open_async_saver,
    open_ledger,
    open_saver,
    serve,
)
from graphloop.graph.testing import ScriptedServer, reply

from conftest import SECRET
from test_cli import invoke

HERE = Path(__file__).parent
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
NOT_SQLITE = "is not a SQLite database, so graphloop left it as it was"


def graphloop(*args: str, server: ScriptedServer | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `graphloop` command, with the scripted server's URL and a key."""
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "250", "NO_COLOR": "1", "OPENAI_API_KEY": SECRET,
           "OPENAI_BASE_URL": server.url if server else "http://127.0.0.1:9/v1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)}
    cli = Path(sys.executable).parent / "graphloop"
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def graphloop_here(*args: str, server: ScriptedServer) -> subprocess.CompletedProcess[str]:
    """The same command run in this process by typer's runner (the same code, without the two
    seconds a new interpreter takes to import it): for the matrix of cases."""
    result = invoke(*args, server=server)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.output, "")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed, asserted to be one line with no traceback."""
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    return out.strip()


def beside(path: Path) -> list[str]:
    """The files next to `path` that share its name (SQLite's -wal, -shm, -journal; locks)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)


@pytest.fixture(params=["text", "png"])
def not_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / ("notes.txt" if request.param == "text" else "picture.png")
    path.write_bytes(b"just text, not a database\n" * 100 if request.param == "text" else PNG)
    return path


@pytest.mark.parametrize("command", [["run", "hi", "--model", "m"], ["pending"], ["history", "t1"],
                                     ["prune", "--older-than", "1s"], ["approve", "t1", "--model", "m"],
                                     ["demo"]])
def test_a_file_that_is_not_sqlite_is_named_in_one_line_and_left_unchanged(
    not_sqlite: Path, command: list[str], server: ScriptedServer
) -> None:
    before = not_sqlite.read_bytes()
    run = graphloop if command[0] == "run" else graphloop_here  # one case through the real command
    error = one_line_error(run(*command, "--db", str(not_sqlite), server=server))
    assert error.endswith(f"UnusableDatabaseError: db {str(not_sqlite)!r} {NOT_SQLITE}; give the path of a "
                          "graphloop database, or of a new file")
    assert not_sqlite.read_bytes() == before and beside(not_sqlite) == []
    assert server.requests == []


def test_a_missing_folder_is_an_error_and_is_not_created(server: ScriptedServer, tmp_path: Path) -> None:
    db = tmp_path / "dta" / "graphloop.db"  # a typo for data/
    error = one_line_error(graphloop("run", "hi", "--model", "m", "--db", str(db), server=server))
    assert f"db {str(db)!r} is in a folder that does not exist ({str(db.parent)!r})" in error
    assert "check the path for a typo, create the folder" in error
    assert not db.parent.exists() and server.requests == []


def test_a_new_file_in_an_existing_folder_is_created(server: ScriptedServer, tmp_path: Path) -> None:
    server.add(reply("Hello."))
    result = graphloop("run", "hi", "--model", "m", "--db", str(tmp_path / "fresh.db"), server=server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "fresh.db").read_bytes()[:16] == b"SQLite format 3\x00"


def test_a_folder_as_the_database_is_named_with_a_file_to_use_instead(server: ScriptedServer, tmp_path: Path) -> None:
    error = one_line_error(graphloop("run", "hi", "--model", "m", "--db", str(tmp_path), server=server))
    assert error.endswith(f"db {str(tmp_path)!r} is a folder, not a SQLite file; give a file in it, such as "
                          f"{str(tmp_path / 'graphloop.db')!r}")
    assert list(tmp_path.iterdir()) == [] and server.requests == []


@contextmanager
def read_only(path: Path) -> Generator[None]:
    """`path` (a file or folder) read-only for this process: chmod, or as root (who ignores
    permissions) the immutable attribute."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is not available: no way to make a file read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_is_named_before_the_run_starts(server: ScriptedServer, tmp_path: Path) -> None:
    db = tmp_path / "graphloop.db"
    server.add(reply("First."))
    assert graphloop_here("run", "first", "--model", "m", "--db", str(db), server=server).returncode == 0
    with read_only(db):
        error = one_line_error(graphloop("run", "second", "--model", "m", "--db", str(db), server=server))
    assert error.endswith(f"UnusableDatabaseError: db {str(db)!r} is read-only: this user may not write the "
                          "file; let it write the file and its folder (SQLite keeps its -wal and -shm "
                          "files beside it), or give another db")
    assert len(server.requests) == 1  # the second run asked the model nothing


def test_a_new_database_in_a_read_only_folder_is_named(server: ScriptedServer, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder):
        error = one_line_error(graphloop("run", "hi", "--model", "m", "--db", str(folder / "x.db"), server=server))
    assert f"db {str(folder / 'x.db')!r} " in error and "let this user write its folder, or give another db" in error
    assert list(folder.iterdir()) == [] and server.requests == []


def test_a_tools_module_that_fails_on_import_is_one_line_naming_its_file(tmp_path: Path) -> None:
    (tmp_path / "broken_tools_14.py").write_text('raise RuntimeError("the API_TOKEN setting is missing")\n')
    error = one_line_error(graphloop("run", "hi", "--model", "m", "--tools", "broken_tools_14:TOOLS",
                                     "--db", str(tmp_path / "t.db"), cwd=tmp_path))
    assert error == (f"error: ConfigurationError: cannot load tools 'broken_tools_14:TOOLS': importing "
                     f"{tmp_path / 'broken_tools_14.py'} raised RuntimeError: the API_TOKEN setting is "
                     "missing; fix that module (--debug shows where), or leave it out of the tools")
    debug = graphloop("--debug", "run", "hi", "--model", "m", "--tools", "broken_tools_14:TOOLS", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "broken_tools_14.py:1" in debug.stderr


def test_prune_with_a_mistyped_db_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "graphlop.db"
    error = one_line_error(graphloop("prune", "--older-than", "30d", "--db", str(db)))
    assert error == f"error: ConfigurationError: no database at {str(db)!r}; give --db or --config, or run a task first"
    assert list(tmp_path.iterdir()) == []


def test_prune_and_rebuild_inbox_on_a_new_database_find_nothing_to_do(tmp_path: Path) -> None:
    orch = Orchestrator(db=tmp_path / "new.db")
    report = orch.prune_sync(timedelta(days=1))
    assert (report.deleted, report.kept) == ([], 0)
    assert Orchestrator(db=tmp_path / "other.db").rebuild_inbox_sync() == 0


def test_the_python_api_refuses_a_file_that_is_not_sqlite_and_leaves_it_unchanged(
    not_sqlite: Path, server: ScriptedServer
) -> None:
    before = not_sqlite.read_bytes()

    async def open_async() -> None:
        async with open_async_saver(not_sqlite):
            pass

    for attempt in (lambda: open_saver(not_sqlite).__enter__(), lambda: open_ledger(not_sqlite).__enter__(),
                    lambda: asyncio.run(open_async()), lambda: Orchestrator(db=not_sqlite, models=[server.model_config()]).run_sync("hi")):
        with pytest.raises(UnusableDatabaseError, match=NOT_SQLITE) as raised:
            attempt()
        assert raised.value.path == str(not_sqlite)
    assert not_sqlite.read_bytes() == before and beside(not_sqlite) == [] and server.requests == []


def test_the_served_graph_names_a_db_in_a_missing_folder(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "missing" / "graphloop.db"
    (tmp_path / "graphloop.toml").write_text(
        f'db = "{db}"\n[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\n')
    monkeypatch.setenv("GRAPHLOOP_CONFIG", str(tmp_path / "graphloop.toml"))
    serve.server_context.cache_clear()
    try:
        with pytest.raises(UnusableDatabaseError, match="is in a folder that does not exist"):
            serve.graph.invoke({"messages": [{"role": "user", "content": "hi"}]})
    finally:
        serve.server_context.cache_clear()
    assert not db.parent.exists() and server.requests == []
