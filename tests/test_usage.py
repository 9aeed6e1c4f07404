"""Every model call's tokens and latency in the ledger; a run's sum on its result; the CLI."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graphloop.graph import LoopContext, ModelConfig, Orchestrator, compile_graph, memory_saver, open_ledger
from graphloop.graph.cli import app
from graphloop.graph.testing import ScriptedServer, error, reply, tool_call

from conftest import TOOLS
from test_loop import start


def rows(db: Path | str, thread_id: str) -> list[dict[str, Any]]:
    with open_ledger(db) as ledger:
        return [dict(r) for r in ledger.model_calls(thread_id)]


def reported(server: ScriptedServer) -> list[tuple[int, int]]:
    return [(u["prompt_tokens"], u["completion_tokens"]) for u in server.usages]


def test_each_call_is_recorded_with_the_servers_figures_and_the_run_sums_them(
    server: ScriptedServer, model: ModelConfig, any_db: Path | str
) -> None:
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    result = Orchestrator(TOOLS, db=any_db, models=[model]).run_sync("add 1 and 2", user_id="ann")
    calls = rows(any_db, result.thread_id)
    assert [(c["input_tokens"], c["output_tokens"]) for c in calls] == reported(server)
    assert [(c["model"], c["purpose"], c["outcome"], c["counted"], c["round"], c["user_id"]) for c in calls] == [
        ("primary", "turn", "answered", False, 1, "ann"), ("primary", "turn", "answered", False, 2, "ann")]
    assert all(c["latency_ms"] > 0 and c["run_id"] for c in calls)
    usage = result.usage
    assert usage is not None and usage.model_calls == 2 and usage.counted_calls == 0
    assert usage.input_tokens == sum(i for i, _ in reported(server))
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens == sum(map(sum, reported(server)))
    assert usage.by_model["primary"]["total_tokens"] == usage.total_tokens


def test_a_streamed_reply_asks_for_its_usage_and_records_it(streaming_server: ScriptedServer, sqlite_db: Path) -> None:
    model = streaming_server.model_config(label="primary")
    streaming_server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model])

    async def streamed() -> list[Any]:
        return [event async for event in orch.stream("add 1 and 2")]

    result = asyncio.run(streamed())[-1].result
    assert all(r.body.get("stream_options") == {"include_usage": True} for r in streaming_server.requests)
    assert [(c["input_tokens"], c["output_tokens"], c["counted"]) for c in rows(sqlite_db, result.thread_id)] == [
        (i, o, False) for i, o in reported(streaming_server)]


def test_a_server_without_usage_gets_counted_figures_marked_as_counted(context: LoopContext) -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1, b=2)), reply("3")], reports_usage=False) as bare:
        context = LoopContext.create(models=[bare.model_config(label="bare")], tools=TOOLS)
        graph = compile_graph(memory_saver())
        config: Any = {"configurable": {"thread_id": "t"}}
        out = graph.invoke(start("add"), config, context=context)
    replies = [m for m in out["messages"] if m.type == "ai"]
    assert [m.response_metadata["usage"] for m in replies] == ["counted", "counted"]
    first = replies[0].usage_metadata
    assert first is not None and first["input_tokens"] > 50 and first["output_tokens"] > 5
    assert first["total_tokens"] == first["input_tokens"] + first["output_tokens"]


def test_a_resumed_run_adds_to_the_threads_totals(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=sqlite_db, models=[model])
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    paused = orch.run_sync("delete /tmp/x")
    server.add(reply("Deleted."))
    done = orch.resume_sync(paused.thread_id, confirmed=True)
    assert paused.usage is not None and done.usage is not None
    assert (paused.usage.model_calls, done.usage.model_calls) == (2, 1)
    assert [c["purpose"] for c in rows(sqlite_db, paused.thread_id)] == ["turn", "question", "turn"]
    [thread] = orch.approvals.usage(thread_id=paused.thread_id)
    assert thread["model_calls"] == 3 and thread["total_tokens"] == paused.usage.total_tokens + done.usage.total_tokens
    assert thread["total_tokens"] == sum(map(sum, reported(server)))


def test_retries_and_fallbacks_are_recorded_with_how_they_ended(server: ScriptedServer, sqlite_db: Path) -> None:
    with ScriptedServer(model="backup-model", strict=True) as backup:
        primary = server.model_config(label="primary", max_retries=1, retry_base_delay=0.0)
        second = backup.model_config(label="backup", max_retries=0)
        server.add(error(500), error(502))
        backup.add(reply("from the backup"))
        result = Orchestrator(TOOLS, db=sqlite_db, models=[primary, second]).run_sync("hi")
    calls = rows(sqlite_db, result.thread_id)
    assert [(c["model"], c["outcome"], c["input_tokens"]) for c in calls] == [
        ("primary", "retried", None), ("primary", "fallback", None), ("backup", "answered", reported(backup)[0][0])]
    assert result.usage is not None and result.usage.model_calls == 3
    assert set(result.usage.by_model) == {"primary", "backup"}


def test_the_final_answer_at_the_round_limit_counts_too(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("It is 3."))
    result = Orchestrator(TOOLS, db=sqlite_db, models=[model], max_rounds=1).run_sync("add")
    assert [c["purpose"] for c in rows(sqlite_db, result.thread_id)] == ["turn", "final"]
    assert result.response == "It is 3." and result.usage is not None and result.usage.model_calls == 2


def test_graphloop_usage_sums_by_user_and_model(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model])
    server.add(reply("one"), reply("two"), reply("three"))
    for user in ("ann", "bob", "ann"):
        orch.run_sync("hi", user_id=user)
    runner = CliRunner()
    by_user = runner.invoke(app, ["usage", "--by", "user", "--since", "1h", "--db", str(sqlite_db), "--json"])
    assert by_user.exit_code == 0, by_user.output
    found = {r["key"]: r["model_calls"] for r in json.loads(by_user.output)}
    assert found == {"ann": 2, "bob": 1}
    table = runner.invoke(app, ["usage", "--by", "model", "--db", str(sqlite_db)], env={"COLUMNS": "120"})
    assert table.exit_code == 0 and "primary" in table.output and f"{sum(map(sum, reported(server))):,}" in table.output
    wrong = runner.invoke(app, ["usage", "--by", "day", "--db", str(sqlite_db)])
    assert wrong.exit_code == 1 and "--by 'day' is not one of user, model, thread" in wrong.output


@pytest.mark.parametrize("since", ["7x", "-3d"])
def test_a_wrong_since_is_one_line(since: str, sqlite_db: Path) -> None:
    Orchestrator(TOOLS, db=sqlite_db)  # the database exists
    with open_ledger(sqlite_db):
        pass
    out = CliRunner().invoke(app, ["usage", "--since", since, "--db", str(sqlite_db)])
    assert out.exit_code != 0 and "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1


def test_history_shows_each_model_call(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    result = Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync("add")
    out = CliRunner().invoke(app, ["history", result.thread_id, "--db", str(sqlite_db)], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "model calls" in out.output and out.output.count("answered") == 2
    assert f"{reported(server)[1][0]:,}" in out.output


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": -40000, "completion_tokens": -80, "total_tokens": -40080},
    {"prompt_tokens": 10**20, "completion_tokens": 5, "total_tokens": 10**20 + 5},
])
def test_figures_that_cannot_be_right_are_counted_instead(sqlite_db: Path, usage: dict[str, int]) -> None:
    from graphloop.graph.testing import junk

    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
    with ScriptedServer([junk(body)]) as odd:
        result = Orchestrator(TOOLS, db=sqlite_db, models=[odd.model_config(label="odd")]).run_sync("hi")
    [call] = rows(sqlite_db, result.thread_id)
    assert call["counted"] is True and 0 < call["input_tokens"] < 10_000 and 0 < call["output_tokens"] < 100


def test_usage_queries_refuse_what_they_cannot_read(sqlite_db: Path) -> None:
    from datetime import timedelta

    from graphloop.graph import Approvals, ConfigurationError

    with open_ledger(sqlite_db):
        pass
    approvals = Approvals(sqlite_db)
    for wrong, named in (({"by": "day"}, "by='day'"), ({"since": timedelta(days=-1)}, "since=datetime.timedelta"),
                         ({"since": "7d"}, "since='7d'"), ({"since": timedelta(days=10**6)}, "before the year 1")):
        with pytest.raises(ConfigurationError, match=re.escape(named)):
            approvals.usage(**wrong)
    out = CliRunner().invoke(app, ["usage", "--since", "99999999d", "--db", str(sqlite_db)])
    assert out.exit_code == 1 and "before the year 1" in out.output and "Traceback" not in out.output


def test_a_request_cut_short_by_a_cancelled_run_is_still_recorded(sqlite_db: Path) -> None:
    with ScriptedServer([reply("too late", delay=3.0)]) as slow:
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[slow.model_config(label="slow")])

        async def cancelled() -> None:
            task = asyncio.create_task(orch.run("hi", thread_id="cut"))
            while not slow.requests:
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled())
    [call] = rows(sqlite_db, "cut")
    assert (call["outcome"], call["input_tokens"], call["model"]) == ("failed", None, "slow")
