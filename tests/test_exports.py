"""The layers' contract: each package's `__all__` names exactly what it exports, imports run one
way and cross a layer only through the package, and every type in a public signature can be
imported from `graphloop.graph`."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import re
from collections.abc import Callable, Iterator

import pytest

import graphloop.graph

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("graph", "nodes", "checkpointers")  # top to bottom


@pytest.mark.parametrize("package", ["graphloop.graph", "graphloop.nodes", "graphloop.checkpointers"])
def test_all_lists_every_public_name_and_each_resolves(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert sorted(module.__all__) == sorted(public - submodules)
    for name in module.__all__:
        assert getattr(module, name) is not None


def _imports(layer: str) -> Iterator[tuple[str, str]]:
    """(file name, imported module) for every `from graphloop... import` and `import graphloop...`."""
    for path in (ROOT / layer).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("graphloop"):
                yield path.name, node.module
            elif isinstance(node, ast.Import):
                yield from ((path.name, a.name) for a in node.names if a.name.startswith("graphloop"))


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_run_one_way_graph_nodes_checkpointers(layer: str) -> None:
    above = LAYERS[:LAYERS.index(layer)]
    wrong = [(f, m) for f, m in _imports(layer) if m.split(".")[1] in above]
    assert wrong == []


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_the_layers_below_through_their_package_only(layer: str) -> None:
    below = LAYERS[LAYERS.index(layer) + 1:]
    wrong = [(f, m) for f, m in _imports(layer) if m.split(".")[1] in below and m.count(".") > 1]
    assert wrong == []


def _public_callables() -> Iterator[tuple[str, Callable[..., object]]]:
    for name in graphloop.graph.__all__:
        obj = getattr(graphloop.graph, name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if callable(member):
                    yield f"{name}.{attr}", member
                elif isinstance(member, classmethod | staticmethod):
                    yield f"{name}.{attr}", member.__func__  # pyright: ignore[reportUnknownMemberType]
        elif callable(obj):
            yield name, obj


def _defined_in_graphloop(name: str) -> bool:
    pattern = re.compile(rf"^(class {name}\b|{name}\s*(: [^=]+)?=)", re.M)
    return any(pattern.search(p.read_text()) for layer in LAYERS for p in (ROOT / layer).glob("*.py"))


def _public_annotations() -> Iterator[tuple[str, str]]:
    """(where, annotation text) of every public signature, class field and type alias."""
    for where, function in _public_callables():
        for text in getattr(function, "__annotations__", {}).values():
            yield where, str(text)
    for name in graphloop.graph.__all__:
        obj = getattr(graphloop.graph, name)
        if inspect.isclass(obj):  # dataclass, TypedDict and class fields
            for klass in obj.__mro__:
                if klass.__module__.startswith("graphloop"):
                    for text in vars(klass).get("__annotations__", {}).values():
                        yield f"{name} fields", str(text)
        elif not callable(obj) or not inspect.isfunction(obj):  # an alias: what it stands for
            yield name, str(obj)


def test_every_type_in_a_public_signature_is_importable_from_graphloop_graph() -> None:
    missing: dict[str, str] = {}
    for where, text in _public_annotations():
        for word in re.findall(r"\b[A-Z]\w*", text):
            if not word.isupper() and word not in graphloop.graph.__all__ and _defined_in_graphloop(word):
                missing.setdefault(word, where)
    assert missing == {}
