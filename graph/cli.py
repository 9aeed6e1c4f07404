"""The `graphloop` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from graphloop.graph.builder import compile_graph
from graphloop.graph.demo import run_demo

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="graphloop: an OpenAI-compatible tool loop as a LangGraph graph.")


@app.command()
def demo(
    db: Annotated[Path | None, typer.Option(help="SQLite file to use (default: a new temp file)")] = None,
) -> None:
    """Run the loop offline: pause at a confirmation gate, resume in a new process."""
    run_demo(db)


@app.command("graph")
def draw(
    format: Annotated[Literal["mermaid"], typer.Option("--format", help="Drawing format")] = "mermaid",
) -> None:
    """Print the graph's drawing (Mermaid source, no network needed)."""
    typer.echo(compile_graph().get_graph().draw_mermaid())


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
