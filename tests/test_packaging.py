"""What the distribution ships besides code: the PEP 561 markers and the licence."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("package", ["graphloop.graph", "graphloop.nodes", "graphloop.checkpointers"])
def test_each_package_is_marked_typed_and_ships_its_marker(package: str) -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert (ROOT / setuptools["package-dir"][package] / "py.typed").is_file()
    assert "py.typed" in setuptools["package-data"][package]


def test_the_licence_is_the_one_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the graphloop authors\n")
