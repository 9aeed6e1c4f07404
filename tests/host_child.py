"""Resume a paused thread in a fresh OS process, against one kind of server.

Usage: python host_child.py DB THREAD_ID API_URL HOST_TYPE STREAM
The key comes from SCRIPTED_KEY. STREAM "1" streams tokens (`stream_resume`). Prints the final
response as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from graphloop.graph import Finished, ModelConfig, Orchestrator

from conftest import TOOLS

db, thread_id, api_url, host_type, stream = sys.argv[1:6]
model = ModelConfig.coerce({"label": "child", "api_url": api_url, "model_name": "scripted", "host_type": host_type,
                            "api_key": os.environ["SCRIPTED_KEY"], "max_retries": 0})
orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])


async def resumed() -> str:
    async for event in orch.stream_resume(thread_id, tokens=stream == "1", confirmed=True):
        if isinstance(event, Finished):
            return event.result.response
    raise AssertionError("no Finished event")


print(json.dumps(asyncio.run(resumed())))
