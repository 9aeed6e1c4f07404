"""`langgraph dev` serves the repository's langgraph.json: a run to the gate and a resume, over HTTP.

The server is the real one (langgraph-cli's in-memory dev server) on loopback; its models
and tools come from a graphloop.toml pointing at the scripted server, and the client is
langgraph-sdk.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from graphloop.graph.testing import ScriptedServer, reply, tool_call

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for `langgraph dev` at `url` to answer, failing with its log if it stops or stalls."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    pytest.fail("langgraph dev did not start:\n" + log.read_text()[-3000:])


@pytest.fixture
def dev_server(server: ScriptedServer, tmp_path: Path) -> Iterator[str]:
    yield from serving(server, tmp_path)


def serving(server: ScriptedServer, tmp_path: Path, settings: str = "") -> Iterator[str]:
    """`langgraph dev` on a free port, with a graphloop.toml for `server` (plus `settings`)."""
    (tmp_path / "graphloop.toml").write_text(
        f'tools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\ndb = "{tmp_path / "served.db"}"\n'
        f'{settings}\n[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\n'
        'max_retries = 0\n')
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent),
           "GRAPHLOOP_CONFIG": str(tmp_path / "graphloop.toml"), "LANGSMITH_TRACING": "false"}
    cli = Path(sys.executable).parent / "langgraph"
    log = (tmp_path / "dev.log").open("w")
    process = subprocess.Popen([str(cli), "dev", "--config", str(ROOT / "langgraph.json"), "--port", str(port),
                                "--no-browser", "--no-reload"], cwd=tmp_path, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, tmp_path / "dev.log")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_langgraph_dev_runs_to_the_gate_and_resumes_through_the_sdk(server: ScriptedServer, dev_server: str) -> None:
    server.add(reply(None, tool_call("add", a=2, b=3), tool_call("delete_file", path="/tmp/x")),
               reply("May I delete /tmp/x?"), reply("Deleted /tmp/x; 2 + 3 = 5."))
    with get_sync_client(url=dev_server) as client:
        resume_through(client)
    assert server.requests[-1].messages[-1]["content"] == "deleted /tmp/x"


def resume_through(client: Any) -> None:
    thread = client.threads.create()["thread_id"]
    out: Any = client.runs.wait(thread, "graphloop", input={"messages": [{"role": "user", "content": "go"}]})
    [pause] = out["__interrupt__"]
    assert pause["value"]["action_requests"] == [
        {"name": "delete_file", "args": {"path": "/tmp/x"}, "description": "May I delete /tmp/x?",
         "arguments": {"path": "/tmp/x"}}]  # `arguments`: where Agent Inbox reads them
    assert client.threads.get_state(thread)["next"] == ["interrupt_for_confirm"]

    bad = client.runs.create(thread, "graphloop", command={"resume": {"decisions": []}})
    client.runs.join(thread, bad["run_id"])
    assert client.runs.get(thread, bad["run_id"])["status"] == "error"
    assert client.threads.get_state(thread)["next"] == ["interrupt_for_confirm"]  # still paused

    done: Any = client.runs.wait(thread, "graphloop", command={"resume": {"decisions": [{"type": "approve"}]}})
    tools = [m["content"] for m in done["messages"] if m["type"] == "tool"]
    assert tools == ["5", "deleted /tmp/x"]
    assert done["messages"][-1]["content"] == "Deleted /tmp/x; 2 + 3 = 5."
    assert client.threads.get_state(thread)["next"] == []


def test_the_served_graph_keeps_the_files_limits_and_records_each_call(server: ScriptedServer, tmp_path: Path) -> None:
    from graphloop.graph import open_ledger

    server.add(reply(None, tool_call("add", a=1, b=1)), reply("Two, as far as I got."))
    for url in serving(server, tmp_path, "\n[limits]\nmodel_calls = 2\n"):
        with get_sync_client(url=url) as client:
            thread = client.threads.create()["thread_id"]
            run = client.runs.create(thread, "graphloop", input={"messages": [{"role": "user", "content": "add a lot"}]})
            client.runs.join(thread, run["run_id"])
            values: Any = client.threads.get_state(thread)["values"]
    assert values["stopped_by"] == "model_calls" and values["messages"][-1]["content"] == "Two, as far as I got."
    assert server.requests[-1].body["tool_choice"] == "none"  # the second call was the final answer
    with open_ledger(tmp_path / "served.db") as ledger:
        calls = ledger.model_calls(thread)
    assert [(c["purpose"], c["run_id"]) for c in calls] == [("turn", run["run_id"]), ("final", run["run_id"])]
    assert [(c["input_tokens"], c["output_tokens"]) for c in calls] == [
        (u["prompt_tokens"], u["completion_tokens"]) for u in server.usages]
