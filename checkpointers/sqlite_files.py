"""Which paths graphloop opens as its SQLite database, checked before anything is written.

sqlite3 opens any path: a text file or an image fails only later, deep in a run, with "file is
not a database" and no path, and WAL mode may leave files beside it; a typo in a folder name
used to create the folders and an empty database. So a path is refused, with
`UnusableDatabaseError` naming it and saying what to do, unless it is a SQLite file, an empty
file, or a new file in a folder that exists. A file that is not SQLite is never opened by
SQLite, so it stays as it was, byte for byte. What SQLite itself refuses while opening (a
read-only file or folder, a damaged file) is named the same way by `opening`.

Example:
    >>> usable_sqlite_path(":memory:")
    ':memory:'
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Generator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

from graphloop.checkpointers.errors import UnusableDatabaseError

__all__ = ["opening", "usable_sqlite_path", "writable_sqlite_path"]

_ELSE = "or give another db"


def usable_sqlite_path(db: str | PathLike[str]) -> str:
    """`db` as `sqlite3.connect` takes it, once it is known to be usable (see the module)."""
    text = os.fspath(db)
    if text == ":memory:":
        return text
    path = Path(text)
    if path.is_dir():
        raise _unusable(text, f"is a folder, not a SQLite file; give a file in it, such as "
                              f"{str(path / 'graphloop.db')!r}")
    if not path.exists():
        return _new_file(text, path)
    if not path.is_file():  # a device or a pipe: reading its header could block
        raise _unusable(text, "is not a regular file; give the path of a SQLite file")
    if not os.access(path, os.R_OK):
        raise _unusable(text, f"cannot be read (permission denied); let this user read and write it, "
                              f"{_ELSE}")
    if not _is_sqlite(path):
        raise _unusable(text, "is not a SQLite database, so graphloop left it as it was; give the "
                              "path of a graphloop database, or of a new file")
    return text


def _is_sqlite(path: Path) -> bool:
    """Whether `path` (an existing file) is empty or a SQLite database, asked of SQLite itself.

    Not by reading its first bytes with `open()`: closing any descriptor of a database file
    drops every POSIX lock this process holds on it, the locks of connections already open
    included (SQLite's "How To Corrupt" §2.2), and then another process may rewrite pages a
    reader of ours is reading. SQLite's own opens share its lock table, so a read-only probe
    through it is safe, and it neither creates nor changes anything.
    """
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return True  # SQLite will name the problem when it opens the file for real
    try:
        probe.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        return "not a database" not in str(exc)
    finally:
        probe.close()
    return True


def writable_sqlite_path(db: str | PathLike[str]) -> str:
    """`usable_sqlite_path`, refused also when this user may not write the file or its folder:
    a saver writes every step's checkpoint, and SQLite its -wal and -shm files beside it. (A
    reading command on a read-only file needs only the ledger, which checks no more.)"""
    text = usable_sqlite_path(db)
    path = Path(text)
    if text == ":memory:":
        return text
    for place, what in ((path, "the file"), (path.parent, "its folder")):
        if place.exists() and not os.access(place, os.W_OK):
            raise _unusable(text, f"is read-only: this user may not write {what}; let it write the file "
                                  f"and its folder (SQLite keeps its -wal and -shm files beside it), {_ELSE}")
    return text


def _new_file(text: str, path: Path) -> str:
    """A path to create: its folder must exist (graphloop never creates folders)."""
    folder = path.parent
    if not folder.exists():
        raise _unusable(text, f"is in a folder that does not exist ({str(folder)!r}); graphloop "
                              f"creates no folders: check the path for a typo, create the folder, {_ELSE}")
    if not folder.is_dir():
        raise _unusable(text, f"is inside {str(folder)!r}, which is a file, not a folder; fix the path")
    return text


@contextmanager
def opening(db: str | PathLike[str]) -> Generator[None, None, None]:
    """Raise what SQLite refuses while `db` is opened and set up as `UnusableDatabaseError`."""
    try:
        yield
    except sqlite3.Error as exc:
        reason = str(exc)
        if "readonly" in reason:
            why = ("is read-only (SQLite: attempt to write a readonly database); let this user write "
                   f"the file and its folder (SQLite keeps its -wal and -shm files beside it), {_ELSE}")
        elif "locked" in reason:
            why = (f"is locked by another program (SQLite: {reason}) for longer than the busy timeout; "
                   f"try again when it is done, {_ELSE}")
        elif "unable to open" in reason:
            why = ("cannot be opened or created (SQLite: unable to open database file); let this user "
                   f"write its folder, {_ELSE}")
        else:
            why = f"cannot be used (SQLite: {reason}); check that it is an undamaged SQLite file, {_ELSE}"
        raise _unusable(os.fspath(db), why) from exc


def _unusable(path: str, why: str) -> UnusableDatabaseError:
    return UnusableDatabaseError(f"db {path!r} {why}", path=path)
