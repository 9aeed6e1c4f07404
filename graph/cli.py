"""The `graphloop` command: run a task, answer what waits, read a thread, draw the graph.

Models and tools come from `graphloop.toml` or the OpenAI environment variables (see
`graphloop.graph.settings`). Errors print one line; `--debug` shows the traceback. A thread
keeps the gate it started with: `approve`, `reject` and `resume` cannot take it away.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar, cast, get_args

import typer
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graphloop.checkpointers import (
    ConfigurationError,
    ContextBudgetError,
    GraphloopError,
    InvalidDecisionError,
    ModelCallError,
    UnknownThreadError,
    UsageGroup,
    db_label,
    open_saver,
    redact,
    writable_sqlite_path,
)
from graphloop.graph.approvals import Approvals
from graphloop.graph.asking import ask, call_text
from graphloop.graph.builder import compile_graph
from graphloop.graph.demo import run_demo
from graphloop.graph.drawing import draw, draw_png
from graphloop.graph.following import follow
from graphloop.graph.options import ResumeOptions, new_thread_id
from graphloop.graph.orchestrator import Orchestrator
from graphloop.graph.results import (
    OrchestratorResult,
)
from graphloop.graph.retention import parse_age
from graphloop.graph.settings import Database, Flags, as_database, existing_database
from graphloop.nodes import Decision

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False,  # --debug tracebacks: a frame's locals may hold a key
                  help="graphloop: an OpenAI-compatible tool loop as a LangGraph graph.")
console = Console(highlight=False)
_options = {"debug": False}

P = ParamSpec("P")
R = TypeVar("R")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="graphloop.toml to read (default: ./graphloop.toml)")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name (with OPENAI_BASE_URL) or a label from graphloop.toml")]
ToolsOpt = Annotated[list[str] | None, typer.Option("--tools", help="Tools to load, as module:attribute (repeatable)")]
ConfirmOpt = Annotated[list[str] | None, typer.Option("--confirm", help="A tool that needs confirmation (repeatable)")]
GateOpt = Annotated[list[str] | None, typer.Option(
    "--confirm", help="A tool that needs confirmation (repeatable); the thread keeps the gate it started "
                      "with, this can only add to it")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLite file or postgresql:// URL (default: graphloop.db)")]
UrlOpt = Annotated[str | None, typer.Option("--base-url", help="The OpenAI-compatible API root (default: OPENAI_BASE_URL)")]
KeyEnvOpt = Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the API key")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (recorded in the audit)")]
ThreadArg = Annotated[str, typer.Argument(help="The waiting thread")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
WaitOpt = Annotated[float, typer.Option("--wait", help="Seconds to wait while another run has the thread (default: refuse at once)")]

@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks")] = False) -> None:
    _options["debug"] = debug


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print every error as one line (secrets redacted) and exit 1, unless --debug."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise  # typer's own ways out
        except Exception as exc:  # noqa: BLE001  # one line for anything, the traceback with --debug
            if _options["debug"]:
                raise
            _print_error(exc, _secrets(kwargs.get("api_key_env")))
            raise typer.Exit(1) from None

    return run


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|AUTH", re.IGNORECASE)


def _secrets(key_env: object) -> list[str]:
    """Values an error must not show: the key `--api-key-env` names, and every environment
    variable whose name says it holds a secret (`graphloop.toml` takes keys from there)."""
    names = [n for n in os.environ if _SECRET_NAME.search(n)]
    return [os.environ[n] for n in [*names, *([key_env] if isinstance(key_env, str) else [])] if n in os.environ]


def _print_error(exc: Exception, secrets: Sequence[str] = ()) -> None:
    text = redact(str(exc).splitlines()[0] if str(exc) else "", secrets)
    unexpected = "" if isinstance(exc, GraphloopError) else " (--debug shows where)"
    console.print(f"[red]error:[/red] {type(exc).__name__}: {escape(text)}{unexpected}", soft_wrap=True)


@contextmanager
def _telling(errors: tuple[type[GraphloopError], ...], hint: str) -> Generator[None]:
    """On one of `errors`, print it as one line, then `hint` (how to go on), and exit 1."""
    try:
        yield
    except errors as exc:
        if _options["debug"]:
            raise
        _print_error(exc, _secrets(None))
        console.print(escape(hint), soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def _resumable(thread_id: str, flags: Flags) -> Generator[None]:
    """On a failure that keeps the thread's checkpoint (the model's, or Ctrl-C), say how to
    continue it."""
    hint = f"thread {thread_id} stopped; continue it with `graphloop resume {thread_id}{flags.again()}`"
    try:
        with _telling((ModelCallError, ContextBudgetError), hint):
            yield
    except KeyboardInterrupt:
        console.print(f"\ninterrupted: {escape(hint)}", soft_wrap=True)
        raise typer.Exit(130) from None


def _db(db: str | None) -> Database | None:
    return as_database(db) if db else None


def _flags(config: Path | None, model: str | None, tools: list[str] | None, confirm: list[str] | None,
           db: str | None, base_url: str | None, key_env: str) -> Flags:
    return Flags(config=config, model=model, tools=tuple(tools or ()), confirm=tuple(confirm or ()),
                 db=_db(db), base_url=base_url, key_env=key_env)


def _orchestrator(flags: Flags) -> Orchestrator:
    settings = flags.settings()
    return Orchestrator(list(settings.tools), confirm_required=settings.confirm_required,
                        allowed_decisions=settings.allowed_decisions, db=settings.db,
                        models=list(settings.models), one_call_per_pause=settings.one_call_per_pause,
                        limits=settings.limits)


def _answer_with(thread_id: str, flags: Flags) -> str:
    again = flags.again()
    return (f"thread {thread_id}: answer it with `graphloop approve {thread_id}{again}` "
            f"or `graphloop reject {thread_id}{again}`")


def _report(result: OrchestratorResult, flags: Flags, state: str = "waiting") -> None:
    if result.checkpoint is None:
        return
    console.print(f"[yellow]{state}:[/yellow] {escape(result.checkpoint.question)}", soft_wrap=True)
    console.print(escape(_answer_with(result.thread_id, flags)), soft_wrap=True)


def _answered(orch: Orchestrator, result: OrchestratorResult, user: str | None, flags: Flags) -> OrchestratorResult:
    """Ask about the calls `result` waits on and carry the answer out; at the end of input,
    leave them waiting and exit 1."""
    assert result.checkpoint is not None
    try:
        options = ask(result.checkpoint, orch.context.tools, console) | ResumeOptions(decided_by=user)
    except typer.Abort:
        console.print("\nno answer: nothing was decided")
        _report(result, flags, "still waiting")
        raise typer.Exit(1) from None
    with _telling((InvalidDecisionError,), _answer_with(result.thread_id, flags)):  # refused, nothing stored
        return asyncio.run(follow(orch.stream_resume(result.checkpoint, **options), console))


@app.command()
@_one_line_errors
def run(
    task: Annotated[str, typer.Argument(help="What the model should do")],
    model: ModelOpt = None, config: ConfigOpt = None, tools: ToolsOpt = None,
    confirm: ConfirmOpt = None, db: DbOpt = None,
    thread: Annotated[str | None, typer.Option(help="Continue this thread")] = None,
    user: Annotated[str | None, typer.Option(help="User id (remembered rules, audit)")] = None,
    system: Annotated[str, typer.Option(help="System prompt")] = "",
    no_input: Annotated[bool, typer.Option("--no-input", help="Leave a confirmation pending")] = False,
    base_url: UrlOpt = None, api_key_env: KeyEnvOpt = "OPENAI_API_KEY", wait: WaitOpt = 0.0,
) -> None:
    """Run a task with live output; answer the confirmation gate here, or leave it pending."""
    flags = _flags(config, model, tools, confirm, db, base_url, api_key_env)
    orch = _orchestrator(flags)
    thread_id = thread or new_thread_id()  # chosen here, so a failed run can name it
    with _resumable(thread_id, flags):
        result = asyncio.run(follow(
            orch.stream(task, system_prompt=system, thread_id=thread_id, user_id=user, wait=wait), console))
        while result.checkpoint is not None and not no_input:
            result = _answered(orch, result, user, flags)
    _report(result, flags)


def _carry_on(thread: str, flags: Flags, options: ResumeOptions) -> None:
    """Resume `thread` with `options` and show it run on (a thread that may use a tool not
    loaded here is refused before anything is recorded: `all_tools`)."""
    existing_database(flags.config, flags.db)  # resuming reads a thread: never create the file
    orch = _orchestrator(flags)
    with _resumable(thread, flags):
        resumed = orch.stream_resume(thread, **(options | ResumeOptions(all_tools=True)))
        _report(asyncio.run(follow(resumed, console)), flags)


def _decisions(thread: str, message: str | None, flags: Flags) -> list[Decision] | None:
    """With a note for the model: one reject decision per call the thread waits on."""
    if not message:
        return None
    waiting = [e for e in Approvals(existing_database(flags.config, flags.db)).pending() if e["thread_id"] == thread]
    return [Decision(type="reject", message=message) for _ in range(len(waiting[0]["calls"]) if waiting else 1)]


@app.command()
@_one_line_errors
def approve(
    thread: ThreadArg, by: ByOpt = None, model: ModelOpt = None, config: ConfigOpt = None,
    tools: ToolsOpt = None, confirm: GateOpt = None, db: DbOpt = None,
    base_url: UrlOpt = None, api_key_env: KeyEnvOpt = "OPENAI_API_KEY", wait: WaitOpt = 0.0,
) -> None:
    """Approve every call a thread waits on, and let it run on (under the gate it started with)."""
    _carry_on(thread, _flags(config, model, tools, confirm, db, base_url, api_key_env),
              {"confirmed": True, "decided_by": by, "wait": wait})


@app.command()
@_one_line_errors
def reject(
    thread: ThreadArg, by: ByOpt = None,
    message: Annotated[str | None, typer.Option(help="Told to the model")] = None,
    model: ModelOpt = None, config: ConfigOpt = None, tools: ToolsOpt = None,
    confirm: GateOpt = None, db: DbOpt = None,
    base_url: UrlOpt = None, api_key_env: KeyEnvOpt = "OPENAI_API_KEY", wait: WaitOpt = 0.0,
) -> None:
    """Reject every call a thread waits on, and let it run on (under the gate it started with)."""
    flags = _flags(config, model, tools, confirm, db, base_url, api_key_env)
    decisions = _decisions(thread, message, flags)
    options = ResumeOptions(decisions=decisions) if decisions else ResumeOptions(confirmed=False)
    _carry_on(thread, flags, options | ResumeOptions(decided_by=by, wait=wait))


@app.command()
@_one_line_errors
def resume(
    thread: Annotated[str, typer.Argument(help="The thread that stopped")],
    model: ModelOpt = None, config: ConfigOpt = None, tools: ToolsOpt = None, db: DbOpt = None,
    base_url: UrlOpt = None, api_key_env: KeyEnvOpt = "OPENAI_API_KEY", wait: WaitOpt = 0.0,
) -> None:
    """Continue a thread stopped by an error or a crash, from its last checkpoint (calls that
    completed do not run again; a thread waiting for a decision needs approve or reject)."""
    _carry_on(thread, _flags(config, model, tools, None, db, base_url, api_key_env), {"wait": wait})


@app.command()
@_one_line_errors
def pending(
    config: ConfigOpt = None, db: DbOpt = None,
    user: Annotated[str | None, typer.Option(help="Only this user's threads")] = None, as_json: JsonOpt = False,
) -> None:
    """List the threads waiting for a decision."""
    entries = Approvals(existing_database(config, _db(db))).pending(user)
    if as_json:
        typer.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    table = Table()
    table.add_column("thread", no_wrap=True)  # whole, to copy into approve/reject
    table.add_column("waiting since")
    table.add_column("calls", overflow="fold")
    table.add_column("question", overflow="fold")
    for e in entries:
        calls = "\n".join(call_text(c) for c in e["calls"])
        question = escape(e["question"])
        if e.get("decided"):  # the deciding process stopped before carrying it out
            question = f"[yellow]decided; carry it out with `graphloop resume {e['thread_id']}`[/yellow] {question}"
        table.add_row(e["thread_id"], e["waiting_since"][:19].replace("T", " "), escape(calls), question)
    console.print(table if entries else "nothing is waiting")


def _as_json(message: AnyMessage) -> dict[str, Any]:
    calls = message.tool_calls if isinstance(message, AIMessage) else []
    return {"type": message.type, "content": message.content,
            "tool_calls": [{"id": c["id"], "name": c["name"], "args": c["args"]} for c in calls],
            "tool_call_id": message.tool_call_id if isinstance(message, ToolMessage) else None,
            "name": message.name}


@app.command()
@_one_line_errors
def history(
    thread: Annotated[str, typer.Argument(help="The thread to show")],
    config: ConfigOpt = None, db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show a thread's messages as a table (or JSON)."""
    path = existing_database(config, _db(db))
    with open_saver(path) as saver:
        values = compile_graph(saver).get_state({"configurable": {"thread_id": thread}}).values
    messages: list[AnyMessage] = values.get("messages") or []
    if not messages:
        raise UnknownThreadError(f"no thread {thread!r} in the database {db_label(path)!r}", thread_id=thread)
    if as_json:
        typer.echo(json.dumps([_as_json(m) for m in messages], ensure_ascii=False, indent=2))
        return
    table = Table("#", "role", "content", "tool calls")
    for i, m in enumerate(messages):
        calls = "\n".join(call_text(c) for c in (m.tool_calls if isinstance(m, AIMessage) else []))
        table.add_row(str(i), m.type, m.text[:200], calls)
    console.print(table)
    model_calls = Approvals(path).model_calls(thread)
    if model_calls:
        calls_table = Table("round", "model", "for", "outcome", "tokens in", "tokens out", "ms", title="model calls")
        for c in model_calls:
            tokens = [_tokens(c["input_tokens"], c["counted"]), _tokens(c["output_tokens"], c["counted"])]
            calls_table.add_row(str(c["round"]), c["model"], c["purpose"], c["outcome"], *tokens, f"{c['latency_ms']:.0f}")
        console.print(calls_table)


def _tokens(count: int | None, counted: bool) -> str:
    """A token count as the tables show it: `-` when unknown, `~` before a counted one."""
    return "-" if count is None else f"{'~' if counted else ''}{count:,}"


@app.command()
@_one_line_errors
def usage(
    since: Annotated[str | None, typer.Option("--since", help="Only the last 7d, 12h, 45m or 10s")] = None,
    by: Annotated[str | None, typer.Option("--by", help="One row per user, model or thread")] = None,
    config: ConfigOpt = None, db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show the model calls and tokens the runs used, as the servers reported them (or counted)."""
    if by is not None and by not in get_args(UsageGroup):
        raise ConfigurationError(f"--by {by!r} is not one of user, model, thread")
    rows = Approvals(existing_database(config, _db(db))).usage(since=_age(since) if since else None, by=cast(Any, by))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(*([by] if by else []), "model calls", "tokens in", "tokens out", "total", "counted calls")
    for r in rows:
        sums = [f"{r[k]:,}" for k in ("model_calls", "input_tokens", "output_tokens", "total_tokens", "counted_calls")]
        table.add_row(*([r["key"] or "-"] if by else []), *sums)
    console.print(table if rows else "no model calls recorded")


@app.command()
@_one_line_errors
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age of the last activity: 30d, 12h, 45m, 10s")],
    audit: Annotated[bool, typer.Option("--audit", help="Delete their audit rows too")] = False,
    config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    """Delete finished threads older than an age and reclaim the space (paused ones stay)."""
    age = _age(older_than)
    # a maintenance command: a mistyped --db is an error, not a new empty database
    report = Orchestrator(db=existing_database(config, _db(db))).prune_sync(age, audit=audit)
    console.print(f"deleted {len(report.deleted)} finished thread(s); {report.kept} kept")


def _age(text: str) -> timedelta:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


@app.command()
@_one_line_errors
def demo(
    db: Annotated[Path | None, typer.Option(help="SQLite file to use (default: a new temp file)")] = None,
) -> None:
    """Run the loop offline: pause at a confirmation gate, resume in a new process."""
    if db is not None:
        writable_sqlite_path(db)  # a --db it cannot use is named before the demo starts
    run_demo(db)


@app.command("graph")
@_one_line_errors
def drawing(
    format: Annotated[Literal["mermaid", "ascii", "png"], typer.Option("--format", help="Drawing format")] = "mermaid",
    output: Annotated[Path, typer.Option(help="Where the PNG goes")] = Path("graph.png"),
) -> None:
    """Draw the graph, offline: Mermaid source, ASCII art, or a PNG file."""
    graph = compile_graph()
    if format == "png":
        console.print(f"wrote {draw_png(graph, output)}")
    else:
        typer.echo(draw(graph, format))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
