"""Keys never reach storage, logs, error texts or their causes, wherever a key is given.

The attacker's server is the strict scripted server made with its own key: a request with
another key gets a 401 whose body echoes the key it received, as OpenAI's API once did. Each
test then looks for the key everywhere it could land: the exception, its causes and contexts
and traceback, every log line at DEBUG level (httpx, httpcore, openai, langgraph, ...), every
byte of the database, the CLI's output with and without `--debug`, and a served graph's store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph_sdk import get_sync_client

from graphloop.graph import (
    ConfigurationError,
    LoopContext,
    LoopState,
    ModelCallError,
    ModelConfig,
    ModelUnavailableError,
    Orchestrator,
    compile_graph,
    open_async_saver,
    open_saver,
    serve,
)
from graphloop.graph.testing import ScriptedServer, error

from conftest import TOOLS, stored_bytes
from test_langgraph_dev import ROOT, free_port, wait_until_up

KEY = "sk-live-0123456789abcdef"
"""The key the client sends: not the server's, so the server echoes it."""
SHORT = "k7Qz"
"""A short key (a local server started with `--api-key k7Qz`)."""
RIGHT = "sk-the-servers-own-key"
GIVEN: dict[str, tuple[dict[str, Any], str]] = {
    "api_key": ({"api_key": KEY}, KEY),
    "bearer_header": ({"api_key": "", "extra_headers": {"Authorization": f"Bearer {KEY}"}}, KEY),
    "short_key": ({"api_key": SHORT}, SHORT),
}
"""The ways a key reaches the server, and the key the server will echo."""
LOGGERS = (None, "httpx", "httpcore", "openai", "langchain", "langgraph", "graphloop", "aiosqlite", "psycopg")


@pytest.fixture
def keyed() -> Iterator[ScriptedServer]:
    """A strict server with its own key; a request with another key gets a 401 echoing it."""
    with ScriptedServer(strict=True, api_key=RIGHT) as server:
        yield server
        server.assert_all_used()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG level, of graphloop and of the libraries under it."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def everything_about(failure: BaseException) -> str:
    """The text, repr and args of the exception and of every cause and context, and the
    formatted traceback (what `--debug`, a log's `exc_info` or Sentry would show)."""
    seen: list[BaseException] = []
    todo = [failure]
    while todo:
        e = todo.pop()
        if e not in seen:
            seen.append(e)
            todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    parts = [f"{e}\n{e!r}\n{e.args!r}" for e in seen]
    return "\n".join([*parts, *traceback.format_exception(failure)])


def echoed(server: ScriptedServer, secret: str) -> bool:
    """Whether the server did put `secret` in a 401 body (so the test attacked something)."""
    return any(r.status == 401 and secret in r.message for r in server.refusals)


@pytest.mark.parametrize("given", GIVEN, ids=list(GIVEN))
def test_a_key_the_server_echoes_reaches_no_error_cause_log_or_database(
        keyed: ScriptedServer, any_db: Path | str, logs: pytest.LogCaptureFixture, given: str) -> None:
    settings, secret = GIVEN[given]
    orch = Orchestrator(TOOLS, db=any_db, models=[keyed.model_config(label="primary", **settings)])
    with pytest.raises(ModelCallError, match=r"HTTP 401: .*Incorrect API key provided: \*\*\*\*") as failed:
        orch.run_sync("hi", thread_id="t1")
    assert echoed(keyed, secret)
    assert secret not in everything_about(failed.value)
    assert secret not in logs.text and "401 Unauthorized" in logs.text  # httpx's line: the logs were caught
    assert secret.encode() not in stored_bytes(any_db)


def test_keys_every_model_of_the_chain_echoes_stay_out_of_the_unavailable_error(
        keyed: ScriptedServer, sqlite_db: Path, logs: pytest.LogCaptureFixture) -> None:
    token = "gw-token-9876543210"
    fast = {"max_retries": 1, "retry_base_delay": 0.01}
    primary = keyed.model_config(label="primary", extra_headers={"X-Gateway": f"Bearer {token}"}, **fast)
    backup = keyed.model_config(label="backup", **fast)
    keyed.add(*[error(503, f"upstream refused key {RIGHT}, gateway token {token}")] * 2,  # what each one sent
              *[error(503, f"upstream refused key {RIGHT}, gateway token none")] * 2)
    with pytest.raises(ModelUnavailableError, match="every model failed") as failed:
        Orchestrator(TOOLS, db=sqlite_db, models=[primary, backup]).run_sync("hi")
    text = everything_about(failed.value) + logs.text
    assert "retry 1 of 1" in logs.text and "upstream refused key ****, gateway token ****" in text
    assert RIGHT not in text and token not in text
    assert RIGHT.encode() not in stored_bytes(sqlite_db) and token.encode() not in stored_bytes(sqlite_db)


@pytest.mark.parametrize("given", GIVEN, ids=list(GIVEN))
def test_a_compiled_graph_keeps_an_echoed_key_out_of_the_sqlite_file(
        keyed: ScriptedServer, sqlite_db: Path, logs: pytest.LogCaptureFixture, given: str) -> None:
    settings, secret = GIVEN[given]
    context = LoopContext.create(models=[keyed.model_config(label="primary", **settings)], tools=TOOLS)
    with open_saver(sqlite_db) as saver, pytest.raises(ModelCallError) as failed:
        compile_graph(saver).invoke(LoopState(messages=[HumanMessage("hi")]),  # pyright: ignore[reportUnknownMemberType]
                                    {"configurable": {"thread_id": "t1"}}, context=context)
    assert echoed(keyed, secret)
    assert secret not in everything_about(failed.value) and secret not in logs.text
    assert secret.encode() not in stored_bytes(sqlite_db)


@pytest.mark.parametrize("settings", [
    {"api_key": f"{KEY}\n"}, {"api_key": f" {KEY}"}, {"api_key": f"{KEY}\x00"},
    {"extra_headers": {"Authorization": f"Bearer {KEY}\r\n"}}], ids=["newline", "space", "nul", "header"])
def test_a_key_http_cannot_carry_is_refused_before_any_request_and_never_shown(
        keyed: ScriptedServer, settings: dict[str, Any], logs: pytest.LogCaptureFixture) -> None:
    model = {"label": "primary", "api_url": keyed.url, "model_name": "scripted", "max_retries": 0, **settings}
    orch = Orchestrator(TOOLS, db=":memory:")
    with pytest.raises(ConfigurationError, match="cannot be sent in an HTTP header .* strip it") as refused:
        orch.run_sync("hi", model_cfg=model)
    assert keyed.requests == []
    assert KEY not in everything_about(refused.value) and KEY not in logs.text


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/v1#access_token=" + KEY, "http://127.0.0.1:1/v1#sig=" + KEY,
                                 "http://127.0.0.1:1/v1;api_key=" + KEY,
                                 "http://127.0.0.1:1/sk-live-PATHKEY-55556666/v1",  # a key in the path,
                                 "http://127.0.0.1:1/v1?sk-live-QUERYKEY-5555666",  # a bare query,
                                 "http://127.0.0.1:1/v1#sk-live-FRAGKEY-55556666"])  # a bare fragment
def test_a_key_in_the_urls_fragment_or_parameters_is_refused_without_being_shown(url: str) -> None:
    with pytest.raises(ConfigurationError, match="api_url carries a secret") as refused:
        ModelConfig.coerce({"label": "m", "api_url": url, "model_name": "m"})
    assert KEY not in everything_about(refused.value) and "KEY-555" not in everything_about(refused.value)


@pytest.mark.parametrize("where", ["/{key}/v1", "/v1?k={key}"])
def test_a_url_holding_the_models_own_key_is_refused_without_being_shown(where: str) -> None:
    """A short or oddly shaped key is not known by its shape, but it is known as the key."""
    key = "gw-" + "attack-123"  # built here: the traceback shows this line's source
    with pytest.raises(ConfigurationError, match="api_url carries a secret") as refused:
        ModelConfig.coerce({"label": "m", "api_url": "http://127.0.0.1:1" + where.format(key=key),
                            "model_name": "m", "api_key": key})
    assert key not in everything_about(refused.value)
    assert ModelConfig.coerce({"label": "m", "api_url": "http://none.local/v1", "model_name": "m", "api_key": "none"})


def cli(args: list[str], folder: Path, **env: str) -> str:
    """A real `graphloop` process in `folder`; its stdout and stderr together."""
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent), "COLUMNS": "2000",
                   "NO_COLOR": "1", **env}
    done = subprocess.run([str(Path(sys.executable).parent / "graphloop"), *args], capture_output=True,
                          text=True, timeout=120, cwd=folder, env=environment)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout + done.stderr


def write_settings(folder: Path, server: ScriptedServer) -> Path:
    """graphloop.toml with the key from the environment and a header from `${AUTH}`."""
    config = folder / "graphloop.toml"
    config.write_text(f'tools = ["conftest:TOOLS"]\ndb = "{folder / "graphloop.db"}"\n\n[[models]]\n'
                      f'label = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\nmax_retries = 0\n'
                      'api_key_env = "MY_KEY"\nextra_headers = {"X-Title" = "graphloop", "Authorization" = "${AUTH}"}\n')
    return config


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_the_cli_shows_no_echoed_key_with_or_without_debug(keyed: ScriptedServer, tmp_path: Path, debug: bool) -> None:
    write_settings(tmp_path, keyed)
    out = cli([*(["--debug"] if debug else []), "run", "hi"], tmp_path, MY_KEY=RIGHT, AUTH=f"Bearer {KEY}")
    assert echoed(keyed, KEY) and "Incorrect API key provided: ****" in out
    assert ("Traceback" in out) == debug
    assert KEY not in out and KEY not in "".join(out.split())  # nor cut by a line's end
    assert KEY.encode() not in stored_bytes(tmp_path / "graphloop.db")


def test_the_cli_refuses_a_key_with_its_newline_in_one_line_without_showing_it(
        keyed: ScriptedServer, tmp_path: Path) -> None:
    write_settings(tmp_path, keyed)
    out = cli(["run", "hi"], tmp_path, MY_KEY=f"{RIGHT}\n", AUTH="Bearer x")
    assert out.startswith("error: ConfigurationError: model 'primary': api_key cannot be sent in an HTTP header")
    assert len(out.strip().splitlines()) == 1 and RIGHT not in out and keyed.requests == []


@pytest.fixture
def served_settings(keyed: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The served graph's settings: graphloop.toml, its key and header from the environment."""
    monkeypatch.setenv("GRAPHLOOP_CONFIG", str(write_settings(tmp_path, keyed)))
    monkeypatch.setenv("MY_KEY", RIGHT)
    monkeypatch.setenv("AUTH", f"Bearer {KEY}")
    serve.server_context.cache_clear()
    yield tmp_path
    serve.server_context.cache_clear()


def test_the_served_graph_keeps_an_echoed_key_out_of_its_checkpoints_and_logs(
        keyed: ScriptedServer, served_settings: Path, logs: pytest.LogCaptureFixture) -> None:
    db = served_settings / "server-threads.db"

    async def run() -> None:
        async with open_async_saver(db) as saver:
            graph = serve.graph.copy({"checkpointer": saver})
            async for _ in graph.astream({"messages": [{"role": "user", "content": "hi"}]},
                                         {"configurable": {"thread_id": "t1"}}):
                pass

    with pytest.raises(ModelCallError) as failed:
        asyncio.run(run())
    assert echoed(keyed, KEY)
    assert KEY not in everything_about(failed.value) and KEY not in logs.text
    assert KEY.encode() not in stored_bytes(db)


def test_langgraph_dev_keeps_an_echoed_key_out_of_its_answer_log_and_store(
        keyed: ScriptedServer, tmp_path: Path) -> None:
    write_settings(tmp_path, keyed)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "GRAPHLOOP_CONFIG": str(tmp_path / "graphloop.toml"),
           "LANGSMITH_TRACING": "false", "MY_KEY": RIGHT, "AUTH": f"Bearer {KEY}"}
    log_path = tmp_path / "dev.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([str(Path(sys.executable).parent / "langgraph"), "dev", "--config",
                                    str(ROOT / "langgraph.json"), "--port", str(port), "--no-browser", "--no-reload"],
                                   cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url, process, log_path)
            with get_sync_client(url=url) as client:
                thread = client.threads.create()["thread_id"]
                run = client.runs.create(thread, "graphloop", input={"messages": [{"role": "user", "content": "hi"}]})
                client.runs.join(thread, run["run_id"])  # pyright: ignore[reportUnknownMemberType]  # the SDK returns an untyped dict
                answer = repr(client.runs.get(thread, run["run_id"])) + repr(client.threads.get(thread))
        finally:
            process.terminate()
            process.wait(30)
    assert echoed(keyed, KEY) and "Incorrect API key provided: ****" in log_path.read_text()
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".toml")
    assert KEY not in answer and KEY.encode() not in stored
