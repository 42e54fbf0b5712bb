"""GRPO rollout speed: the llama.cpp engine against the transformers path, same policy,
same cases, one process.

    python bench/bench_rollouts.py STORE [--model qwen2.5-coder-0.5b] [--cases 3] [--depth 4]

Both generate constrained replies at the GRPO temperature from the same weights: the
registry GGUF plus the shipped LoRA adapter in llama.cpp (with token log-probs, as rollouts
ask for them), and the same adapter imported to PEFT on the float32 base in transformers
(the model the trainer updates). Reports model-written tokens per second of generation,
the ratio, and the cost of one adapter hand-over (PEFT save, GGUF export, swap-in), which
the llama.cpp path pays once per optimizer step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from thinkfl.agent import Budget, run_case
from thinkfl.models.backends import LlamaCppPolicy, TransformersPolicy
from thinkfl.models.registry import pull, resolve_adapter
from thinkfl.telemetry import TelemetryStore
from thinkfl.tools import Toolbox
from thinkfl.train.config import ModelSettings
from thinkfl.train.export import export_lora_gguf, import_lora_gguf
from thinkfl.train.weights import base_dir


def rollouts(policy, store, cases, budget) -> tuple[int, float, list[str]]:
    tokens, seconds, finishes = 0, 0.0, []
    for case in cases:
        trajectory = run_case(Toolbox(store, case), policy, budget)
        tokens += trajectory.completion_tokens
        seconds += trajectory.policy_seconds
        finishes.append(f"{trajectory.finish}/{trajectory.turns}")
    return tokens, seconds, finishes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=None, help="each engine (default: all)")
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    store = TelemetryStore.open(args.store)
    cases = store.cases()[: args.cases]
    budget = Budget(
        max_depth=args.depth,
        hard_cap=args.depth + 2,
        temperature=args.temperature,
        fallback_answer=False,
        wall_clock_s=3600,
    )
    adapter = resolve_adapter(args.model, None)
    base = base_dir(ModelSettings(base=args.model, dtype="float32"))
    work = Path(tempfile.mkdtemp(prefix="bench-rollouts-"))
    peft_dir = import_lora_gguf(adapter, base, work / "peft") if adapter else None

    engine = LlamaCppPolicy(
        pull(args.model), n_ctx=8192, n_threads=args.threads, lora_path=adapter, seed=0
    )
    engine.logprobs = True
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if peft_dir is not None:
        model = PeftModel.from_pretrained(model, peft_dir)
    model.eval()
    hf = TransformersPolicy(model, AutoTokenizer.from_pretrained(base), "transformers")

    results = {}
    for name, policy in (("llama.cpp engine", engine), ("transformers", hf)):
        began = time.monotonic()
        tokens, seconds, finishes = rollouts(policy, store, cases, budget)
        results[name] = tokens / seconds
        print(
            f"{name:18s} {tokens:5d} tokens in {seconds:7.1f} s of generation "
            f"({time.monotonic() - began:.1f} s wall): {tokens / seconds:6.1f} tok/s  {finishes}"
        )
    ratio = results["llama.cpp engine"] / results["transformers"]
    print(f"ratio engine / transformers: {ratio:.1f}x")
    if peft_dir is not None:
        began = time.monotonic()
        model.save_pretrained(work / "step")
        engine.engine.set_adapter(export_lora_gguf(work / "step", work / "step.gguf"))
        print(f"adapter hand-over per optimizer step: {time.monotonic() - began:.2f} s")


if __name__ == "__main__":
    main()
