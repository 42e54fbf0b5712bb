"""A conversation as token ids plus a mask of the tokens the model wrote (the loss's tokens).

The chat template is rendered message by message; each message's text is the difference
between renderings of successive prefixes, so the ids are what the policy saw at inference
(`TransformersPolicy` renders the same messages with the same template). Assistant content
and its end-of-turn marker get mask 1; system, user, tool observations and the template's
headers get 0. SFT uses the mask as its label mask, GRPO as `env_mask`.

A rollout engine that reports the tokens it wrote (and their log-probs) has them used as
they are for its replies: the trainer then scores exactly the sampled tokens, and the
engine's log-probs line up with them for the importance-sampling correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from thinkfl.agent.trajectory import Message
from thinkfl.models.backends import chat_messages


@dataclass
class Written:
    """A reply's tokens as the engine wrote them (its end-of-turn token last) and, when the
    engine reported them, their log-probs."""

    tokens: list[int]
    logprobs: list[float] | None = None


@dataclass
class Tokenized:
    input_ids: list[int]
    mask: list[int]  # 1: written by the model, trained on
    prompt_length: int  # ids of the first question, up to the first assistant header
    logprobs: list[float] | None = None  # per id: the engine's, NaN where it has none

    @property
    def completion_logprobs(self) -> list[float] | None:
        return None if self.logprobs is None else self.logprobs[self.prompt_length :]

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


def _reply_piece(
    tokenizer: Any, piece: str, content: str, written: Written | None
) -> tuple[list[int], list[float]]:
    """The ids of an assistant turn's text (`content`, end-of-turn, the template's tail) and
    the engine's log-probs for them: the engine's own tokens where it reported them and the
    rendering starts with exactly what it wrote, else the text tokenized (log-probs NaN)."""
    end = tokenizer.decode(written.tokens[-1:]) if written and written.tokens else ""
    if written is None or not end or not piece.startswith(content + end):
        ids = _ids(tokenizer, piece)
        return ids, [math.nan] * len(ids)
    tail = _ids(tokenizer, piece[len(content) + len(end) :])
    scores = written.logprobs or [math.nan] * len(written.tokens)
    return [*written.tokens, *tail], [*scores, *[math.nan] * len(tail)]


def tokenize_conversation(
    tokenizer: Any, messages: list[Message], written: list[Written | None] | None = None
) -> Tokenized:
    """Token ids and loss mask of a whole trajectory; the prompt ends at the first reply.
    `written`: per assistant message in order, what the engine wrote (module doc)."""
    chat = chat_messages(messages, native_tools=False)
    replies = iter(written or [])
    ids: list[int] = []
    mask: list[int] = []
    scores: list[float] = []
    prompt_length = 0
    rendered = ""
    for index, message in enumerate(chat):
        if message["role"] == "assistant":
            header = _render(tokenizer, chat[:index], generation_prompt=True)
            header_ids = _ids(tokenizer, header[len(rendered) :])
            ids += header_ids
            mask += [0] * len(header_ids)
            scores += [math.nan] * len(header_ids)
            if not prompt_length:
                prompt_length = len(ids)
            rendered = header
        full = _render(tokenizer, chat[: index + 1], generation_prompt=False)
        if not full.startswith(rendered):
            raise ValueError(
                "the chat template renders a prefix differently once more messages follow; "
                "per-token masks need a template that only appends"
            )
        text = full[len(rendered) :]
        if message["role"] == "assistant":
            piece, piece_scores = _reply_piece(
                tokenizer, text, message["content"], next(replies, None)
            )
        else:
            piece = _ids(tokenizer, text)
            piece_scores = [math.nan] * len(piece)
        ids += piece
        scores += piece_scores
        mask += [1 if message["role"] == "assistant" else 0] * len(piece)
        rendered = full
    return Tokenized(ids, mask, prompt_length or len(ids), scores if written is not None else None)
