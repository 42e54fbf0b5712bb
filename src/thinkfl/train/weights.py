"""Loading what a stage trains: the base model, the previous stage's weights, a LoRA adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinkfl.agent.models import REGISTRY, cache_dir, export_hf, pull
from thinkfl.train.config import ModelSettings, TrainConfig, TrainError

ADAPTER_DIR = "adapter"  # what a stage leaves for the next one: a PEFT adapter ...
MODEL_DIR = "model"  # ... or full weights when LoRA is off


def base_dir(settings: ModelSettings) -> Path:
    """An HF directory for the base: given, or exported once from a registry GGUF."""
    if settings.base in REGISTRY:
        target = cache_dir() / "hf" / f"{settings.base}-float32"
        if not (target / "config.json").is_file():
            export_hf(pull(settings.base), target, dtype="float32")
        return target
    path = Path(settings.base).expanduser()
    if not (path / "config.json").is_file():
        raise TrainError(
            f"model.base '{settings.base}': neither a registry name ({', '.join(REGISTRY)}) nor "
            "an HF model directory with config.json. Fix: `thinkfl models export-hf` a GGUF, "
            "or give a directory saved by transformers"
        )
    return path.resolve()


def stage_weights(folder: Path) -> Path:
    """The adapter or model directory a finished stage wrote."""
    for name in (ADAPTER_DIR, MODEL_DIR):
        if (folder / name).is_dir():
            return folder / name
    raise TrainError(
        f"{folder}: no finished stage here ({ADAPTER_DIR}/ or {MODEL_DIR}/ missing). "
        "Fix: run the previous stage's config first"
    )


def load_for_training(settings: ModelSettings, previous: Path | None) -> tuple[Any, Any]:
    """(model, tokenizer); a LoRA model continues the previous stage's adapter when given."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, settings.dtype)
    base = base_dir(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    start = stage_weights(previous) if previous is not None else None
    if not settings.lora:
        model = AutoModelForCausalLM.from_pretrained(start or base, dtype=dtype)
    elif start is not None and start.name == ADAPTER_DIR:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, start, is_trainable=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(start or base, dtype=dtype)
        lora = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_targets,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer


def save_stage(model: Any, tokenizer: Any, folder: Path) -> Path:
    """Write the stage's weights to a temporary folder, then rename (no half-written stage)."""
    import shutil

    name = ADAPTER_DIR if hasattr(model, "peft_config") else MODEL_DIR
    target, partial = folder / name, folder / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    return target


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def last_checkpoint(config: TrainConfig) -> str | None:
    """The stage's newest trainer checkpoint, when resuming is on and one exists."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = config.out / "checkpoints"
    if not config.resume or not folder.is_dir():
        return None
    return get_last_checkpoint(str(folder))
