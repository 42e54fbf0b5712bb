"""Stages 1–3: GRPO with TRL's GRPOTrainer, rollouts from the inference loop, grader rewards.

Stage 1 (format-aware priming): recall + format, higher temperature.
Stage 2 (guided exploration): recall + diversity, each question repeated so the path cache
         tells new paths from repeated ones.
Stage 3 (rank-oriented refinement): the full grader.
The presets are `thinkfl.grader.STAGES`; a config may override the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinkfl.grader import MultiFactorGrader
from thinkfl.models.backends import LlamaCppPolicy
from thinkfl.models.registry import REGISTRY, pull
from thinkfl.train.config import TrainConfig, TrainError
from thinkfl.train.data import Question
from thinkfl.train.observe import RolloutLog
from thinkfl.train.rollout import AdapterSync, Rollouts, reward_functions


def grpo_args(config: TrainConfig) -> Any:
    """TRL's GRPOConfig for a stage (also checked by the scale-path configs' test)."""
    from trl import GRPOConfig

    from thinkfl.train.weights import trains_in_bf16

    g = config.grpo
    assert g.weights is not None  # filled from the stage preset by TrainConfig
    _, trl_weights = reward_functions(g.weights)
    return GRPOConfig(
        output_dir=str(config.out / "checkpoints"),
        max_steps=g.steps,
        # One rollout per forward/backward (memory), all of a step's rollouts generated
        # together and accumulated into one optimizer step.
        per_device_train_batch_size=1,
        gradient_accumulation_steps=g.generations * g.questions_per_step,
        num_generations=g.generations,
        learning_rate=g.learning_rate,
        beta=g.beta,
        temperature=g.temperature,
        reward_weights=trl_weights,
        logging_steps=1,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to=[],
        seed=config.seed,
        use_vllm=config.use_vllm,
        vllm_mode="colocate",
        deepspeed=str(config.deepspeed) if config.deepspeed else None,
        bf16=trains_in_bf16(config.model),
        lr_scheduler_type="constant",
        log_completions=False,
        gradient_checkpointing=config.model.gradient_checkpointing,
        # read by TRL only for an outside engine (vLLM, or the llama.cpp engine here)
        vllm_importance_sampling_mode=g.importance_sampling,
        vllm_importance_sampling_clip_max=g.importance_sampling_clip,
    )


def rollout_engine(config: TrainConfig) -> LlamaCppPolicy | None:
    """The llama.cpp policy that generates a stage's rollouts, or None (vLLM/transformers)."""
    if config.use_vllm or config.grpo.rollout_engine != "llama.cpp":
        return None
    if not config.model.lora:
        raise TrainError(
            "grpo.rollout_engine llama.cpp swaps a LoRA adapter into the running engine; full "
            "fine-tuning has none. Fix: set model.lora: true, or grpo.rollout_engine: "
            "transformers"
        )
    if config.model.base in REGISTRY:
        gguf = pull(config.model.base)
    elif config.model.gguf:
        gguf = Path(config.model.gguf).expanduser()
        if not gguf.is_file():
            raise TrainError(f"model.gguf '{config.model.gguf}': no such file")
    else:
        raise TrainError(
            f"model.base '{config.model.base}' is an HF directory: llama.cpp rollouts need its "
            "GGUF. Fix: set model.gguf to it, or grpo.rollout_engine: transformers"
        )
    budget = config.grpo.budget
    n_ctx = min(32_768, budget.max_total_tokens + budget.max_tokens_per_turn)
    policy = LlamaCppPolicy(gguf, n_ctx=n_ctx, seed=config.seed)
    policy.logprobs = True
    return policy


def _follow_engine(trainer: Any, engine: LlamaCppPolicy, folder: Path) -> None:
    """Make TRL treat the llama.cpp engine as it treats vLLM: weights synced when the step
    changes, the engine's log-probs used for the importance-sampling correction."""
    trainer.use_vllm = True  # TRL's switch for both; generation itself is the rollout_func's
    trainer.vllm_importance_sampling_correction = True
    trainer.vllm_generation = AdapterSync(trainer, engine, folder)
    trainer._last_loaded_step = -1


def train_grpo(
    config: TrainConfig, questions: list[Question], callbacks: list[Any], log: RolloutLog
) -> tuple[Any, Any]:
    """Train one GRPO stage from the previous stage's weights; returns (model, tokenizer)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from thinkfl.train.weights import last_checkpoint, load_for_training, starting_weights

    g = config.grpo
    assert g.weights is not None
    model, tokenizer = load_for_training(config.model, starting_weights(config))
    budget = g.budget.model_copy(update={"temperature": g.temperature})
    engine = rollout_engine(config)
    rollouts = Rollouts(
        questions,
        MultiFactorGrader(g.weights, g.terms),
        budget,
        tokenizer,
        config.out,
        log,
        engine,
    )
    prompts = [q.key for q in questions for _ in range(g.repeat_questions)]
    functions, _ = reward_functions(g.weights)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=grpo_args(config),
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        rollout_func=rollouts,
        callbacks=callbacks,
    )
    if engine is not None:
        _follow_engine(trainer, engine, config.out / "engine")
    trainer.train(resume_from_checkpoint=last_checkpoint(config))
    return trainer.model, tokenizer
