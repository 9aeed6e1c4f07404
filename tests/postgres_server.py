"""A throwaway PostgreSQL server for the tests, from the machine's own installation.

`initdb` makes a cluster in a fresh directory, `pg_ctl` starts it on a free loopback port
(trust authentication, no other clients), and `stop()` removes it. As root, the server runs
as the `postgres` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["find_bin", "start_postgres"]


def find_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, if PostgreSQL is installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres() -> tuple[str, Callable[[], None]]:
    """Start a server; its connection URL and a function that stops and removes it."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb): install it, or deselect "
                           "these tests with -m 'not postgres'")
    root = Path(tempfile.mkdtemp(prefix="graphloop-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
    port = _free_port()
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "graphloop",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=300"
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60",
                    "-l", str(root / "server.log"), "start"], check=True, capture_output=True)
    url = f"postgresql://graphloop@127.0.0.1:{port}/postgres"

    def stop() -> None:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    return url, stop
