"""GRPO rollouts through the inference loop: `run_case` with the model being trained.

TRL's `rollout_func` receives the prompts of a step (each question already repeated once per
group member) and gets back prompt ids, completion ids and `env_mask` (0 on tool
observations and the template's turn headers), plus the grader's breakdown per rollout,
which the per-term reward functions read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thinkfl.agent import Budget, Trajectory, run_case, save_jsonl
from thinkfl.agent.policy import Policy, Reply, Turn
from thinkfl.agent.protocol import CLOSE
from thinkfl.grader import TERMS, MatchLevel, MultiFactorGrader, Weights, rank_of_truth
from thinkfl.models.backends import TransformersPolicy, chat_messages, close_open_call
from thinkfl.telemetry import Entity
from thinkfl.train.data import Question
from thinkfl.train.observe import RolloutLog
from thinkfl.train.tokens import tokenize_conversation


def reward_functions(weights: Weights) -> tuple[list[Callable[..., list[Any]]], list[float]]:
    """One reward function per graded term, and TRL weights whose weighted sum is the grader's
    total (hallucination is a penalty: negative weight). TRL logs each term separately."""
    functions, trl_weights = [], []
    for declared in TERMS:
        term, weight = declared.name, getattr(weights, declared.name)
        if not weight:
            continue

        def reward(
            completions: list[Any],
            reward_breakdown: list[dict[str, Any]],
            _term: str = term,
            **_: Any,
        ) -> list[float | None]:
            return [breakdown.get(_term) for breakdown in reward_breakdown]

        reward.__name__ = term
        functions.append(reward)
        trl_weights.append(declared.sign * weight)
    return functions, trl_weights


class ColocatedVLLMPolicy:
    """Generation by the vLLM engine TRL keeps next to the trainer (`use_vllm`, colocate
    mode), whose weights TRL syncs before each step. GPU only; not exercised on CPU."""

    native_tools = False

    def __init__(self, llm: Any, tokenizer: Any) -> None:
        self.llm, self.tokenizer, self.name = llm, tokenizer, "training-vllm"

    def respond(self, turn: Turn) -> Reply:
        from vllm import SamplingParams

        prompt = self.tokenizer.apply_chat_template(
            chat_messages(turn.messages, native_tools=False),
            tokenize=False,
            add_generation_prompt=True,
        )
        params = SamplingParams(
            temperature=turn.temperature,
            max_tokens=turn.max_tokens,
            stop=[CLOSE],
            include_stop_str_in_output=True,
        )
        output = self.llm.generate([prompt], params, use_tqdm=False)[0]
        return Reply(
            text=close_open_call(output.outputs[0].text),
            prompt_tokens=len(output.prompt_token_ids),
            completion_tokens=len(output.outputs[0].token_ids),
        )


def training_policy(trainer: Any, model: Any, tokenizer: Any) -> Policy:
    """The policy a rollout runs: vLLM when the trainer has a colocated engine, else the
    model being trained through transformers."""
    engine = getattr(getattr(trainer, "vllm_generation", None), "llm", None)
    if getattr(trainer, "use_vllm", False) and engine is not None:
        return ColocatedVLLMPolicy(engine, tokenizer)
    return TransformersPolicy(model, tokenizer, name="training")


class Rollouts:
    """The `rollout_func` of a GRPO stage; keeps the grader (and its path cache) across steps."""

    def __init__(
        self,
        questions: list[Question],
        grader: MultiFactorGrader,
        budget: Budget,
        tokenizer: Any,
        folder: Path,
        log: RolloutLog,
    ) -> None:
        self.questions = {q.key: q for q in questions}
        self.grader, self.tokenizer = grader, tokenizer
        # rewards judge the model's own answer: no last-resort ranking by the loop
        self.budget = budget.model_copy(update={"fallback_answer": False})
        self.trajectories = folder / "trajectories.jsonl"
        self.log = log
        self._entities: dict[Path, dict[str, Entity]] = {}

    def entities(self, question: Question) -> dict[str, Entity]:
        if question.store_path not in self._entities:
            self._entities[question.store_path] = question.store.entities()
        return self._entities[question.store_path]

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        policy = training_policy(trainer, model, self.tokenizer)
        stops = set(getattr(trainer, "eos_token_ids", [])) | {self.tokenizer.eos_token_id}
        out: dict[str, Any] = {
            "prompt_ids": [],
            "completion_ids": [],
            "env_mask": [],
            "reward_breakdown": [],
        }
        try:
            for prompt in prompts:
                question = self.questions[prompt if isinstance(prompt, str) else str(prompt)]
                began = time.monotonic()
                trajectory = run_case(question.toolbox(), policy, self.budget)
                self._record(question, trajectory, trainer, out, stops, time.monotonic() - began)
        finally:
            model.train(was_training)
        out["logprobs"] = None  # not needed without vLLM's importance-sampling correction
        return out

    def _record(
        self,
        question: Question,
        trajectory: Trajectory,
        trainer: Any,
        out: dict[str, Any],
        stops: set[int],
        seconds: float,
    ) -> None:
        truth, entities = question.case.truth, self.entities(question)
        if truth is None:
            raise ValueError(f"{question.case.case_id}: a training question needs a labelled case")
        score = self.grader(trajectory, truth, entities)
        tokens = tokenize_conversation(self.tokenizer, trajectory.messages)
        completion, mask = tokens.completion_ids, tokens.completion_mask
        # End on the model's last end-of-turn token so TRL does not count the rollout as cut.
        last_stop = max((i for i, t in enumerate(completion) if t in stops), default=None)
        if last_stop is not None:
            completion, mask = completion[: last_stop + 1], mask[: last_stop + 1]
        out["prompt_ids"].append(tokens.input_ids[: tokens.prompt_length])
        out["completion_ids"].append(completion)
        out["env_mask"].append(mask)
        out["reward_breakdown"].append(score.breakdown)
        save_jsonl([trajectory], self.trajectories)
        rank = rank_of_truth(trajectory.ranking, truth, entities, MatchLevel.STRICT)
        self.log.add(
            {
                "step": trainer.state.global_step,
                "question": question.key,
                "finish": trajectory.finish,
                "turns": trajectory.turns,
                "tool_calls": len(trajectory.explored),
                "ranking": [str(candidate) for candidate in trajectory.ranking],
                "rank": rank,
                "reward": score.total,
                "breakdown": score.breakdown,
                "model_tokens": sum(mask),
                "seconds": round(seconds, 2),
            }
        )
