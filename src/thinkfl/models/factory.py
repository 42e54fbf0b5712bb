"""Build a policy from user-facing choices (CLI, service, evaluation)."""

from __future__ import annotations

from enum import StrEnum

from thinkfl.agent.expert import ExpertPolicy
from thinkfl.agent.policy import Policy
from thinkfl.models.registry import DEFAULT_MODEL, cache_dir, resolve_adapter, resolve_gguf


class PolicyKind(StrEnum):
    EXPERT = "expert"
    LOCAL = "local"
    OPENAI = "openai"
    HF = "hf"


class PolicyError(Exception):
    """Options that do not make a policy; the message says which and why."""


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

        lora = resolve_adapter(model, adapter)
        return LlamaCppPolicy(
            resolve_gguf(model or DEFAULT_MODEL),
            n_ctx=n_ctx,
            lora_path=lora,
            prompt_cache=cache_dir().parent / "prompt-cache",
        )
    if kind == PolicyKind.HF:
        if not model:
            raise PolicyError("--policy hf needs --model PATH to a Hugging Face model directory")
        from thinkfl.models.backends import TransformersPolicy

        return TransformersPolicy.load(model)
    if not base_url or not model:
        raise PolicyError(
            "--policy openai needs --base-url (e.g. http://127.0.0.1:8000/v1) and --model"
        )
    from thinkfl.models.backends import OpenAIPolicy

    return OpenAIPolicy(base_url, model, api_key=api_key, native_tools=native_tools)
