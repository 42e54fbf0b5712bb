"""A conversation as token ids plus a mask of the tokens the model wrote (the loss's tokens).

The chat template is rendered message by message; each message's text is the difference
between renderings of successive prefixes, so the ids are what the policy saw at inference
(`TransformersPolicy` renders the same messages with the same template). Assistant content
and its end-of-turn marker get mask 1; system, user, tool observations and the template's
headers get 0. SFT uses the mask as its label mask, GRPO as `env_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thinkfl.agent.trajectory import Message
from thinkfl.models.backends import chat_messages


@dataclass
class Tokenized:
    input_ids: list[int]
    mask: list[int]  # 1: written by the model, trained on
    prompt_length: int  # ids of the first question, up to the first assistant header

    @property
    def completion_ids(self) -> list[int]:
        return self.input_ids[self.prompt_length :]

    @property
    def completion_mask(self) -> list[int]:
        return self.mask[self.prompt_length :]


def _render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    return str(
        tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    )


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def tokenize_conversation(tokenizer: Any, messages: list[Message]) -> Tokenized:
    """Token ids and loss mask of a whole trajectory; the prompt ends at the first reply."""
    chat = chat_messages(messages, native_tools=False)
    ids: list[int] = []
    mask: list[int] = []
    prompt_length = 0
    rendered = ""
    for index, message in enumerate(chat):
        if message["role"] == "assistant":
            header = _render(tokenizer, chat[:index], generation_prompt=True)
            header_ids = _ids(tokenizer, header[len(rendered) :])
            ids += header_ids
            mask += [0] * len(header_ids)
            if not prompt_length:
                prompt_length = len(ids)
            rendered = header
        full = _render(tokenizer, chat[: index + 1], generation_prompt=False)
        if not full.startswith(rendered):
            raise ValueError(
                "the chat template renders a prefix differently once more messages follow; "
                "per-token masks need a template that only appends"
            )
        piece = _ids(tokenizer, full[len(rendered) :])
        ids += piece
        mask += [1 if message["role"] == "assistant" else 0] * len(piece)
        rendered = full
    return Tokenized(ids, mask, prompt_length or len(ids))
