"""What a policy is: something that answers a conversation with text and/or tool calls."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from thinkfl.agent.protocol import DialogueStyle, ToolCall
from thinkfl.agent.trajectory import Message, Step
from thinkfl.telemetry import FailureCase
from thinkfl.tools import ToolSpec


class Turn(BaseModel):
    """What the loop shows a policy: the conversation and, for programs, the structured steps."""

    case: FailureCase
    messages: list[Message]
    steps: list[Step]
    tools: list[ToolSpec]
    temperature: float = 0.0
    max_tokens: int = 512
    dialogue: DialogueStyle = DialogueStyle.FULL  # compact: calls leave the time out


class Reply(BaseModel):
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)  # native tool calling, if any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_ids: list[int] | None = None  # the reply's tokens, where the backend reports them
    logprobs: list[float] | None = None  # per token of `token_ids`, when asked for
    prompt_seconds: float = 0.0  # of the reply's time, reading the prompt (where measured)


class Policy(Protocol):
    """A backend (LLM endpoint, local model) or a program (the expert)."""

    name: str
    native_tools: bool  # True: pass tools as the OpenAI `tools` field and read tool_calls

    def respond(self, turn: Turn) -> Reply: ...
