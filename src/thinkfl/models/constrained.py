"""Token-level decoding under `ReplyChoices` (thinkfl.agent.grammar).

Each choice's options are tokenized and put in a trie; the walker says which tokens may come
next and advances on the one taken. Where only one token may come next it is forced and
needs no sampling: the llama.cpp engine evaluates runs of forced tokens as one batch, which
is why a constrained call costs a few sampling steps, not one per token. The same walker
backs a transformers logits processor, so both backends decode the same language.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkfl.agent.grammar import ReplyChoices

Tokenize = Callable[[str], list[int]]


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    option: str | None = None  # set on the node that ends an option


def _trie(options: Sequence[str], tokenize: Tokenize) -> _Node:
    root = _Node()
    for option in options:
        tokens = tokenize(option)
        if not tokens:
            raise ValueError(f"option {option!r} tokenizes to nothing")
        node = root
        for token in tokens:
            node = node.children.setdefault(token, _Node())
        node.option = option
    _check_prefix_free(root)
    return root


def _check_prefix_free(node: _Node) -> None:
    """An option whose tokens start another option would make the walker guess where it ends."""
    todo = [node]
    while todo:
        current = todo.pop()
        if current.option is not None and current.children:
            raise ValueError(f"option {current.option!r} is a token prefix of another option")
        todo.extend(current.children.values())


class ChoiceWalker:
    """Where a decoder stands in a reply: the options chosen so far and the trie node of the
    option being written. `allowed()` is empty once the reply is complete."""

    def __init__(self, choices: ReplyChoices, tokenize: Tokenize) -> None:
        self.choices, self.tokenize = choices, tokenize
        self.chosen: list[str] = []
        self._tries: dict[tuple[str, ...], _Node] = {}
        self._node: _Node | None = self._next_trie()

    def _next_trie(self) -> _Node | None:
        options = self.choices.options(self.chosen)
        if not options:
            return None
        if options not in self._tries:
            self._tries[options] = _trie(options, self.tokenize)
        return self._tries[options]

    @property
    def done(self) -> bool:
        return self._node is None

    def allowed(self) -> list[int]:
        return [] if self._node is None else list(self._node.children)

    def advance(self, token: int) -> None:
        if self._node is None or token not in self._node.children:
            raise ValueError(f"token {token} is not allowed here")
        self._node = self._node.children[token]
        if self._node.option is not None:
            self.chosen.append(self._node.option)
            self._node = self._next_trie()

    @property
    def text(self) -> str:
        return "".join(self.chosen)


class ChoiceLogitsProcessor:
    """A transformers logits processor keeping generation inside `choices`; after the reply
    is complete only the end-of-turn tokens may follow. Batch size 1."""

    def __init__(
        self, choices: ReplyChoices, tokenize: Tokenize, prompt_length: int, end_ids: list[int]
    ) -> None:
        self.walker = ChoiceWalker(choices, tokenize)
        self.prompt_length, self.end_ids = prompt_length, end_ids
        self._consumed = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[0, self.prompt_length :].tolist()
        for token in generated[self._consumed :]:
            if not self.walker.done:
                self.walker.advance(int(token))
        self._consumed = len(generated)
        allowed = self.walker.allowed() or self.end_ids
        mask = torch.full_like(scores, float("-inf"))
        mask[:, allowed] = 0.0
        return scores + mask
