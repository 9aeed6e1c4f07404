"""Resume a paused thread in a fresh OS process (used by the persistence tests).

Usage: python resume_child.py DB THREAD_ID API_URL DECISIONS_JSON
Prints the OrchestratorResult as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from graphloop.graph import ModelConfig, Orchestrator

from conftest import TOOLS

db, thread_id, api_url, decisions = sys.argv[1:5]
model = ModelConfig(label="child", api_url=api_url, model_name="scripted", api_key="sk-child",
                    max_retries=0)
orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
result = orch.resume_sync(thread_id, decisions=json.loads(decisions))
print(json.dumps(dataclasses.asdict(result)))
