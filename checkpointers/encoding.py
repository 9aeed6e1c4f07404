"""Text any tool or model may produce, stored losslessly in a TEXT column.

A Python string can hold what neither database takes as text: lone surrogates (what
`os.listdir` returns for a file name that is not UTF-8, e.g. `os.fsdecode(b"caf\\xe9.txt")`)
fail UTF-8 encoding in SQLite and PostgreSQL, and PostgreSQL refuses NUL. Such a value is
stored as `MARK` followed by its JSON form (ASCII: every such character becomes a `\\uXXXX`
escape), and read back exactly. Any other value is stored as it is, so the tables stay
readable with `sqlite-utils` or `psql`, and rows written before this encoding read the same.
A value that happens to start with `MARK` is encoded too, so reading back is never ambiguous.

Example:
    >>> name = "caf\\udce9 \\x00"
    >>> to_column(name)
    '\\ue000graphloop-json:"caf\\\\udce9 \\\\u0000"'
    >>> from_column(to_column(name)) == name
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MARK", "SURROGATES", "UNSTORABLE", "dumps", "from_column", "from_row", "to_column", "to_columns"]

MARK = "\ue000graphloop-json:"
"""What starts an encoded value: a private-use character no text of ours starts with."""

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""The characters a database refuses as text: NUL (PostgreSQL) and lone surrogates (both)."""

SURROGATES = re.compile("[\ud800-\udfff]")
"""Lone surrogates: no UTF-8 encoding (a database's, or an HTTP request's) takes them."""


def to_column(value: object) -> object:
    """`value` as a TEXT column takes it: a string it would refuse, encoded; else unchanged."""
    if isinstance(value, str) and (UNSTORABLE.search(value) or value.startswith(MARK)):
        return MARK + json.dumps(value)
    return value


def from_column(value: object) -> object:
    """The value `to_column` was given."""
    if isinstance(value, str) and value.startswith(MARK):
        return json.loads(value[len(MARK):])
    return value


def to_columns(args: Sequence[object]) -> tuple[object, ...]:
    """A statement's arguments, each through `to_column` (equal values stay equal)."""
    return tuple(to_column(a) for a in args)


def from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row read back, each value through `from_column`."""
    return {k: from_column(v) for k, v in row.items()}


def dumps(value: object) -> str:
    """JSON as the tables keep it: readable (non-ASCII as is) unless a string in it holds a
    lone surrogate, which only an ASCII escape can carry."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(value, default=str) if UNSTORABLE.search(text) else text
