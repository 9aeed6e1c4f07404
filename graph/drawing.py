"""Drawings of the graph that need no network: Mermaid source, ASCII, and a PNG.

LangGraph's `draw_mermaid_png` calls a web service; here the PNG is laid out with grandalf
(the Sugiyama layout LangChain's ASCII drawing uses) and painted with matplotlib, offline.
matplotlib comes with the `draw` extra (`pip install 'graphloop[draw]'`).

Example:
    >>> from graphloop.graph import compile_graph
    >>> print(draw(compile_graph(), "mermaid").splitlines()[5])
    graph TD;
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from grandalf.graphs import Edge, Graph, Vertex  # pyright: ignore[reportMissingTypeStubs]
from grandalf.layouts import SugiyamaLayout  # pyright: ignore[reportMissingTypeStubs]

from graphloop.checkpointers import ConfigurationError
from graphloop.graph.builder import LoopGraph

__all__ = ["DrawFormat", "draw", "draw_png"]

DrawFormat = Literal["mermaid", "ascii", "png"]

_BOX_H = 0.5
_CHAR_W = 0.13


class _Box:
    """grandalf's vertex view: the box size in, the position out."""

    def __init__(self, label: str) -> None:
        self.w = max(1.2, _CHAR_W * len(label) + 0.4)
        self.h = _BOX_H
        self.xy = (0.0, 0.0)


def draw(graph: LoopGraph, format: Literal["mermaid", "ascii"]) -> str:
    """The graph as Mermaid source or an ASCII drawing."""
    drawable = graph.get_graph()
    return drawable.draw_mermaid() if format == "mermaid" else drawable.draw_ascii()


def _layout(graph: LoopGraph) -> tuple[dict[str, tuple[float, float, float]], list[tuple[str, str, bool]]]:
    """Each node's centre and width, and each edge (source, target, conditional)."""
    drawable = graph.get_graph()
    boxes = {node: _Box(node) for node in drawable.nodes}
    vertices: dict[str, Any] = {node: Vertex(node) for node in drawable.nodes}
    for node, vertex in vertices.items():
        vertex.view = boxes[node]
    edges = [(e.source, e.target, e.conditional) for e in drawable.edges]
    layout_graph: Any = Graph(list(vertices.values()), [Edge(vertices[s], vertices[t]) for s, t, _ in edges])
    component = layout_graph.C[0]
    sugiyama: Any = SugiyamaLayout(component)
    sugiyama.init_all(roots=[v for v in component.sV if not v.e_in()], optimize=True)
    sugiyama.xspace, sugiyama.yspace = 0.6, 1.2
    sugiyama.draw()
    return {n: (b.xy[0], -b.xy[1], b.w) for n, b in boxes.items()}, edges


def draw_png(graph: LoopGraph, path: str | Path, *, dpi: int = 150) -> Path:
    """Paint the graph into the PNG file `path`, offline; conditional edges are dashed."""
    try:  # the Figure API, not pyplot: no backend is switched in the caller's notebook
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    except ImportError:
        raise ConfigurationError(
            "drawing a PNG needs matplotlib: pip install 'graphloop[draw]'") from None
    places, edges = _layout(graph)
    xs = [x for x, _, _ in places.values()]
    ys = [y for _, y, _ in places.values()]
    figure = Figure(figsize=(max(6.0, (max(xs) - min(xs)) * 0.9 + 3), max(6.0, (max(ys) - min(ys)) * 0.9 + 2)))
    axes = figure.subplots()
    for name, (x, y, w) in places.items():
        special = name.startswith("__")
        axes.add_patch(FancyBboxPatch((x - w / 2, y - _BOX_H / 2), w, _BOX_H,
                                      boxstyle="round,pad=0.05", linewidth=1.2, edgecolor="#4b3f99",
                                      facecolor="#bfb6fc" if special else "#f2f0ff"))
        axes.text(x, y, name, ha="center", va="center", fontsize=9, family="monospace")  # pyright: ignore[reportUnknownMemberType]  # matplotlib's **kwargs are untyped
    for source, target, conditional in edges:
        (x1, y1, _), (x2, y2, _) = places[source], places[target]
        up = 1 if y2 >= y1 else -1  # an edge back up leaves the top and curves aside
        axes.add_patch(FancyArrowPatch((x1, y1 + up * _BOX_H / 2), (x2, y2 - up * _BOX_H / 2),
                                       connectionstyle=f"arc3,rad={0.3 if up > 0 else 0.0}", arrowstyle="-|>",
                                       mutation_scale=12, linewidth=1.0, color="#333333",
                                       linestyle="--" if conditional else "-"))
    axes.set_xlim(min(xs) - 2, max(xs) + 2)
    axes.set_ylim(min(ys) - 1, max(ys) + 1)
    axes.set_aspect("equal")
    axes.axis("off")
    out = Path(path)
    figure.savefig(out, dpi=dpi, bbox_inches="tight")  # pyright: ignore[reportUnknownMemberType]  # matplotlib's **kwargs are untyped
    return out
