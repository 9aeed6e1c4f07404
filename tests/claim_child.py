"""A worker for the claim test: pauses a transfer, or approves it and dies inside the tool.

Usage: python claim_child.py DB API_URL EFFECTS_FILE run
       python claim_child.py DB API_URL EFFECTS_FILE approve THREAD_ID
`run` prints the paused thread's id; `approve` is killed by SIGKILL (from inside the tool,
after its claim was written and its side effect happened, before its result is saved).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from graphloop.graph import ModelConfig, Orchestrator


def make_transfer(effects: Path, *, kill: bool) -> Callable[[int], str]:
    def transfer(amount: int) -> str:
        """Transfer money (a side effect that must not happen twice)."""
        with effects.open("a") as log:
            log.write(f"transfer {amount}\n")
            log.flush()
            os.fsync(log.fileno())
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        return f"transferred {amount}"

    return transfer


def main(db: str, api_url: str, effects: str, mode: str, thread_id: str = "") -> None:
    model = ModelConfig(label="primary", api_url=api_url, model_name="scripted", max_retries=0)
    orch = Orchestrator([make_transfer(Path(effects), kill=mode == "approve")],
                        confirm_required=["transfer"], db=db, models=[model])
    if mode == "run":
        print(orch.run_sync("transfer 100").thread_id)
    else:
        orch.resume_sync(thread_id, confirmed=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
