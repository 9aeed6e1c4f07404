"""Resume a paused thread in a fresh OS process configured differently from the one that ran it.

Usage: python gate_child.py DB THREAD_ID API_URL SETUP
SETUP: `no-gate` (confirm_required=[]), `no-tool` (delete_file not loaded), `other-roles`
(roles that do not know the thread's role). Approves every call shown; prints JSON: the error
(`{"error": type, "message": ...}`) or the result (`{"response", "paused", "tools"}`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from graphloop.graph import GraphloopError, ModelConfig, Orchestrator

from conftest import TOOLS, add, get_weather

db, thread_id, api_url, setup = sys.argv[1:5]
model = ModelConfig(label="child", api_url=api_url, model_name="scripted", max_retries=0)
options: dict[str, Any] = {
    "no-gate": {"tools": TOOLS, "confirm_required": []},
    "no-tool": {"tools": [add, get_weather], "confirm_required": []},
    "other-roles": {"tools": TOOLS, "confirm_required": [], "roles": {"user": ["add"]}},
}[setup]
orch = Orchestrator(options.pop("tools"), db=db, models=[model], **options)
try:
    result = orch.resume_sync(thread_id, confirmed=True)
except GraphloopError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"response": result.response, "paused": result.checkpoint is not None,
                      "tools": [c["tool"] for c in result.tool_calls]}))
