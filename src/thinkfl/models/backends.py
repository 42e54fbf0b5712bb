"""LLM backends behind the Policy interface: in-process llama.cpp, OpenAI-compatible HTTP,
and transformers for HF model directories (imported lazily; each is an optional extra).
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from thinkfl.agent.grammar import ReplyChoices, turn_choices
from thinkfl.agent.policy import Reply, Turn
from thinkfl.agent.protocol import CLOSE, OPEN, DialogueStyle, ToolCall
from thinkfl.agent.trajectory import Message
from thinkfl.tools import ToolSpec


def chat_messages(messages: list[Message], native_tools: bool) -> list[dict[str, Any]]:
    """Messages as chat APIs take them. Without native tools, tool output is a user turn."""
    rendered: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool" and native_tools:
            rendered.append(
                {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id}
            )
        elif message.tool_calls and native_tools:
            call: dict[str, Any] = {"role": "assistant", "content": message.content}
            rendered.append({**call, "tool_calls": message.tool_calls})
        else:
            role = "user" if message.role == "tool" else message.role
            rendered.append({"role": role, "content": message.content})
    return rendered


def close_open_call(text: str) -> str:
    """Generation stops at the closing tag (one call per reply); put the tag back."""
    if OPEN in text and text.rfind(OPEN) > text.rfind(CLOSE):
        return text + CLOSE
    return text


_QUIET: Any = None  # the no-op log callback, kept alive while llama.cpp may call it


def quiet_llama_cpp() -> None:
    """Silence llama.cpp's own log lines (LoRA loading, buffer fallbacks) that `verbose=False`
    leaves on stderr; `THINKFL_VERBOSE=1` keeps them."""
    global _QUIET
    if _QUIET is not None or os.environ.get("THINKFL_VERBOSE"):
        return
    import llama_cpp

    _QUIET = llama_cpp.llama_log_callback(lambda _level, _text, _data: None)
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())


def quiet_transformers() -> None:
    """Silence transformers' warnings and loading bars (`THINKFL_VERBOSE=1` keeps them)."""
    if os.environ.get("THINKFL_VERBOSE"):
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def turn_choices_of(turn: Turn) -> ReplyChoices:
    """The reply choices of `turn`: its tools, naming what its steps have shown."""
    case = turn.case
    # a compact dialogue's calls leave the time out and name spans by their handles
    compact = turn.dialogue == DialogueStyle.COMPACT
    time = None if compact else case.entry_start.isoformat()
    return turn_choices(
        turn.tools, turn.steps, case.entry_span_id, case.entry_service, time, handles=compact
    )


class LlamaCppPolicy:
    """A GGUF model run in-process by llama.cpp (CPU by default). One call at a time.

    Constrained (the default): each reply is decoded under the turn's choices by the
    `LlamaEngine` (a new call naming only shown identifiers). Unconstrained: free text,
    parsed leniently by the loop.
    """

    native_tools = False

    def __init__(
        self,
        model_path: Path | str,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        seed: int = 0,
        n_gpu_layers: int = 0,
        lora_path: Path | str | None = None,
        constrained: bool = True,
        prompt_cache: Path | None = None,
    ) -> None:
        from thinkfl.models.engine import LlamaEngine

        self.engine = LlamaEngine(
            model_path, n_ctx, n_threads, seed, n_gpu_layers, lora_path, prompt_cache
        )
        self.path = Path(model_path)
        self.name = f"llama.cpp:{self.path.name}"
        if lora_path is not None:
            self.name += f"+{Path(lora_path).name}"
        self._llm = self.engine.llm
        self.constrained = constrained
        self.logprobs = False  # rollouts ask for the written tokens' log-probs

    def _system_prefix(self, messages: list[dict[str, Any]], prompt: list[int]) -> int:
        """How many tokens of `prompt` the system message alone renders to (the part every
        case shares), 0 without a prompt cache or a system message."""
        if self.engine.prompt_cache is None or not messages or messages[0]["role"] != "system":
            return 0
        alone = self.engine.prompt_tokens(messages[:1])
        length = 0
        for ours, theirs in zip(alone, prompt, strict=False):
            if ours != theirs:
                break
            length += 1
        return length

    def respond(self, turn: Turn) -> Reply:
        messages = chat_messages(turn.messages, native_tools=False)
        if self.constrained:
            prompt = self.engine.prompt_tokens(messages)
            generation = self.engine.generate(
                prompt,
                turn_choices_of(turn),
                turn.temperature,
                logprobs=self.logprobs,
                keep_on_disk=self._system_prefix(messages, prompt),
            )
            return Reply(
                text=generation.text,
                prompt_tokens=generation.prompt_tokens,
                completion_tokens=len(generation.tokens),
                token_ids=generation.tokens,
                logprobs=generation.logprobs,
                prompt_seconds=generation.prompt_seconds,
            )
        with self.engine.lock:
            out = self._llm.create_chat_completion(
                messages=messages,
                temperature=turn.temperature,
                max_tokens=turn.max_tokens,
                stop=[CLOSE],
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Reply(
            text=close_open_call(choice["message"].get("content") or ""),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )


class EndpointError(Exception):
    """An OpenAI-compatible endpoint that failed after its retries."""


def openai_tools(specs: list[ToolSpec]) -> list[dict[str, Any]]:
    """The `tools` field, without our own schema marks (`x-identifier`)."""
    return [
        {
            "type": "function",
            "function": {
                "name": s.name,
                "description": s.description,
                "parameters": {
                    **s.parameters,
                    "properties": {
                        key: {k: v for k, v in value.items() if not k.startswith("x-")}
                        for key, value in s.parameters["properties"].items()
                    },
                },
            },
        }
        for s in specs
    ]


class OpenAIPolicy:
    """Any OpenAI-compatible chat endpoint: vLLM, Ollama, llama.cpp server, a provider.

    Thread-safe (one pooled HTTP client), so an evaluation may run cases concurrently.
    Retries connection errors, timeouts, 429 and 5xx with exponential backoff and jitter.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
        native_tools: bool = False,
        max_connections: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}"
        self.native_tools = native_tools
        self.retries = retries
        key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self._client = httpx.Client(
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=max_connections),
        )

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(url, json=payload)
                if response.status_code < 400:
                    answer: dict[str, Any] = response.json()
                    return answer
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # a client error will not get better by retrying
            except (httpx.TransportError, json.JSONDecodeError) as error:
                last = f"{type(error).__name__}: {error}"
            if attempt < self.retries:
                time.sleep(min(8.0, 0.5 * 2**attempt) * (0.5 + random.random()))
        raise EndpointError(f"{url} failed after {self.retries + 1} tries ({last})")

    def respond(self, turn: Turn) -> Reply:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(turn.messages, self.native_tools),
            "temperature": turn.temperature,
            "max_tokens": turn.max_tokens,
        }
        if self.native_tools:
            payload["tools"] = openai_tools(turn.tools)
        else:
            payload["stop"] = [CLOSE]
        body = self._post(payload)
        message = body["choices"][0]["message"]
        calls = []
        for raw in message.get("tool_calls") or []:
            function = raw.get("function", {})
            arguments = function.get("arguments") or "{}"
            try:
                parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
            except json.JSONDecodeError:
                parsed = {}
            calls.append(
                ToolCall(
                    name=function.get("name", ""),
                    arguments=parsed if isinstance(parsed, dict) else {},
                    id=raw.get("id"),
                )
            )
        usage = body.get("usage") or {}
        text = message.get("content") or ""
        return Reply(
            text=text if self.native_tools else close_open_call(text),
            tool_calls=calls,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )

    def close(self) -> None:
        self._client.close()


def _as_list(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)


class TransformersPolicy:
    """A Hugging Face model run with transformers: a model directory, a PEFT adapter directory
    (its base is loaded first), or a live model (the one training is updating)."""

    native_tools = False

    def __init__(self, model: Any, tokenizer: Any, name: str, constrained: bool = True) -> None:
        import torch  # optional dependency, imported only when used

        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.constrained = constrained
        self._torch = torch
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        device: str = "cpu",
        dtype: str = "float32",
        constrained: bool = True,
    ) -> TransformersPolicy:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        path = Path(model_dir)
        adapter_config = path / "adapter_config.json"
        if adapter_config.is_file():
            from peft import PeftModel

            base = json.loads(adapter_config.read_text())["base_model_name_or_path"]
            model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
            model = PeftModel.from_pretrained(model, path)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model.to(device).eval()
        return cls(model, tokenizer, f"hf:{path.name}", constrained)

    def respond(self, turn: Turn) -> Reply:
        encoded = self.tokenizer.apply_chat_template(
            chat_messages(turn.messages, native_tools=False),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(self.model.device)
        sampling = (
            {"do_sample": True, "temperature": turn.temperature}
            if turn.temperature > 0
            else {"do_sample": False}
        )
        prompt_length = encoded["input_ids"].shape[1]
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        ends |= set(_as_list(self.model.generation_config.eos_token_id))
        ends.discard(None)
        constraint: dict[str, Any] = {"stop_strings": [CLOSE], "tokenizer": self.tokenizer}
        if self.constrained:
            from transformers import LogitsProcessorList

            from thinkfl.models.constrained import ChoiceLogitsProcessor

            processor = ChoiceLogitsProcessor(
                turn_choices_of(turn),
                lambda text: self.tokenizer.encode(text, add_special_tokens=False),
                prompt_length,
                sorted(ends),
            )
            constraint = {"logits_processor": LogitsProcessorList([processor])}
        with self._lock, self._torch.no_grad():
            output = self.model.generate(
                **encoded,
                use_cache=True,
                max_new_tokens=turn.max_tokens,
                pad_token_id=self.tokenizer.eos_token_id,
                **constraint,
                **sampling,
            )
        new_tokens = output[0][prompt_length:].tolist()
        # Keep special tokens the model wrote (Qwen's <tool_call> is one) so the text
        # re-tokenizes to what was generated (training re-tokenizes it); drop only the
        # end-of-turn / padding the chat template adds back.
        while new_tokens and new_tokens[-1] in ends:
            new_tokens.pop()
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=False)
        return Reply(
            text=close_open_call(text),
            prompt_tokens=int(prompt_length),
            completion_tokens=int(output.shape[1] - prompt_length),
        )
