"""Stage 0, the SFT cold start: a teacher's trajectories that solved their case, assistant
tokens only (tool observations and prompts are masked out of the loss)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thinkfl.agent import (
    Budget,
    ExpertPolicy,
    Finish,
    Message,
    Trajectory,
    load_jsonl,
    parse_tool_calls,
    run_case,
    save_jsonl,
)
from thinkfl.agent.grammar import MAX_CAUSES
from thinkfl.agent.policy import Policy
from thinkfl.agent.protocol import system_prompt
from thinkfl.files import atomic_path
from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.train.config import SFTSettings, TrainConfig, TrainError
from thinkfl.train.data import Question
from thinkfl.train.tokens import tokenize_conversation

QuestionDone = Callable[[Question, Trajectory, bool], None]


def teacher(settings: SFTSettings) -> Policy:
    if settings.teacher == "expert":
        return ExpertPolicy()
    if not settings.teacher_model or not settings.teacher_base_url:
        raise TrainError(
            "sft.teacher openai needs sft.teacher_model and sft.teacher_base_url "
            "(an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1)"
        )
    from thinkfl.models.backends import OpenAIPolicy

    return OpenAIPolicy(settings.teacher_base_url, settings.teacher_model)


def solved(trajectory: Trajectory, question: Question, keep_rank: int) -> bool:
    if trajectory.finish != Finish.PRINTED or trajectory.truth is None:
        return False
    rank = rank_of_truth(
        trajectory.ranking, trajectory.truth, question.store.entities(), MatchLevel.STRICT
    )
    return rank is not None and rank < keep_rank


def collect_demonstrations(
    questions: list[Question],
    settings: SFTSettings,
    path: Path,
    on_question: QuestionDone = lambda _q, _t, _k: None,
) -> list[Trajectory]:
    """Solved teacher trajectories, saved to `path`; an existing file is reused (resume)
    when its dialogues are of the configured style."""
    prompt = system_prompt(style=settings.dialogue)
    if path.is_file():
        kept = list(load_jsonl(path))
        if kept and kept[0].messages[0].content != prompt:
            raise TrainError(
                f"{path}: its dialogues are not of the configured style "
                f"(sft.dialogue: {settings.dialogue.value}). Fix: remove the file to collect "
                "them again, or set sft.dialogue to the style they were written in"
            )
        return kept
    policy, kept = teacher(settings), []
    for question in questions:
        trajectory = run_case(question.toolbox(), policy, Budget(dialogue=settings.dialogue))
        keep = solved(trajectory, question, settings.keep_rank)
        on_question(question, trajectory, keep)
        if keep:
            kept.append(trajectory)
            if len(kept) >= settings.max_examples:
                break
    if not kept:
        raise TrainError(
            f"the {settings.teacher} teacher solved none of {len(questions)} training questions "
            f"within rank {settings.keep_rank}. Fix: raise sft.keep_rank or add data"
        )
    with atomic_path(path) as partial:
        save_jsonl(kept, partial)
    return kept


def _within_choices(arguments: dict[str, Any]) -> dict[str, Any]:
    """A ranking cut to the `MAX_CAUSES` the constrained decoder lets a model print."""
    return {k: v[:MAX_CAUSES] if isinstance(v, list) else v for k, v in arguments.items()}


def plain_calls(messages: list[Message]) -> list[Message]:
    """Assistant turns rewritten as their tool calls in bare JSON, one per line: the form a
    constrained decoder writes (thinkfl.agent.grammar)."""
    rewritten = []
    for message in messages:
        calls = parse_tool_calls(message.content) if message.role == "assistant" else []
        if calls:
            text = "\n".join(
                json.dumps(
                    {"name": c.name, "arguments": _within_choices(c.arguments)},
                    ensure_ascii=False,
                )
                for c in calls
            )
            message = message.model_copy(update={"content": text})
        rewritten.append(message)
    return rewritten


def sft_dataset(
    trajectories: list[Trajectory], tokenizer: Any, max_length: int, plain: bool = True
) -> Any:
    from datasets import Dataset

    rows: dict[str, list[Any]] = {"input_ids": [], "assistant_masks": []}
    for trajectory in trajectories:
        messages = plain_calls(trajectory.messages) if plain else trajectory.messages
        tokens = tokenize_conversation(tokenizer, messages)
        rows["input_ids"].append(tokens.input_ids[:max_length])
        rows["assistant_masks"].append(tokens.mask[:max_length])
    return Dataset.from_dict(rows)


def train_sft(
    config: TrainConfig,
    questions: list[Question],
    callbacks: list[Any],
    on_question: QuestionDone = lambda _q, _t, _k: None,
) -> tuple[Any, Any]:
    """Train and return (model, tokenizer); the caller saves the stage."""
    from thinkfl.train.weights import last_checkpoint

    demonstrations = collect_demonstrations(
        questions, config.sft, config.out / "demonstrations.jsonl", on_question
    )
    trainer = sft_trainer(config, demonstrations, callbacks)
    trainer.train(resume_from_checkpoint=last_checkpoint(config))
    return trainer.model, trainer.processing_class


def sft_trainer(
    config: TrainConfig, demonstrations: list[Trajectory], callbacks: list[Any], max_steps: int = -1
) -> Any:
    """TRL's SFTTrainer over the dialogues, the model loaded as the config says (also what
    bench/bench_train.py times, with `max_steps`)."""
    from trl import SFTConfig, SFTTrainer

    from thinkfl.train.weights import load_for_training, starting_weights, trains_in_bf16

    model, tokenizer = load_for_training(config.model, starting_weights(config))
    s = config.sft
    args = SFTConfig(
        output_dir=str(config.out / "checkpoints"),
        num_train_epochs=s.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation,
        learning_rate=s.learning_rate,
        max_length=s.max_length,
        logging_steps=1,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to=[],
        seed=config.seed,
        lr_scheduler_type="constant",
        gradient_checkpointing=config.model.gradient_checkpointing,
        deepspeed=str(config.deepspeed) if config.deepspeed else None,
        bf16=trains_in_bf16(config.model),
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(demonstrations, tokenizer, s.max_length, s.plain_calls),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
