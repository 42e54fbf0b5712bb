"""Stages 1–3: GRPO with TRL's GRPOTrainer, rollouts from the inference loop, grader rewards.

Stage 1 (format-aware priming): recall + format, higher temperature.
Stage 2 (guided exploration): recall + diversity, each question repeated so the path cache
         tells new paths from repeated ones.
Stage 3 (rank-oriented refinement): the full grader.
The presets are `thinkfl.grader.STAGES`; a config may override the weights.
"""

from __future__ import annotations

from typing import Any

from thinkfl.grader import MultiFactorGrader
from thinkfl.train.config import TrainConfig
from thinkfl.train.data import Question
from thinkfl.train.observe import RolloutLog
from thinkfl.train.rollout import Rollouts, reward_functions


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
    )


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
    rollouts = Rollouts(
        questions, MultiFactorGrader(g.weights, g.terms), budget, tokenizer, config.out, log
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
    trainer.train(resume_from_checkpoint=last_checkpoint(config))
    return trainer.model, tokenizer
