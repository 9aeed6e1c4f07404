"""Every example in graphloop's docstrings runs, as a reader would copy it."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

MODULES = sorted(
    f"graphloop.{package}.{module.name}"
    for package in ("graph", "nodes", "checkpointers")
    for module in pkgutil.iter_modules(importlib.import_module(f"graphloop.{package}").__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_the_docstrings_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
