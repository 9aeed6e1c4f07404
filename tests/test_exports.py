"""Each package's `__all__` names exactly what it exports, and every name resolves."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["graphloop.graph", "graphloop.nodes", "graphloop.checkpointers"])
def test_all_lists_every_public_name_and_each_resolves(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert sorted(module.__all__) == sorted(public - submodules)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_imports_run_one_way_graph_nodes_checkpointers() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    for folder, forbidden in (("nodes", "graphloop.graph"), ("checkpointers", "graphloop.nodes"),
                              ("checkpointers", "graphloop.graph")):
        for path in (root / folder).glob("*.py"):
            assert forbidden not in path.read_text(), f"{path.name} imports {forbidden}"
