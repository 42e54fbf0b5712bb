"""Training configuration: one YAML file per stage (configs/*.yaml), validated by pydantic.

A stage config names its run folder; stages of one run share it, and each stage after the
first starts from the adapter (or full weights) the previous stage left in that folder.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from thinkfl.agent import Budget
from thinkfl.agent.protocol import DialogueStyle
from thinkfl.grader import STAGES, TermSettings, Weights
from thinkfl.models.registry import DEFAULT_MODEL


class TrainError(Exception):
    """A config, data set or model that cannot be trained on; the message says why and the fix."""


class Stage(StrEnum):
    SFT = "sft"
    STAGE1 = "stage1"
    STAGE2 = "stage2"
    STAGE3 = "stage3"


ORDER = [Stage.SFT, Stage.STAGE1, Stage.STAGE2, Stage.STAGE3]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(Strict):
    """What is trained: a registry name (exported from its GGUF), or an HF model directory."""

    base: str = Field(DEFAULT_MODEL, description="registry name or HF model directory")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 where the hardware computes in it (CUDA, or a CPU with "
        "avx512_bf16/amx_bf16), else float32 — emulated bf16 on other CPUs is >20x slower",
    )
    init_adapter: str | None = Field(
        None,
        description="start from this LoRA adapter instead of the previous stage's weights: a "
        "GGUF LoRA file, a bundled adapter's name, or a PEFT adapter folder",
    )
    lora: bool = Field(True, description="False: full fine-tuning")
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )
    lora_layers: int = Field(
        0,
        ge=0,
        description="0: LoRA on every decoder layer; N: on the top N layers only (no gradient "
        "flows below them, so a step costs little more than a forward pass: bench/bench_train.py)",
    )
    gradient_checkpointing: bool = False
    gguf: str | None = Field(
        None,
        description="the GGUF of the base for llama.cpp rollouts when `base` is an HF "
        "directory (a registry base uses its own GGUF)",
    )


class DataSettings(Strict):
    """Questions come from stores (simulated or labelled real data); split by fault."""

    stores: list[Path] = Field(min_length=1)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    split_seed: int = 0
    max_questions: int = Field(0, ge=0, description="0: all training questions")


class SFTSettings(Strict):
    teacher: Literal["expert", "openai"] = "expert"
    teacher_model: str | None = None  # openai: model name
    teacher_base_url: str | None = None  # openai: endpoint
    keep_rank: int = Field(1, ge=1, description="keep trajectories whose truth is in the top k")
    max_examples: int = Field(100, ge=1, description="the paper used about 100 dialogues")
    epochs: float = Field(2.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(1, ge=1)
    gradient_accumulation: int = Field(4, ge=1)
    max_length: int = Field(4096, ge=64)
    plain_calls: bool = Field(
        True,
        description="teach calls as bare JSON, without the <tool_call> tags: in small Qwen "
        "models the tags are untrained special tokens (docs/training.md)",
    )
    dialogue: DialogueStyle = Field(
        DialogueStyle.FULL,
        description="how the teacher's dialogues are written: full (the tool manual, long "
        "observations) or compact (a short prompt and compact observations; the student "
        "must then be run with the same style)",
    )


class GRPOSettings(Strict):
    weights: Weights | None = Field(None, description="default: the stage's preset")
    terms: TermSettings = Field(default_factory=TermSettings)
    steps: int = Field(10, ge=1)
    questions_per_step: int = Field(1, ge=1)
    generations: int = Field(4, ge=2, description="rollouts per question (the GRPO group)")
    repeat_questions: int = Field(1, ge=1, description="stage 2: each question this many times")
    learning_rate: float = Field(1e-5, gt=0)
    beta: float = Field(0.0, ge=0, description="KL coefficient to the base model (0: no KL)")
    temperature: float = Field(0.7, gt=0)
    rollout_engine: Literal["llama.cpp", "transformers"] = Field(
        "llama.cpp",
        description="what generates rollouts (use_vllm overrides): llama.cpp with the "
        "trained LoRA swapped in after each step and importance-sampling correction, or the "
        "trained model itself through transformers (slow; the reference)",
    )
    importance_sampling: Literal[
        "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"
    ] = Field(
        "token_truncate",
        description="how TRL corrects for the rollout engine's log-prob mismatch (per token "
        "ratios clipped at importance_sampling_clip: a quantized engine's per-token "
        "differences add up over a long dialogue, which sequence-level ratios would mask)",
    )
    importance_sampling_clip: float = Field(3.0, gt=1)
    budget: Budget = Field(
        default_factory=lambda: Budget(max_depth=8, hard_cap=12, max_tokens_per_turn=160)
    )


class TrainConfig(Strict):
    stage: Stage
    run: Path = Field(description="run folder shared by the stages of one run")
    model: ModelSettings = Field(default_factory=ModelSettings)
    data: DataSettings
    sft: SFTSettings = Field(default_factory=SFTSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    seed: int = 0
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    resume: bool = Field(True, description="continue from the stage's last checkpoint")
    use_vllm: bool = Field(False, description="GPU: generate with vLLM (colocated)")
    deepspeed: Path | None = Field(None, description="GPU: a DeepSpeed JSON config")

    @model_validator(mode="after")
    def _stage_weights(self) -> TrainConfig:
        if self.stage != Stage.SFT and self.grpo.weights is None:
            self.grpo.weights = STAGES[self.stage.value]
        return self

    @property
    def out(self) -> Path:
        return self.run / self.stage.value

    @property
    def dialogue(self) -> DialogueStyle:
        """The style the stage trains on: the teacher's (SFT) or the rollouts' (GRPO)."""
        return self.sft.dialogue if self.stage == Stage.SFT else self.grpo.budget.dialogue

    def previous(self) -> Path | None:
        """The folder of the stage this one continues from (None for the first stage, or when
        `model.init_adapter` names the starting weights)."""
        index = ORDER.index(self.stage)
        if not index or self.model.init_adapter is not None:
            return None
        return self.run / ORDER[index - 1].value


def load_config(path: Path) -> TrainConfig:
    """Read a YAML stage config; relative paths in it are taken from the current directory."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise TrainError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise TrainError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise TrainError(f"{path}: expected a mapping with at least 'stage', 'run' and 'data'")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()
        )
        raise TrainError(f"{path}: {problems}. Fix: see configs/*.yaml for the fields") from None
