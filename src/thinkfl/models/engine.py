"""A llama.cpp engine for constrained replies: prefix reuse, batched forced tokens, token
log-probs, and LoRA adapters swapped into the running model.

Inference (`LlamaCppPolicy`) and GRPO rollouts use it. Per reply it evaluates only the part
of the prompt that differs from what its KV cache holds, then walks the reply's choices
(thinkfl.models.constrained): runs of forced tokens are evaluated as one batch, and the
model is sampled only where the choices branch. For rollouts it also returns each written
token's log-probability under the model's own (temperature-scaled, unconstrained)
distribution, the quantity the trainer computes, so the trainer can correct for the two
engines' differences (importance sampling).
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thinkfl.agent.grammar import ReplyChoices
from thinkfl.files import atomic_path
from thinkfl.models.constrained import ChoiceWalker

PROMPT_CACHE_FILES = 8  # saved prompt prefixes kept (one per model, adapter and prompt)


class EngineError(Exception):
    """The engine cannot do what was asked (context full, adapter not loadable)."""


@dataclass
class Generation:
    text: str
    tokens: list[int]  # the reply's tokens, its end-of-turn token last
    logprobs: list[float] | None  # per token, when asked for
    prompt_tokens: int
    evaluated_prompt_tokens: int  # the part of the prompt not reused from the cache
    sampled: int  # tokens the model chose (the others were forced by the choices)
    prompt_seconds: float = 0.0  # bringing the context to the prompt (prompt processing)
    generation_seconds: float = 0.0  # writing the reply


def log_softmax_at(logits: np.ndarray, token: int, temperature: float) -> float:
    """log p(token) under softmax(logits / temperature); temperature 0 counts as 1."""
    scaled = logits.astype(np.float64) / (temperature if temperature > 0 else 1.0)
    top = scaled.max()
    return float(scaled[token] - top - math.log(np.exp(scaled - top).sum()))


def _close_if_alive(engine: weakref.ref[LlamaEngine]) -> None:
    alive = engine()
    if alive is not None:
        alive.close()


class LlamaEngine:
    """One llama.cpp model and context; one reply at a time (a lock guards it)."""

    def __init__(
        self,
        model_path: Path | str,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        seed: int = 0,
        n_gpu_layers: int = 0,
        lora_path: Path | str | None = None,
        prompt_cache: Path | None = None,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from thinkfl.models.backends import quiet_llama_cpp

        quiet_llama_cpp()
        self.path = Path(model_path)
        try:
            self.llm = Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_threads=n_threads or os.cpu_count(),
                seed=seed,
                n_gpu_layers=n_gpu_layers,
                verbose=False,
            )
        except ValueError as error:  # llama.cpp's one word for a file it cannot load
            raise EngineError(
                f"{self.path}: llama.cpp cannot load this model (a damaged, truncated or "
                f"unsupported GGUF): {error}"
            ) from error
        model = self.llm._model
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError(f"{self.path}: the GGUF carries no chat template")
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(self.llm.token_eos()),
            bos_token=model.token_get_text(self.llm.token_bos()),
        )
        self.end_of_turn = self.llm.token_eos()
        self.n_vocab = self.llm.n_vocab()
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self._adapter: Any = None
        self.adapter_path: Path | None = None
        self.closed = False
        self.prompt_cache = prompt_cache
        if lora_path is not None:
            self.set_adapter(lora_path)
        # close before the interpreter tears llama_cpp's module down (else its own
        # destructor prints a traceback at exit)
        atexit.register(_close_if_alive, weakref.ref(self))

    # --- text and tokens ---------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        """The chat template rendered for `messages`, ending with the assistant header."""
        return self.tokenize(self.formatter(messages=messages).prompt)

    # --- adapters ----------------------------------------------------------------------------
    def set_adapter(self, path: Path | str | None, scale: float = 1.0) -> None:
        """Apply the GGUF LoRA adapter at `path` (None: the bare base) to the running model;
        the cache is dropped, since it was computed with the old weights."""
        import llama_cpp

        ctx = self.llm._ctx.ctx
        old = self._adapter
        if path is None:
            llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
            self._adapter, self.adapter_path = None, None
        else:
            adapter = llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
            if not adapter:
                raise EngineError(f"{path}: not a LoRA adapter for {self.path.name}")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(scale)
            if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales):
                llama_cpp.llama_adapter_lora_free(adapter)
                raise EngineError(f"{path}: llama.cpp refused to apply the adapter")
            self._adapter, self.adapter_path = adapter, Path(path)
        if old is not None:
            llama_cpp.llama_adapter_lora_free(old)
        self.reset()

    def reset(self) -> None:
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self.llm.n_tokens = 0

    # --- evaluation --------------------------------------------------------------------------
    def _decode(self, tokens: list[int], every_row: bool) -> np.ndarray:
        """Evaluate `tokens` after the cache; rows of logits after each one (or only the last)."""
        llm = self.llm
        if llm.n_tokens + len(tokens) > llm.n_ctx():
            raise EngineError(
                f"the dialogue needs {llm.n_tokens + len(tokens)} tokens, more than the "
                f"context of {llm.n_ctx()}: give the model a larger n_ctx"
            )
        rows: list[np.ndarray] = []
        for start in range(0, len(tokens), llm.n_batch):
            chunk = tokens[start : start + llm.n_batch]
            n_past = llm.n_tokens
            llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=every_row)
            llm._ctx.decode(llm._batch)
            count = len(chunk) if every_row else 1
            flat = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(count * self.n_vocab,))
            rows.append(flat.reshape(count, self.n_vocab).copy())
            llm.input_ids[n_past : n_past + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
        return np.concatenate(rows) if every_row else rows[-1][-1:]

    # --- a prompt prefix kept on disk (the system prompt, for one-shot processes) ----------
    def _identity(self, path: Path | None) -> str:
        if path is None:
            return "none"
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def _prefix_file(self, tokens: list[int]) -> Path:
        assert self.prompt_cache is not None
        key = hashlib.sha256(
            json.dumps(
                [self._identity(self.path), self._identity(self.adapter_path), tokens]
            ).encode()
        ).hexdigest()[:32]
        return self.prompt_cache / f"{key}.state"

    def _restore_or_save_prefix(self, prefix: list[int]) -> int:
        """On an empty cache, load the state after `prefix` from disk, or compute and save it
        (a few MB; the oldest files beyond `PROMPT_CACHE_FILES` are removed). Returns the
        tokens evaluated."""
        import llama_cpp

        if self.prompt_cache is None or self.llm.n_tokens or len(prefix) < 2:
            return 0
        path = self._prefix_file(prefix)
        ctx = self.llm._ctx.ctx
        if path.is_file():
            buffer = (llama_cpp.llama_token * len(prefix))()
            count = ctypes.c_size_t()
            loaded = llama_cpp.llama_state_load_file(
                ctx, str(path).encode(), buffer, len(prefix), ctypes.byref(count)
            )
            if loaded and list(buffer[: count.value]) == prefix:
                self.llm.input_ids[: len(prefix)] = prefix
                self.llm.n_tokens = len(prefix)
                return 0
            self.reset()  # unreadable or stale: compute it again
        self._decode(prefix, every_row=False)
        self.prompt_cache.mkdir(parents=True, exist_ok=True)
        tokens = (llama_cpp.llama_token * len(prefix))(*prefix)
        with atomic_path(path) as partial:
            llama_cpp.llama_state_save_file(ctx, str(partial).encode(), tokens, len(prefix))
        for old in sorted(self.prompt_cache.glob("*.state"), key=lambda p: p.stat().st_mtime)[
            :-PROMPT_CACHE_FILES
        ]:
            old.unlink(missing_ok=True)
        return len(prefix)

    def _load_prompt(self, prompt: list[int], keep_on_disk: int = 0) -> tuple[np.ndarray, int]:
        """Bring the cache to `prompt`, reusing its longest common prefix (at least the last
        token is evaluated, for its logits); returns those logits and the tokens evaluated.
        `keep_on_disk`: the length of a prefix worth keeping across processes."""
        computed = 0
        if keep_on_disk < len(prompt):
            computed = self._restore_or_save_prefix(prompt[:keep_on_disk])
        cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
        keep = 0
        for ours, theirs in zip(cached, prompt, strict=False):
            if ours != theirs:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)
        self.llm.n_tokens = keep
        return self._decode(prompt[keep:], every_row=False)[-1], computed + len(prompt) - keep

    def _pick(self, logits: np.ndarray, allowed: list[int], temperature: float) -> int:
        values = logits[allowed].astype(np.float64)
        if temperature <= 0:
            return allowed[int(values.argmax())]
        values = (values - values.max()) / temperature
        weights = np.exp(values)
        return allowed[int(self.rng.choice(len(allowed), p=weights / weights.sum()))]

    def generate(
        self,
        prompt: list[int],
        choices: ReplyChoices,
        temperature: float = 0.0,
        logprobs: bool = False,
        keep_on_disk: int = 0,
    ) -> Generation:
        """One reply under `choices` after `prompt` (module doc). `keep_on_disk`: the length
        of the prompt's prefix to keep in `prompt_cache` (the system prompt)."""
        with self.lock:
            return self._generate(prompt, choices, temperature, logprobs, keep_on_disk)

    def _generate(
        self,
        prompt: list[int],
        choices: ReplyChoices,
        temperature: float,
        logprobs: bool,
        keep_on_disk: int,
    ) -> Generation:
        began = time.perf_counter()
        last, evaluated = self._load_prompt(prompt, keep_on_disk)
        loaded = time.perf_counter()
        walker = ChoiceWalker(choices, self.tokenize)
        written: list[int] = []
        scores: list[float] = []
        pending: list[int] = []
        sampled = 0

        def flush() -> np.ndarray:
            rows = self._decode(pending, every_row=logprobs)
            if logprobs:
                before = [last, *rows[:-1]]
                scores.extend(
                    log_softmax_at(row, token, temperature)
                    for row, token in zip(before, pending, strict=True)
                )
            pending.clear()
            last_row: np.ndarray = rows[-1]
            return last_row

        while not walker.done:
            allowed = walker.allowed()
            if len(allowed) == 1:
                token = allowed[0]
            else:
                if pending:
                    last = flush()
                token = self._pick(last, allowed, temperature)
                sampled += 1
            walker.advance(token)
            pending.append(token)
            written.append(token)
        written.append(self.end_of_turn)
        pending.append(self.end_of_turn)
        if logprobs:
            flush()  # the log-probs of the last run; otherwise the next prompt evaluates it
        return Generation(
            text=walker.text,
            tokens=written,
            logprobs=scores if logprobs else None,
            prompt_tokens=len(prompt),
            evaluated_prompt_tokens=evaluated,
            sampled=sampled,
            prompt_seconds=loaded - began,
            generation_seconds=time.perf_counter() - loaded,
        )

    def close(self) -> None:
        import llama_cpp

        if self.closed:
            return
        self.closed = True
        if self._adapter is not None:
            llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        self.llm.close()
