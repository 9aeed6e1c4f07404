"""Threads paused by earlier graphloop releases resume with this one.

`tests/fixtures/paused-<version>.db` files are written once per release by
`tests/fixtures/make_paused_threads.py` and kept forever; every one of them is opened here.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedServer, reply

from conftest import CALLS, TOOLS

THREADS: dict[Orchestrator, list[str]] = {}
"""The threads of each fixture: "approve", "edit", "reject" in all; "one-by-one" since 0.2.0."""
FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("paused-*.db"))


def test_there_is_a_fixture_for_this_release() -> None:
    from importlib.metadata import version

    assert Path(__file__).parent / "fixtures" / f"paused-{version('graphloop')}.db" in FIXTURES


@pytest.fixture(params=FIXTURES, ids=[p.stem for p in FIXTURES])
def orch(request: pytest.FixtureRequest, model: ModelConfig, tmp_path: Path) -> Orchestrator:
    db = tmp_path / "upgraded.db"
    shutil.copy(request.param, db)
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    with sqlite3.connect(db) as conn:
        THREADS[orch] = sorted(t for (t,) in conn.execute("SELECT DISTINCT thread_id FROM checkpoints"))
    return orch


def test_rebuilding_the_inbox_of_an_old_database_lists_its_paused_threads(orch: Orchestrator) -> None:
    before = {e["thread_id"]: e for e in orch.approvals.pending()}
    assert orch.rebuild_inbox_sync() == len(THREADS[orch])
    entries = {e["thread_id"]: e for e in orch.approvals.pending()}
    assert sorted(entries) == THREADS[orch]
    assert [(c["name"], c["args"]) for c in entries["edit"]["calls"]] == [("delete_file", {"path": "/tmp/edit"})]
    assert entries["edit"]["question"] == "May I delete /tmp/edit?"
    for thread_id, entry in before.items():  # rows the old release wrote are kept as they were
        assert entries[thread_id] == entry


def test_an_old_paused_thread_is_approved(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("Deleted."))
    done = orch.resume_sync("approve", confirmed=True, decided_by="ann")
    assert done.response == "Deleted."
    assert CALLS == [("delete_file", {"path": "/tmp/approve"})]
    assert server.requests[0].messages[-1]["content"] == "deleted /tmp/approve"


def test_an_old_paused_thread_is_edited(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("Deleted the other one."))
    edit = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/tmp/other"}}}
    done = orch.resume_sync("edit", decisions=[edit])  # type: ignore[list-item]
    assert CALLS == [("delete_file", {"path": "/tmp/other"})]
    assert done.tool_calls[-1]["result"] == "deleted /tmp/other"


def test_an_old_paused_thread_is_rejected(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("Kept it."))
    done = orch.resume_sync("reject", confirmed=False)
    assert CALLS == []
    assert done.tool_calls[-1]["result"] == "Action denied by user."
    assert [m["role"] for m in server.requests[0].messages][:2] == ["system", "user"]


def test_an_old_one_call_per_pause_thread_asks_about_its_second_call(
    server: ScriptedServer, orch: Orchestrator
) -> None:
    if "one-by-one" not in THREADS[orch]:
        pytest.skip("this fixture predates one-call-per-pause (0.2.0)")
    second = orch.resume_sync("one-by-one", confirmed=True)
    assert second.checkpoint is not None
    assert second.checkpoint.request["action_requests"][0]["args"] == {"path": "/b"}
    server.add(reply("Deleted /a only."))
    assert orch.resume_sync(second.checkpoint, confirmed=False).response == "Deleted /a only."
    assert CALLS == [("delete_file", {"path": "/a"})]
