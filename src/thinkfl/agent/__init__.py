"""The agent: tool-call protocol, the Recursion-of-Thought loop, trajectories, policies."""

from thinkfl.agent.expert import ExpertPolicy, ExpertSettings
from thinkfl.agent.loop import Budget, TurnDone, run_case
from thinkfl.agent.policy import Policy, Reply, Turn
from thinkfl.agent.protocol import ToolCall, parse_tool_calls
from thinkfl.agent.trajectory import Finish, Message, Step, Trajectory, load_jsonl, save_jsonl

__all__ = [
    "Budget",
    "ExpertPolicy",
    "ExpertSettings",
    "Finish",
    "Message",
    "Policy",
    "Reply",
    "Step",
    "ToolCall",
    "Trajectory",
    "Turn",
    "TurnDone",
    "load_jsonl",
    "parse_tool_calls",
    "run_case",
    "save_jsonl",
]
