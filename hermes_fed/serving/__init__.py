"""Serving at the node (DESIGN.md §10): the OpenAI wire, traffic plans and routing by a
keyed hash, session assembly, ``hermes-fed model serve`` (base model + LoRA adapters
behind the chat-completions API), and the control of real engines (vLLM's CPU build,
:mod:`.vllm_process`) as child processes.

Importing this package is cheap: the model server (torch, transformers) loads only when
started.
"""

from .assembly import Reservation, SessionState, TurnDigester, assemble_trajectories
from .plan import BASE_VERSION, PLAN_STREAM, PlanArm, Route, TrafficPlan
from .wire import ChatRequest, Completion, StreamAssembler, WireError

__all__ = [
    "BASE_VERSION",
    "PLAN_STREAM",
    "ChatRequest",
    "Completion",
    "PlanArm",
    "Reservation",
    "Route",
    "SessionState",
    "StreamAssembler",
    "TrafficPlan",
    "TurnDigester",
    "WireError",
    "assemble_trajectories",
]
