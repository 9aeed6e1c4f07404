"""graphloop's public face: the graph builder, the Orchestrator, the scripted test server."""

from graphloop.checkpointers import (
    ConfigurationError,
    GraphloopError,
    InvalidDecisionError,
    ModelCallError,
    NotPausedError,
    ResumeError,
    RunError,
    ThreadPausedError,
    UnknownThreadError,
    memory_saver,
    open_async_saver,
    open_saver,
)
from graphloop.graph.builder import LoopGraph, build_graph, compile_graph
from graphloop.graph.orchestrator import (
    Orchestrator,
    OrchestratorResult,
    PendingConfirmation,
    ToolCallRecord,
)
from graphloop.nodes import (
    Decision,
    HITLRequest,
    LoopContext,
    LoopState,
    ModelConfig,
    PendingCall,
    Policy,
    ToolBox,
)

__all__ = [
    "ConfigurationError",
    "Decision",
    "GraphloopError",
    "HITLRequest",
    "InvalidDecisionError",
    "LoopContext",
    "LoopGraph",
    "LoopState",
    "ModelCallError",
    "ModelConfig",
    "NotPausedError",
    "Orchestrator",
    "OrchestratorResult",
    "PendingConfirmation",
    "PendingCall",
    "Policy",
    "ResumeError",
    "RunError",
    "ThreadPausedError",
    "ToolCallRecord",
    "ToolBox",
    "UnknownThreadError",
    "build_graph",
    "compile_graph",
    "memory_saver",
    "open_async_saver",
    "open_saver",
]
