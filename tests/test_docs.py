"""The docs never lie: every Python block of README.md and docs/*.md runs on its own and prints
what it says, README's drawing is the graph, and CI runs README's test command.

Each Python block runs by itself (a fresh namespace: no names from an earlier block) in an empty
folder, twice in a row in that same folder, and must print the same both times (new thread ids
aside): an example a reader runs again must behave as it did. The comment ending a `print(...)`
line (or, for a long line, the comment lines right below it) shows what it prints: that text
must be in the block's output, where a leading or trailing `…` marks it abridged.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphloop.graph import compile_graph
from graphloop.graph.cli import app
from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.wire import forget

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "console", "text", "toml", "json", "mermaid"}
"""The fences the docs may use; only `python` is executed, so a new language must be added here
on purpose (a `py` or `python3` block would otherwise be skipped silently)."""

KEY_OUTCOMES = [
    "Deleted /tmp/x; Oslo is sunny.",
    "May I delete /tmp/y?",
    "[('delete_file', 'success', 'ann'), ('delete_file', 'success', 'ann')]",
    "has finished; nothing to resume",
    "Emailed Ann: Rome is sunny.",
]
"""What the examples must show (and so, by the comment rule above, print)."""

NEW_ID = re.compile(r"\b[0-9a-f]{20}\b")
"""A thread id made for a new run (`new_thread_id()`): the one output allowed to differ between runs."""

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", flags=re.S | re.M)


def fenced(text: str) -> list[tuple[str, int, str]]:
    """Every fenced block of a page: its language, the line its code starts on, its code."""
    return [(m.group(1).strip(), text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in FENCE.finditer(text)]


def blocks(language: str, text: str = README) -> list[str]:
    return [code for lang, _, code in fenced(text) if lang == language]


def shown(code: str) -> list[str]:
    """What the block's comments say it prints: the comment ending each `print(...)` line,
    else the comment lines right below it."""
    texts: list[str] = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        if "  # " in line:
            texts.append(line.split("  # ", 1)[1])
            continue
        for below in lines[i + 1:]:
            if not below.lstrip().startswith("# "):
                break
            texts.append(below.lstrip()[2:])
    return [text.strip().strip("…").strip() for text in texts]


PYTHON = [(page, line, code) for page in PAGES for lang, line, code in fenced(page.read_text()) if lang == "python"]
EXAMPLES = [pytest.param(page, line, code, id=f"{page.relative_to(ROOT)}:{line}") for page, line, code in PYTHON]


@pytest.mark.parametrize(("page", "line", "code"), EXAMPLES)
def test_python_block_runs_on_its_own_twice_and_prints_what_it_shows(
    page: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],  # not capsys: a subprocess an example starts needs a real stderr
) -> None:
    monkeypatch.chdir(tmp_path)
    program = compile("\n" * (line - 1) + code, str(page), "exec")  # tracebacks name the page's line
    printed: list[str] = []
    for _ in range(2):
        forget()  # what servers refused is remembered per URL: a new scripted server may reuse a port
        exec(program, {"__name__": "docs_example"})
        printed.append(capfd.readouterr().out)
    for text in shown(code):
        assert text in printed[0], f"{page.name}:{line} does not print {text!r}:\n{printed[0]}"
    first, second = (NEW_ID.sub("<id>", out) for out in printed)
    assert second == first, f"{page.name}:{line} printed something else when run again"


def test_the_examples_show_their_key_outcomes() -> None:
    comments = [text for _, _, code in PYTHON for text in shown(code)]
    for outcome in KEY_OUTCOMES:
        assert any(outcome in text for text in comments), outcome


def test_every_block_is_in_a_known_language() -> None:
    for page in PAGES:
        unknown = {lang for lang, _, _ in fenced(page.read_text())} - LANGUAGES
        assert not unknown, f"{page.name}: fences {unknown} are not executed nor allowed"


def anchors(page: Path) -> set[str]:
    """The `#fragment`s GitHub gives the page's headings (code blocks left out)."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_lists_every_docs_page() -> None:
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in README, f"README does not link docs/{page.name}"


def test_every_link_between_the_pages_resolves() -> None:
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            linked = page.parent / target if target else page
            assert linked.exists(), f"{page.name} links to a missing {target}"
            if anchor:
                assert anchor in anchors(linked), f"{page.name} links to a missing #{anchor} in {target}"


def test_readme_drawing_is_the_compiled_graph() -> None:
    drawn = compile_graph().get_graph().draw_mermaid()
    edges = {line.strip() for line in drawn.splitlines() if "-->" in line or "-.->" in line}
    [shown_drawing] = blocks("mermaid")
    assert {line.strip() for line in shown_drawing.splitlines() if "-->" in line or "-.->" in line} == edges


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"^(python -m pytest)\b", blocks("bash")[0], flags=re.M)
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text()


def test_readme_command_line_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [block] = blocks("console")
    commands = [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ graphloop ")]
    assert [c[1] for c in commands] == ["run", "pending", "approve", "history", "graph"]
    monkeypatch.chdir(tmp_path)
    with ScriptedServer([
        reply(None, tool_call("get_weather", city="Paris"),
              tool_call("send_email", to="ann@example.com", subject="Paris", body="Sunny")),
        reply("May I email Ann?"), reply("Emailed Ann."),
    ]) as server:
        env = {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test", "COLUMNS": "200", "NO_COLOR": "1"}
        thread = ""
        for command in commands:
            args = [thread if a == "THREAD" else a for a in command[1:]]
            result = CliRunner().invoke(app, args, env=env)
            assert result.exit_code == 0, (command, result.output)
            found = re.search(r"thread (\w+): answer it with", result.output)
            thread = found.group(1) if found else thread
        assert "Emailed Ann." in CliRunner().invoke(app, ["history", thread], env=env).output
        server.assert_all_used()


def test_readme_shows_the_offline_png_of_the_graph() -> None:
    assert "](docs/graph.png)" in README
    assert (ROOT / "docs" / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
