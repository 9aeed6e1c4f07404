"""A second process for the one-driver tests: runs one task on a thread and prints how it
ended, as one JSON line (`{"answer": ...}` or `{"error": "<class name>", "message": ...}`)."""

from __future__ import annotations

import json
import sys

from graphloop.graph import GraphloopError, ModelConfig, Orchestrator

from conftest import TOOLS


def main(db: str, api_url: str, thread_id: str, task: str, wait: float) -> None:
    model = ModelConfig(label="primary", api_url=api_url, model_name="scripted", max_retries=0)
    orch = Orchestrator(TOOLS, db=db, models=[model])
    try:
        result = orch.run_sync(task, thread_id=thread_id, wait=wait)
    except GraphloopError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return
    print(json.dumps({"answer": result.response}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
