"""Retention: finished threads older than an age go (with their audit if asked), space comes back."""

from __future__ import annotations

import random
import string
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphloop.graph import ModelConfig, Orchestrator, UnknownThreadError
from graphloop.graph.cli import app
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import TOOLS


@pytest.fixture
def db(any_db: Path | str) -> Path | str:
    return any_db


def big(key: str) -> str:
    """A tool with a large result (random text: the savers compress what they store)."""
    return "".join(random.Random(key).choices(string.ascii_letters + string.digits, k=200_000))


def test_prune_deletes_old_finished_threads_and_keeps_paused_and_recent_ones(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    orch = Orchestrator([*TOOLS, big], confirm_required=["delete_file"], db=db, models=[model])
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    old = orch.run_sync("old and finished").thread_id
    server.add(reply(None, tool_call("delete_file", path="/x")), reply("Delete /x?"))
    paused = orch.run_sync("old and paused").thread_id
    time.sleep(1.2)
    server.add(reply("recent"))
    recent = orch.run_sync("recent and finished").thread_id

    report = orch.prune_sync(timedelta(seconds=1))
    assert report.deleted == [old] and report.kept == 2
    approvals = orch.approvals
    assert [e["thread_id"] for e in approvals.pending()] == [paused]
    assert [c["tool"] for c in approvals.tool_calls()] == ["add"]  # the audit outlives the thread
    with pytest.raises(UnknownThreadError, match="no thread"):
        orch.resume_sync(old)
    server.add(reply("Deleted /x."))
    assert orch.resume_sync(paused, confirmed=True).response == "Deleted /x."
    server.add(reply("more"))  # the recent thread is still there to continue
    assert orch.run_sync("again", thread_id=recent).response == "more"


def test_prune_with_audit_removes_the_audit_rows_too(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    orch = Orchestrator(TOOLS, db=db, models=[model])
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    orch.run_sync("finished")
    assert len(orch.approvals.model_calls()) == 2
    assert orch.prune_sync(timedelta(0), audit=True).kept == 0
    assert orch.approvals.tool_calls() == [] and orch.approvals.model_calls() == []


def test_prune_gives_the_space_back_to_the_sqlite_file(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    orch = Orchestrator([big], db=sqlite_db, models=[model])
    for i in range(4):
        server.add(reply(None, tool_call("big", key=str(i))), reply("done"))
        orch.run_sync(f"task {i}")
    def size() -> int:  # the database and its write-ahead log
        return sum(p.stat().st_size for p in sqlite_db.parent.iterdir() if p.name.startswith(sqlite_db.name))

    before = size()
    orch.prune_sync(timedelta(0))
    after = size()
    assert before > 500_000 and after < before / 5, (before, after)  # 4 results of 200,000 random characters


def test_graphloop_prune_command(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model])
    server.add(reply("done"))
    orch.run_sync("finished")
    result = CliRunner().invoke(app, ["prune", "--older-than", "0s", "--db", str(sqlite_db)])
    assert result.exit_code == 0, result.output
    assert "deleted 1 finished thread(s); 0 kept" in result.output
    bad = CliRunner().invoke(app, ["prune", "--older-than", "a week", "--db", str(sqlite_db)])
    assert bad.exit_code == 1
    assert "age 'a week': give a number and a unit, like 30d, 12h, 45m or 10s" in bad.output
