"""One stage from config to saved weights: data, trainer, metrics, adapter export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thinkfl.train.config import Stage, TrainConfig, TrainError
from thinkfl.train.data import training_questions
from thinkfl.train.sft import QuestionDone


@dataclass
class StageResult:
    folder: Path
    weights: Path  # adapter/ or model/
    gguf: Path | None  # adapter.gguf for llama.cpp, when the architecture is supported
    questions: int


def run_stage(
    config: TrainConfig, on_question: QuestionDone = lambda _q, _t, _k: None
) -> StageResult:
    from thinkfl.train.export import export_lora_gguf
    from thinkfl.train.observe import MetricsWriter, RolloutLog
    from thinkfl.train.weights import ADAPTER_DIR, save_stage

    train, _ = training_questions(config.data)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "config.json").write_text(config.model_dump_json(indent=1), encoding="utf-8")
    if config.stage == Stage.SFT:
        from thinkfl.train.sft import train_sft

        callbacks = [MetricsWriter(config.out, config.stage.value)]
        model, tokenizer = train_sft(config, train, callbacks, on_question)
    else:
        from thinkfl.train.grpo import train_grpo

        log = RolloutLog(config.out / "rollouts.jsonl")
        callbacks = [MetricsWriter(config.out, config.stage.value, log)]
        model, tokenizer = train_grpo(config, train, callbacks, log)
    weights = save_stage(model, tokenizer, config.out)
    gguf = None
    if weights.name == ADAPTER_DIR:
        try:
            gguf = export_lora_gguf(weights, config.out / "adapter.gguf", config.dialogue)
        except TrainError:
            gguf = None  # the HF adapter still serves through --policy hf
    return StageResult(config.out, weights, gguf, len(train))
