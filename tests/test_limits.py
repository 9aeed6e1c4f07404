"""What a run may spend: a request that would pass a limit is not sent, and the run ends with
a final answer if it fits, else the summary; the result names the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graphloop.graph import ConfigurationError, ModelConfig, Orchestrator, open_ledger
from graphloop.graph.cli import app
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import TOOLS


def adds(n: int) -> list[Any]:
    return [reply(None, tool_call("add", a=i, b=1)) for i in range(n)]


def test_a_call_limit_keeps_the_last_call_for_the_final_answer(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    server.add(*adds(2), reply("Sums: 1 and 2."))  # the third request is the final answer
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model], limits={"model_calls": 3})
    result = orch.run_sync("add a lot")
    assert (result.response, result.stopped_by) == ("Sums: 1 and 2.", "model_calls")
    assert len(server.requests) == 3 and server.requests[-1].body["tool_choice"] == "none"
    assert result.usage is not None and result.usage.model_calls == 3
    with open_ledger(sqlite_db) as ledger:
        assert [c["purpose"] for c in ledger.model_calls(result.thread_id)] == ["turn", "turn", "final"]


def test_without_a_final_answer_the_call_limit_gives_the_summary(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    server.add(*adds(2))
    result = Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync(
        "add a lot", respond_with_final=False, limits={"model_calls": 2})
    assert result.stopped_by == "model_calls" and len(server.requests) == 2
    assert result.response.startswith("Reached the run's limit of 2 model calls. Here is what was gathered:")
    assert result.backend == "graphloop"


def test_a_token_limit_stops_before_the_request_that_would_pass_it(sqlite_db: Path) -> None:
    """graphloop counts each request before sending it; a server without usage makes the
    recorded figures graphloop's own count too, so the limit can be set between two requests."""
    with ScriptedServer([*adds(1), reply("done"), *adds(1)], reports_usage=False) as bare:
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[bare.model_config(label="bare")])
        free = orch.run_sync("add", respond_with_final=False)
        first, second = [c["input_tokens"] or 0 for c in orch.approvals.model_calls(free.thread_id)]
        limit = first + second - 1  # room for the first request, not for the second after it
        limited = orch.run_sync("add", respond_with_final=False, limits={"input_tokens": limit})
        bare.assert_all_used()
    assert limited.stopped_by == "input_tokens" and len(bare.requests) == 3
    assert limited.response.startswith(f"Reached the run's limit of {limit:,} input tokens.")
    [sent] = orch.approvals.model_calls(limited.thread_id)
    assert sent["input_tokens"] == first and sent["counted"] is True


def test_a_request_larger_than_the_whole_limit_is_never_sent(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    result = Orchestrator(TOOLS, db=sqlite_db, models=[model], limits={"total_tokens": 10}).run_sync("hi")
    assert result.stopped_by == "total_tokens" and server.requests == []
    assert result.response.startswith("Reached the run's limit of 10 tokens.")
    assert result.usage is not None and result.usage.model_calls == 0


def test_the_round_limit_is_named_too(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    server.add(*adds(1), reply("It is 1."))
    result = Orchestrator(TOOLS, db=sqlite_db, models=[model], max_rounds=1).run_sync("add")
    assert (result.response, result.stopped_by) == ("It is 1.", "rounds")
    server.add(reply("hello"))
    assert Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync("hi").stopped_by is None


def test_limits_hold_across_a_pause_and_a_resume_in_another_orchestrator(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    limited = Orchestrator(TOOLS, confirm_required=["delete_file"], db=sqlite_db, models=[model],
                           limits={"model_calls": 3})
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    paused = limited.run_sync("delete /tmp/x")
    # another process, without limits of its own: the thread's limits came with it
    server.add(reply("Deleted /tmp/x."))
    done = Orchestrator(TOOLS, confirm_required=["delete_file"], db=sqlite_db, models=[model]).resume_sync(
        paused.thread_id, confirmed=True)
    assert (done.response, done.stopped_by) == ("Deleted /tmp/x.", "model_calls")
    assert server.requests[-1].body["tool_choice"] == "none"  # the third call was the final answer


@pytest.mark.parametrize(("limits", "named"), [
    ({"model_calls": 0}, "limits['model_calls']=0"),
    ({"model_calls": 10**20}, "limits['model_calls']=100000000000000000000"),
    ({"tokens": 5}, "limits['tokens']"),
    ({"total_tokens": "10"}, "limits['total_tokens']='10'"),
    ({"output_tokens": True}, "limits['output_tokens']=True"),
])
def test_wrong_limits_are_refused_with_what_is_wrong(model: ModelConfig, sqlite_db: Path, limits: Any,
                                                     named: str) -> None:
    with pytest.raises(ConfigurationError, match=r"limits have wrong values: " + named.replace("[", r"\[")):
        Orchestrator(TOOLS, db=sqlite_db, models=[model], limits=limits)
    with pytest.raises(ConfigurationError, match=named.replace("[", r"\[")):
        Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync("hi", limits=limits)


def test_graphloop_toml_limits_reach_the_cli(server: ScriptedServer, tmp_path: Path) -> None:
    config = tmp_path / "graphloop.toml"
    config.write_text(f'db = "{tmp_path / "g.db"}"\ntools = ["conftest:TOOLS"]\n\n[limits]\nmodel_calls = 1\n\n'
                      f'[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\n')
    server.add(reply("An answer without tools."))
    out = CliRunner().invoke(app, ["run", "add 1 and 2", "--config", str(config), "--no-input"])
    assert out.exit_code == 0, out.output
    assert server.requests[0].body["tool_choice"] == "none"  # the one call left is the final answer
    config.write_text(config.read_text().replace("model_calls = 1", "model_calls = -1"))
    wrong = CliRunner().invoke(app, ["run", "hi", "--config", str(config), "--no-input"])
    assert wrong.exit_code == 1 and "[limits] has wrong values: limits['model_calls']=-1" in wrong.output


def test_a_compiled_graph_takes_its_limits_from_the_context(server: ScriptedServer, model: ModelConfig) -> None:
    from graphloop.graph import LoopContext, compile_graph, memory_saver

    context = LoopContext.create(models=[model], tools=TOOLS, limits={"model_calls": 2})
    server.add(*adds(1), reply("One sum so far."))
    out = compile_graph(memory_saver()).invoke({"messages": [("user", "add a lot")]},
                                               {"configurable": {"thread_id": "t"}}, context=context)
    assert (out["stopped_by"], out["messages"][-1].content) == ("model_calls", "One sum so far.")
    assert out["policy"]["limits"] == {"model_calls": 2} and out["spent"]["model_calls"] == 2
    # a new message is a new task: its own two calls
    server.add(*adds(1), reply("Another sum."))
    again = compile_graph(memory_saver()).invoke({"messages": [*out["messages"], ("user", "more")]},
                                                 {"configurable": {"thread_id": "t2"}}, context=context)
    assert (again["stopped_by"], again["messages"][-1].content, again["spent"]["model_calls"]) == (
        "model_calls", "Another sum.", 2)
    with pytest.raises(ConfigurationError, match=r"limits\['total_tokens'\]=0"):
        LoopContext.create(models=[model], tools=TOOLS, limits={"total_tokens": 0})


def test_retries_and_fallbacks_are_checked_against_the_limit_too(sqlite_db: Path) -> None:
    from graphloop.graph.testing import error

    with ScriptedServer([error(500), error(500), error(500), reply("late")]) as first, \
            ScriptedServer([reply("from the backup")]) as second:
        models = [first.model_config(label="primary", max_retries=3, retry_base_delay=0.0),
                  second.model_config(label="backup")]
        result = Orchestrator(TOOLS, db=sqlite_db, models=models).run_sync(
            "hi", respond_with_final=False, limits={"model_calls": 2})
    assert (len(first.requests), len(second.requests), result.stopped_by) == (2, 0, "model_calls")
    assert [c["outcome"] for c in Orchestrator(TOOLS, db=sqlite_db).approvals.model_calls(result.thread_id)] == [
        "retried", "retried"]


def test_a_failed_question_counts_against_the_limit(server: ScriptedServer, sqlite_db: Path) -> None:
    from graphloop.graph.testing import error

    model = server.model_config(label="primary", max_retries=0)
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=sqlite_db, models=[model],
                        limits={"model_calls": 3})
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), error(500))
    paused = orch.run_sync("delete /tmp/x")
    assert paused.checkpoint is not None and paused.response.startswith("This action requires your explicit")
    server.add(reply("Deleted."))
    done = orch.resume_sync(paused.thread_id, confirmed=True)
    # the turn, the failed question, then one call left: the final answer, not another round
    assert (done.response, done.stopped_by) == ("Deleted.", "model_calls")
    assert server.requests[-1].body["tool_choice"] == "none"


def test_a_round_that_failed_whole_still_counts_after_the_resume(server: ScriptedServer, sqlite_db: Path) -> None:
    from graphloop.graph import ModelUnavailableError
    from graphloop.graph.testing import error

    model = server.model_config(label="primary", max_retries=1, retry_base_delay=0.0)
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model], limits={"model_calls": 3})
    server.add(error(500), error(500))
    with pytest.raises(ModelUnavailableError):
        orch.run_sync("hi", thread_id="failing")
    server.add(reply("An answer at the limit."))
    done = orch.resume_sync("failing")
    # two calls failed before: one is left, for the final answer (not a round and then an answer)
    assert (done.response, done.stopped_by, len(server.requests)) == ("An answer at the limit.", "model_calls", 3)
    assert server.requests[-1].body["tool_choice"] == "none"
