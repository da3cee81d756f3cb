"""Serving at the node (DESIGN.md §10): the OpenAI wire, traffic plans and routing by a
keyed hash, session assembly, and ``hermes-fed model serve`` (base model + LoRA adapters
behind the chat-completions API).

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
