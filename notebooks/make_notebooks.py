"""Write notebooks/explore_graph.ipynb from the cells below (python notebooks/make_notebooks.py).

The notebook is kept as source here so a change to it is a reviewable diff; the test suite
executes the written notebook offline.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    ("md", """# Explore the graphloop graph

Draw the loop offline, extend it with a branch node, run it against the scripted
OpenAI-compatible server, pause at the confirmation gate, look at the state history and the
tokens each request used against the budget, and resume. No network is used."""),
    ("code", """from IPython.display import Image, Markdown, display

from graphloop.graph import LoopContext, compile_graph, draw, draw_png, memory_saver

graph = compile_graph(memory_saver())
mermaid = draw(graph, "mermaid")
display(Markdown(f"```mermaid\\n{mermaid}\\n```"))  # JupyterLab renders Mermaid itself
print(mermaid)"""),
    ("code", """print(draw(graph, "ascii"))"""),
    ("md", """A PNG, drawn offline with matplotlib (LangGraph's `draw_mermaid_png` would call a web
service). When Graphviz and pygraphviz are installed, LangGraph's own `draw_png` works too."""),
    ("code", """display(Image(filename=str(draw_png(graph, "graph.png"))))
try:
    display(Image(graph.get_graph().draw_png()))  # Graphviz, when present
except ImportError as missing:
    print(f"Graphviz drawing skipped: {missing}")"""),
    ("md", """## Add a branch node and redraw

A branch is a name, a condition on state, a node, and where the run continues. This
guardrail answers tool calls that touch `/etc/` before anything runs."""),
    ("code", """from graphloop.graph import guardrail

guarded = compile_graph(memory_saver(), branches=[guardrail(r"/etc/")])
guarded_mermaid = draw(guarded, "mermaid")
display(Markdown(f"```mermaid\\n{guarded_mermaid}\\n```"))
assert "call_model -.-> guardrail;" in guarded_mermaid"""),
    ("md", """## A run against the scripted server

The server is a real HTTP server on 127.0.0.1 speaking the Chat Completions protocol; its
replies are scripted. The run stops at the confirmation gate; this is the interrupt payload
(LangChain's human-in-the-loop shape)."""),
    ("code", """import json

from langchain_core.messages import HumanMessage

from graphloop.graph.testing import ScriptedServer, reply, tool_call

def get_weather(city: str) -> str:
    \"\"\"Current weather for a city.\"\"\"
    return f"{city}: sunny, 21 °C"

def send_email(to: str, body: str) -> str:
    \"\"\"Send an email.\"\"\"
    return f"sent to {to}"

server = ScriptedServer([
    reply(None, tool_call("get_weather", city="Paris"), tool_call("send_email", to="ann@example.com", body="Sunny")),
    reply("May I email the Paris weather to ann@example.com?"),
    reply("Done: emailed Ann that Paris is sunny."),
]).start()
context = LoopContext.create(models=[server.model_config()], tools=[get_weather, send_email],
                             confirm_required=["send_email"])
config = {"configurable": {"thread_id": "notebook"}}
out = graph.invoke({"messages": [HumanMessage("Email Ann the Paris weather")]}, config, context=context)
print(json.dumps(out["__interrupt__"][0].value, indent=2, ensure_ascii=False))"""),
    ("md", "## State history, newest first"),
    ("code", """rows = ["| step | next | messages | rounds | pending |", "|---|---|---|---|---|"]
for snapshot in graph.get_state_history(config):
    values = snapshot.values
    rows.append(f"| {snapshot.metadata['step']} | {', '.join(snapshot.next)} | {len(values.get('messages', []))} "
                f"| {values.get('rounds', '')} | {', '.join(p['name'] for p in values.get('pending', []))} |")
display(Markdown("\\n".join(rows)))
assert "interrupt_for_confirm" in rows[2]"""),
    ("md", "## Approve and finish"),
    ("code", """from langgraph.types import Command

out = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config, context=context)
print(out["messages"][-1].content)
server.assert_all_used()
server.stop()
assert out["messages"][-1].content.startswith("Done")"""),
    ("md", """## Tokens per request against the budget

A long research run with 2 KB tool results and a small context window (2k tokens, so a
1,500-token budget): `tokens_before` is what the whole history would cost, `tokens_after`
what compaction actually sent. The second line never crosses the budget."""),
    ("code", """from graphloop.graph import CompactionSettings

def fetch(doc: int) -> str:
    \"\"\"Fetch a document.\"\"\"
    return f"document {doc}: " + "lorem ipsum dolor sit amet " * 80

server = ScriptedServer([*(reply(None, tool_call("fetch", doc=i)) for i in range(12)),
                         reply("Summary written.")]).start()
small = LoopContext.create(models=[server.model_config(context_k=2)], tools=[fetch],
                           compaction=CompactionSettings(keep=2))
records = [update["compact"]["compaction"]
           for update in compile_graph().stream({"messages": [HumanMessage("Summarise documents 0-11")],
                                                 "policy": {"user_role": "user", "tool_list": None,
                                                            "confirm_allow": [], "confirm_deny": [],
                                                            "max_rounds": 20, "respond_with_final": True,
                                                            "ask_model_to_confirm": True}},
                                                context=small, stream_mode="updates")
           if "compact" in update]
server.stop()
budget = records[0]["budget"]
assert all(r["tokens_after"] <= budget for r in records)
assert any(r["tokens_before"] > budget for r in records)"""),
    ("code", """import matplotlib.pyplot as plt

rounds = range(1, len(records) + 1)
plt.figure(figsize=(7, 3.5))
plt.plot(rounds, [r["tokens_before"] for r in records], marker="o", label="whole history (before)")
plt.plot(rounds, [r["tokens_after"] for r in records], marker="o", label="sent (after compaction)")
plt.axhline(budget, color="red", linestyle="--", label=f"budget ({budget} tokens)")
plt.xlabel("request"); plt.ylabel("tokens"); plt.legend(); plt.title("Tokens per request")
plt.show()"""),
]


def main() -> Path:
    notebook = new_notebook(
        cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = Path(__file__).parent / "explore_graph.ipynb"
    nbformat.write(notebook, path)
    return path


if __name__ == "__main__":
    print(main())
