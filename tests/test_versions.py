"""graphloop's SQLite savers write short channel versions (8 hex digits) instead of LangGraph's
52-character strings, so a checkpoint is a third to half smaller; a thread begun with the stock
strings goes on in order, forks of a thread stay apart, and a stock saver is refused before it
writes a thread it cannot follow."""

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
FIXTURE = Path(__file__).parent / "fixtures" / "paused-0.2.0.db"  # the last release with stock versions


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


def short(version: object) -> bool:
    return isinstance(version, str) and len(version) == 8 and int(version, 16) > 0


def test_a_new_thread_has_short_versions_and_smaller_checkpoints(
        sqlite_db: Path, tmp_path: Path) -> None:
    with ScriptedServer([rounds(10)] * 12, strict=True) as server:
        Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()], max_rounds=20).run_sync("sum", thread_id="t")
    assert all(map(short, versions(sqlite_db)))
    stock = tmp_path / "stock.db"  # the same run through LangGraph's own saver
    with ScriptedServer([rounds(10)] * 12, strict=True) as server, sqlite3.connect(stock, check_same_thread=False) as conn:
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

    assert per_checkpoint(sqlite_db) < 0.75 * per_checkpoint(stock)  # 0.70 at 10 rounds, less as versions grow


def test_a_thread_begun_with_the_stock_versions_goes_on_in_order(model: ModelConfig, server: ScriptedServer,
                                                                tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    before = versions(db, "approve")
    assert all("." in str(v) for v in before)  # LangGraph's own form
    server.add(reply("Deleted."))
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    assert orch.resume_sync("approve", confirmed=True).response == "Deleted."
    after = versions(db, "approve")
    assert any(map(short, after)) and max(map(str, after)) > max(map(str, before))  # newer sorts later


@pytest.mark.parametrize("old", [True, False], ids=["stock versions", "short versions"])
def test_a_fork_from_any_checkpoint_leaves_the_original_branch_as_it_was(
        model: ModelConfig, server: ScriptedServer, tmp_path: Path, old: bool) -> None:
    import warnings

    from graphloop.graph import LoopContext, compile_graph

    db = tmp_path / "fork.db"
    if old:
        shutil.copy(FIXTURE, db)
    else:
        server.add(reply(None, tool_call("delete_file", path="/tmp/approve")), reply("May I?"))
        Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model]).run_sync("rm", thread_id="approve")
    config: Any = {"configurable": {"thread_id": "approve"}}
    with ScriptedServer([reply("forked")] * 40, strict=True) as forks, open_saver(db) as saver, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = LoopContext.create(models=[forks.model_config()], tools=TOOLS, confirm_required=["delete_file"])
        graph = compile_graph(saver)
        history = list(graph.get_state_history(config))
        kept = [(h.config["configurable"]["checkpoint_id"], h.values) for h in history]
        for point in history:  # each one forked in turn, the input checkpoint too
            graph.invoke(None, point.config, context=context)
        for checkpoint_id, values in kept:
            again = graph.get_state({"configurable": {"thread_id": "approve", "checkpoint_id": checkpoint_id}})
            assert again.values == values


def test_the_memory_saver_keeps_the_stock_versions(server: ScriptedServer, model: ModelConfig) -> None:
    """It keys values by version, so versions must stay unique across forks: the stock ones are."""
    saver = memory_saver()
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    assert Orchestrator(TOOLS, db=saver, models=[model]).run_sync("1+2", thread_id="t").response == "3"
    saved = saver.get_tuple(CONFIG)
    assert saved is not None and all("." in str(v) for v in saved.checkpoint["channel_versions"].values())


def test_a_stock_saver_is_refused_a_thread_with_short_versions_before_anything_runs(sqlite_db: Path) -> None:
    import warnings

    from langchain_core.messages import HumanMessage

    from graphloop.checkpointers import CompressedSerializer
    from graphloop.graph import ConfigurationError, LoopContext, compile_graph

    with ScriptedServer([rounds(1)] * 3, strict=True) as server:
        Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()]).run_sync("sum", thread_id="t")
        sent = len(server.requests)
        with sqlite3.connect(sqlite_db, check_same_thread=False) as conn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LedgerWarning: a stock saver carries no ledger
                graph = compile_graph(SqliteSaver(conn))
            context = LoopContext.create(models=[server.model_config()], tools=TOOLS)
            with pytest.raises(ConfigurationError, match=r"saved by graphloop's savers in their compressed form "
                               r"\(msgpack\+z1\), which this saver \(SqliteSaver\) cannot read; open the database"):
                graph.invoke({"messages": [HumanMessage("again")]}, CONFIG, context=context)
            graph = compile_graph(SqliteSaver(conn, serde=CompressedSerializer()))  # reads them, writes stock versions
            with pytest.raises(ConfigurationError, match="short channel versions, which this saver"):
                graph.invoke({"messages": [HumanMessage("again")]}, CONFIG, context=context)
            assert graph.get_state(CONFIG).values["messages"][-1].content == "done"  # reading is fine
        assert len(server.requests) == sent


def test_a_saver_that_numbers_versions_with_integers_is_not_refused(model: ModelConfig, server: ScriptedServer) -> None:
    """LangGraph's default numbering (integers) is not graphloop's short form: nothing to refuse."""
    import warnings

    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from graphloop.graph import LoopContext, compile_graph

    class Counting(InMemorySaver):
        def get_next_version(self, current: Any, channel: None) -> Any:
            return (current or 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LedgerWarning
        graph = compile_graph(Counting())
    context = LoopContext.create(models=[model], tools=TOOLS)
    server.add(reply("one"), reply("two"))
    for text in ("first", "second"):
        graph.invoke({"messages": [HumanMessage(text)]}, CONFIG, context=context)
    assert [m.content for m in graph.get_state(CONFIG).values["messages"]][-1] == "two"
