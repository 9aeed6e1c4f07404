"""Threads graphloop's savers begin count their channel versions (1, 2, 3, …) instead of
LangGraph's 52-character strings, so a checkpoint is a third to half smaller; threads begun with the
stock strings keep them and go on."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from graphloop.graph import ModelConfig, Orchestrator, memory_saver, open_saver
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

from conftest import TOOLS

CONFIG: Any = {"configurable": {"thread_id": "t"}}
FIXTURE = Path(__file__).parent / "fixtures" / "paused-0.2.0.db"  # the last release with the stock versions


def rounds(count: int) -> Any:
    def answer(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return reply("done") if done >= count else reply(None, tool_call("add", a=done, b=1))
    return answer


def versions(db: Path, thread_id: str = "t") -> list[object]:
    with open_saver(db) as saver:
        saved = saver.get_tuple({"configurable": {"thread_id": thread_id}})
    assert saved is not None
    checkpoint = saved.checkpoint
    return [*checkpoint["channel_versions"].values(),
            *(v for seen in checkpoint["versions_seen"].values() for v in seen.values())]


def test_a_new_thread_counts_its_versions_and_its_checkpoints_are_a_third_smaller(
        sqlite_db: Path, tmp_path: Path) -> None:
    with ScriptedServer([rounds(10)] * 12) as server:
        Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()], max_rounds=20).run_sync("sum", thread_id="t")
    assert {type(v) for v in versions(sqlite_db)} == {int}
    stock = tmp_path / "stock.db"  # the same run through LangGraph's own saver
    with ScriptedServer([rounds(10)] * 12) as server, sqlite3.connect(stock, check_same_thread=False) as conn:
        import warnings

        from langchain_core.messages import HumanMessage

        from graphloop.graph import LoopContext, compile_graph

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LedgerWarning: a stock saver carries no ledger
            graph = compile_graph(SqliteSaver(conn))
        graph.invoke({"messages": [HumanMessage("sum")], "policy": {"max_rounds": 20}}, CONFIG,
                     context=LoopContext.create(models=[server.model_config()], tools=TOOLS))

    def per_checkpoint(db: Path) -> float:
        with sqlite3.connect(db) as conn:
            count, size = conn.execute("SELECT count(*), sum(length(checkpoint)) FROM checkpoints").fetchone()
        return size / count

    assert per_checkpoint(sqlite_db) < 0.67 * per_checkpoint(stock)  # 0.62 at 10 rounds, 0.54 at 200


def test_a_thread_begun_with_the_stock_versions_keeps_them(model: ModelConfig, server: ScriptedServer,
                                                          tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    assert {type(v) for v in versions(db, "approve")} == {str}
    server.add(reply("Deleted."))
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    assert orch.resume_sync("approve", confirmed=True).response == "Deleted."
    assert {type(v) for v in versions(db, "approve")} == {str}


def test_the_memory_saver_counts_too(server: ScriptedServer, model: ModelConfig) -> None:
    saver = memory_saver()
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    assert Orchestrator(TOOLS, db=saver, models=[model]).run_sync("1+2", thread_id="t").response == "3"
    saved = saver.get_tuple(CONFIG)
    assert saved is not None and {type(v) for v in saved.checkpoint["channel_versions"].values()} == {int}


def test_a_stock_saver_is_refused_a_counted_thread_before_anything_runs(sqlite_db: Path) -> None:
    import warnings

    from langchain_core.messages import HumanMessage

    from graphloop.graph import ConfigurationError, LoopContext, compile_graph

    with ScriptedServer([rounds(1)] * 3, strict=True) as server:
        Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()]).run_sync("sum", thread_id="t")
        sent = len(server.requests)
        with sqlite3.connect(sqlite_db, check_same_thread=False) as conn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LedgerWarning: a stock saver carries no ledger
                graph = compile_graph(SqliteSaver(conn))
            context = LoopContext.create(models=[server.model_config()], tools=TOOLS)
            with pytest.raises(ConfigurationError, match="open the database with graphloop's open_saver"):
                graph.invoke({"messages": [HumanMessage("again")]}, CONFIG, context=context)
            assert graph.get_state(CONFIG).values["messages"][-1].content == "done"  # reading is fine
        assert len(server.requests) == sent
