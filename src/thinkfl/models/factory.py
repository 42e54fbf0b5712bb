"""Build a policy from user-facing choices (CLI, service, evaluation)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from thinkfl.agent.expert import ExpertPolicy
from thinkfl.agent.policy import Policy
from thinkfl.agent.protocol import DialogueStyle
from thinkfl.models.registry import (
    DEFAULT_MODEL,
    NO_ADAPTER,
    adapter_dialogue,
    cache_dir,
    resolve_adapter,
    resolve_gguf,
)


class PolicyKind(StrEnum):
    EXPERT = "expert"
    LOCAL = "local"
    OPENAI = "openai"
    HF = "hf"


class PolicyError(Exception):
    """Options that do not make a policy; the message says which and why."""


HF_MODEL_FILES = ("config.json", "adapter_config.json")  # a model, or a PEFT adapter on one


def check_hf_model_dir(path: Path) -> Path:
    """`path` if it holds a Hugging Face model or PEFT adapter; a PolicyError saying why not."""
    fix = (
        "give the folder `save_pretrained` wrote (config.json and its weights), e.g. "
        "`thinkfl models export-hf`'s output, or use --policy local with a .gguf file"
    )
    if not path.is_dir():
        raise PolicyError(f"{path}: not a directory. Fix: {fix}")
    if not any((path / name).is_file() for name in HF_MODEL_FILES):
        raise PolicyError(
            f"{path}: no {' or '.join(HF_MODEL_FILES)}, so not a Hugging Face model "
            f"directory. Fix: {fix}"
        )
    return path


def default_dialogue(
    kind: PolicyKind | str, model: str | None = None, adapter: str | None = None
) -> DialogueStyle:
    """The dialogue style a method reads unless told: a local model's adapter's own (the
    style it was trained on, kept in its GGUF file), else full."""
    if kind != PolicyKind.LOCAL:
        return DialogueStyle.FULL
    return adapter_dialogue(resolve_adapter(model, adapter)) or DialogueStyle.FULL


def make_policy(
    kind: PolicyKind | str,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    native_tools: bool = False,
    n_ctx: int = 8192,
    adapter: str | None = None,
) -> Policy:
    kind = PolicyKind(kind)
    if kind == PolicyKind.EXPERT:
        return ExpertPolicy()
    if kind == PolicyKind.LOCAL:
        from thinkfl.models.backends import LlamaCppPolicy
        from thinkfl.models.engine import EngineError

        lora = resolve_adapter(model, adapter)
        gguf = resolve_gguf(model or DEFAULT_MODEL)
        try:
            return LlamaCppPolicy(
                gguf, n_ctx=n_ctx, lora_path=lora, prompt_cache=cache_dir().parent / "prompt-cache"
            )
        except EngineError as error:
            raise PolicyError(
                f"{error}. Fix: give --model a GGUF file llama.cpp loads and --adapter an "
                f"adapter.gguf trained for that model (or '{NO_ADAPTER}')"
            ) from error
    if kind == PolicyKind.HF:
        if not model:
            raise PolicyError("--policy hf needs --model PATH to a Hugging Face model directory")
        from thinkfl.models.backends import TransformersPolicy

        return TransformersPolicy.load(check_hf_model_dir(Path(model).expanduser()))
    if not base_url or not model:
        raise PolicyError(
            "--policy openai needs --base-url (e.g. http://127.0.0.1:8000/v1) and --model"
        )
    from thinkfl.models.backends import OpenAIPolicy

    return OpenAIPolicy(base_url, model, api_key=api_key, native_tools=native_tools)
