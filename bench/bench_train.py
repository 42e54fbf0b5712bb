"""Trained tokens/s on this CPU: SFT steps and a GRPO policy step, per model and training
setting, against today's path in the same run (issue 23, item 2).

    python bench/bench_train.py [--models smollm2-135m qwen2.5-coder-0.5b] [--length 1024]

Each row runs in a fresh child process (its peak RSS is its own) and trains on real compact
teacher dialogues (`--demonstrations`, a `bench/demonstrations.py` output), each cut to
exactly `--length` tokens so every step trains the same number of tokens:

- SFT: TRL's SFTTrainer as `thinkfl train` builds it (`thinkfl.train.sft.sft_trainer`), one
  dialogue per optimizer step, loss on the assistant's tokens only; the first step is warm-up.
- GRPO policy step: what TRL's GRPOTrainer does per rollout once the rollout exists — a
  forward pass with logits only for the completion (`logits_to_keep`), the token log-probs,
  an advantage-weighted loss, backward and an AdamW step. The completion is the dialogue after
  its first user turn. Rollout generation is the inference engine's cost (bench_rollouts.py).

Rows: `today` is the default ModelSettings (LoRA r 8 on every layer's projections, dtype auto:
bf16 where the CPU computes in it), `float32` the same in float32, `top-N` LoRA on the top N
layers only (`model.lora_layers`), as configs/sft-compact.yaml trains the shipped student.
Ratios are against `today` of the same model.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_line

ROWS = {
    "today": {},
    "float32": {"dtype": "float32"},
    "top-8": {"lora_layers": 8, "lora_r": 16, "lora_alpha": 32},
}


def one_row(model: str, row: str, demonstrations: Path, length: int, steps: int) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback

    from thinkfl.agent import load_jsonl
    from thinkfl.train.config import ModelSettings, TrainConfig
    from thinkfl.train.sft import sft_trainer
    from thinkfl.train.weights import resolve_dtype

    settings = ModelSettings(base=model, **ROWS[row])
    with tempfile.TemporaryDirectory() as run:
        config = TrainConfig.model_validate(
            {
                "stage": "sft",
                "run": run,
                "model": settings.model_dump(),
                "data": {"stores": ["unused"]},
                "sft": {"gradient_accumulation": 1, "max_length": length, "dialogue": "compact"},
            }
        )
        dialogues = list(load_jsonl(demonstrations))
        trainer = sft_trainer(config, dialogues, [], max_steps=steps + 1)
        long_enough = trainer.train_dataset.filter(lambda row: len(row["input_ids"]) >= length)
        if len(long_enough) < steps + 1:
            sys.exit(f"{demonstrations}: fewer than {steps + 1} dialogues of >= {length} tokens")
        trainer.train_dataset = long_enough.select(range(steps + 1))

        class StepTimes(TrainerCallback):
            def __init__(self) -> None:
                self.marks: list[float] = []

            def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
                self.marks.append(time.perf_counter())

        times = StepTimes()
        trainer.add_callback(times)
        trainer.train()
        sft_seconds = (times.marks[-1] - times.marks[0]) / steps

        model_ = trainer.model
        ids = torch.tensor([long_enough[0]["input_ids"]])
        completion = length - first_completion_start(long_enough[0]["labels"])
        optimizer = torch.optim.AdamW([p for p in model_.parameters() if p.requires_grad], 1e-5)
        grpo_times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            logits = model_(input_ids=ids, logits_to_keep=completion + 1).logits[:, :-1]
            targets = ids[:, -completion:]
            logps = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])
            loss = -(logps.squeeze(-1) * 0.5).mean()  # one advantage for the whole rollout
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            grpo_times.append(time.perf_counter() - start)
        grpo_seconds = sum(grpo_times[1:]) / steps
        trainable = sum(p.numel() for p in model_.parameters() if p.requires_grad)
    return {
        "model": model,
        "row": row,
        "dtype": resolve_dtype(settings),
        "trainable": trainable,
        "sft_tok_s": length / sft_seconds,
        "grpo_tok_s": length / grpo_seconds,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def first_completion_start(labels: list[int]) -> int:
    """Where the first assistant token is (TRL folds the assistant mask into labels, -100
    elsewhere): the rollout's completion starts there."""
    return next((i for i, label in enumerate(labels) if label != -100), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument(
        "--demonstrations",
        type=Path,
        default=Path("runs/smollm2-compact/sft/demonstrations.jsonl"),
    )
    parser.add_argument("--length", type=int, default=1024, help="tokens per trained sequence")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: model,row
    args = parser.parse_args()
    if not args.demonstrations.is_file():
        sys.exit(
            f"{args.demonstrations}: no demonstrations. Fix: python bench/demonstrations.py "
            "configs/sft-compact.yaml, or pass --demonstrations FILE"
        )
    if args.one:
        model, row = args.one.split(",")
        print(json.dumps(one_row(model, row, args.demonstrations, args.length, args.steps)))
        return
    print(cpu_line())
    print(f"{args.length} tokens per step, {args.steps} timed steps after one warm-up\n")
    print(
        "| model | setting | dtype | trainable | SFT tok/s | ×today | GRPO step tok/s | ×today | peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        reference: dict[str, Any] | None = None
        for row in args.rows:
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{model},{row}",
                    "--length",
                    str(args.length),
                    "--steps",
                    str(args.steps),
                    "--demonstrations",
                    str(args.demonstrations),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode:
                print(f"| {model} | {row} | failed: {child.stderr.strip().splitlines()[-1:]} |")
                continue
            result = json.loads(child.stdout.strip().splitlines()[-1])
            reference = reference or result
            print(
                f"| {model} | {row} | {result['dtype']} | {result['trainable'] / 1e6:.2f} M "
                f"| {result['sft_tok_s']:.0f} | {result['sft_tok_s'] / reference['sft_tok_s']:.2f} "
                f"| {result['grpo_tok_s']:.0f} | {result['grpo_tok_s'] / reference['grpo_tok_s']:.2f} "
                f"| {result['peak_gib']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
