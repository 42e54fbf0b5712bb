"""Loading what a stage trains: the base model, the previous stage's weights, a LoRA adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinkfl.models.registry import (
    REGISTRY,
    ModelError,
    cache_dir,
    export_hf,
    pull,
    resolve_adapter,
)
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


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}


def resolve_dtype(settings: ModelSettings) -> str:
    """The dtype to train in: `auto` is bfloat16 only where the hardware computes in it."""
    if settings.dtype != "auto":
        return settings.dtype
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "float32"


def trains_in_bf16(settings: ModelSettings) -> bool:
    """Whether the trainer's bf16 mixed precision applies (CUDA only; on a CPU the model's
    dtype alone decides)."""
    return resolve_dtype(settings) == "bfloat16" and has_cuda()


INIT_ADAPTER_DIR = "init-adapter"  # model.init_adapter, imported as a PEFT folder


def starting_weights(config: TrainConfig) -> Path | None:
    """What a stage starts from: `model.init_adapter`, the previous stage's weights, or the
    base (None)."""
    source = config.model.init_adapter
    if source is None:
        previous = config.previous()
        return stage_weights(previous) if previous is not None else None
    if not config.model.lora:
        raise TrainError(
            "model.init_adapter needs model.lora: true (an adapter is continued as LoRA). "
            "Fix: set lora: true, or drop init_adapter for full fine-tuning"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "adapter_config.json").is_file():
            raise TrainError(
                f"model.init_adapter '{source}': a folder without adapter_config.json. Fix: give "
                "a PEFT adapter folder (RUN/<stage>/adapter), a GGUF LoRA file or a bundled name"
            )
        return path
    from thinkfl.models.registry import ADAPTERS_DIR, BUNDLED_ADAPTERS
    from thinkfl.train.export import import_lora_gguf

    bundled = {name.removesuffix(".gguf") for name in BUNDLED_ADAPTERS.values()}
    if source in bundled:
        path = ADAPTERS_DIR / f"{source}.gguf"
    try:
        gguf_file = resolve_adapter(config.model.base, str(path))
    except ModelError as error:
        raise TrainError(f"model.init_adapter: {error}") from None
    assert gguf_file is not None
    return import_lora_gguf(gguf_file, base_dir(config.model), config.out / INIT_ADAPTER_DIR)


def top_layers(layers: int, top: int) -> list[int] | None:
    """The decoder layers LoRA adapts: the top `top` of `layers` (None: all of them)."""
    if top <= 0 or top >= layers:
        return None
    return list(range(layers - top, layers))


def load_for_training(settings: ModelSettings, start: Path | None) -> tuple[Any, Any]:
    """(model, tokenizer); a LoRA model continues the adapter `start` when given."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, resolve_dtype(settings))
    base = base_dir(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not settings.lora:
        model = AutoModelForCausalLM.from_pretrained(start or base, dtype=dtype)
    elif start is not None and (start / "adapter_config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, start, is_trainable=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(start or base, dtype=dtype)
        lora = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_targets,
            layers_to_transform=top_layers(model.config.num_hidden_layers, settings.lora_layers),
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
    found: str | None = get_last_checkpoint(str(folder))
    return found
