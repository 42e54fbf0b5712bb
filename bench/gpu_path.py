"""The GPU path of training, checked in one short run on a lent GPU machine.

usage: python bench/gpu_path.py --model-dir DIR --out OUT [--arch full|tiny] [--seconds N]

DIR holds a model's config.json and tokenizer; the weights are drawn at random (the real
0.5B weights are larger than what can be sent to the lent machine), so the run checks the
machinery and the speed of the architecture, not accuracy. `--arch tiny` shrinks the
architecture to 2 small layers (a CPU smoke run of this script).

It records, in OUT/summary.json and OUT/summary.md (written after every phase, so a run cut by
its time limit still reports what it did), and OUT/report.png:
1. facts: device, versions, what `model.dtype: auto` resolves to, whether vLLM and DeepSpeed
   are importable;
2. speed of the architecture: forward+backward and generation, GPU (bf16) against the CPU
   (float32) in the same process — the ratio is the speed-up;
3. the pipeline: SFT and GRPO stages 1-3 with LoRA, and a full fine-tuning GRPO stage, through
   `run_stage` — the same code as `thinkfl train` — with rollouts generated on the device by
   the model being trained; per stage: seconds, peak GPU memory, loss, rewards, rollout
   lengths and whether the weights moved.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from thinkfl.simulate import PRESETS, SimulationSettings, simulate
from thinkfl.train import TrainConfig, report, run_stage
from thinkfl.train.config import ModelSettings
from thinkfl.train.observe import read_rows
from thinkfl.train.weights import resolve_dtype, trains_in_bf16

PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "duckdb",
    "pyarrow",
    "fsspec",
    "huggingface_hub",
)


class Run:
    """The summary being built; saved after every phase, and the phases' shared deadline."""

    def __init__(self, out: Path, seconds: float) -> None:
        self.out, self.deadline = out, time.monotonic() + seconds
        self.summary: dict[str, Any] = {"phases": {}}

    def phase(self, name: str, needs_s: float, work: Callable[[], Any]) -> None:
        left = self.deadline - time.monotonic()
        if left < needs_s:
            self.summary["phases"][name] = f"skipped: {left:.0f} s left, needs about {needs_s:.0f}"
        else:
            began = time.monotonic()
            try:
                self.summary["phases"][name] = work()
            except Exception as error:  # record and go on: one broken phase must not hide the rest
                self.summary["phases"][name] = f"failed: {type(error).__name__}: {error}"
            print(f"[{name}] {time.monotonic() - began:.1f} s", flush=True)
        self.save()

    def save(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1, default=str))
        (self.out / "summary.md").write_text(markdown(self.summary))


def markdown(summary: dict[str, Any]) -> str:
    lines = ["# GPU path check", ""]
    for name, value in summary["phases"].items():
        lines += [f"## {name}", "", "```", json.dumps(value, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def facts() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    smi = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if cuda
        else None
    )
    auto = ModelSettings(dtype="auto")
    return {
        "versions": versions,
        "cuda": cuda,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "nvidia_smi": smi,
        "bf16_supported": cuda and torch.cuda.is_bf16_supported(),
        "dtype_auto_resolves_to": resolve_dtype(auto),
        "trainer_bf16": trains_in_bf16(auto),
        "vllm_importable": importlib.util.find_spec("vllm") is not None,
        "deepspeed_importable": importlib.util.find_spec("deepspeed") is not None,
    }


def random_base(model_dir: Path, arch: str, target: Path) -> dict[str, Any]:
    """The architecture of `model_dir` with random weights, saved as an HF directory."""
    config = AutoConfig.from_pretrained(model_dir)
    if arch == "tiny":
        config.update(
            {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            }
        )
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:2]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": config.num_hidden_layers,
    }


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_seconds(model: Any, tokens: int, device: str, repeats: int = 3) -> float:
    """Median time of one forward+backward over a `tokens`-long sequence (after a warm-up)."""
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)
    times = []
    for i in range(repeats + 1):
        synchronize(device)
        began = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        synchronize(device)
        if i:
            times.append(time.perf_counter() - began)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def generation_tokens_per_s(model: Any, device: str, new_tokens: int, prompt: int = 1024) -> float:
    """Greedy generation of exactly `new_tokens` after a `prompt`-token prompt (1k: as in a
    rollout)."""
    ids = torch.randint(0, model.config.vocab_size, (1, prompt), device=device)
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    with torch.no_grad():
        model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)  # warm-up
        synchronize(device)
        began = time.perf_counter()
        model.generate(input_ids=ids, **kwargs)
        synchronize(device)
    return new_tokens / (time.perf_counter() - began)


def speed(base: Path, arch: str) -> dict[str, Any]:
    """GPU bf16 against CPU float32, same architecture and process."""
    results: dict[str, Any] = {}
    cpu = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cpu_step = step_seconds(cpu, 256, "cpu", repeats=2)
    cpu_gen = generation_tokens_per_s(cpu, "cpu", 16 if arch == "full" else 64)
    results["cpu_float32"] = {"step_256_s": cpu_step, "generate_tok_per_s": cpu_gen}
    del cpu
    if not torch.cuda.is_available():
        return results
    gpu = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16).to("cuda")
    gpu_step = step_seconds(gpu, 256, "cuda")
    torch.cuda.reset_peak_memory_stats()
    long_step = step_seconds(gpu, 4096, "cuda")
    results["cuda_bfloat16"] = {
        "step_256_s": gpu_step,
        "step_4096_s": long_step,
        "step_4096_peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "generate_tok_per_s": generation_tokens_per_s(gpu, "cuda", 128),
    }
    results["speedup_step_256"] = cpu_step / gpu_step
    results["speedup_generate"] = results["cuda_bfloat16"]["generate_tok_per_s"] / cpu_gen
    del gpu
    torch.cuda.empty_cache()
    print(json.dumps(results, indent=1), flush=True)
    return results


def stage_config(stage: str, run: Path, base: Path, store: Path, lora: bool) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "stage": stage,
            "run": run,
            "data": {"stores": [store], "val_fraction": 0.0},
            "model": {"base": str(base), "dtype": "auto", "lora": lora},
            "sft": {
                "max_examples": 8 if lora else 2,
                "keep_rank": 10,
                "epochs": 2 if lora else 1,
                "max_length": 4096,
            },
            "grpo": {
                "steps": 1 if not lora else 2,
                "generations": 2,
                "learning_rate": 1e-4 if lora else 1e-6,
                "repeat_questions": 2,
                "temperature": 0.9,
                "budget": {"max_depth": 4, "hard_cap": 5, "max_tokens_per_turn": 64},
            },
        }
    )


def weight_sums(folder: Path) -> dict[str, float]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    return {k: float(t.float().abs().sum()) for f in files for k, t in load_file(str(f)).items()}


def train_stage(config: TrainConfig, previous: dict[str, float] | None) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    began = time.monotonic()
    result = run_stage(config)
    seconds = time.monotonic() - began
    rows = [r for r in read_rows(result.folder / "metrics.jsonl") if "loss" in r]
    rollouts = read_rows(result.folder / "rollouts.jsonl") if config.stage != "sft" else []
    sums = weight_sums(result.weights)
    moved = None if previous is None else any(sums[k] != previous.get(k) for k in sums)
    return {
        "seconds": round(seconds, 1),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "weights": result.weights.name,
        "weights_moved": moved,
        "steps": [
            {k: r.get(k) for k in ("step", "loss", "grad_norm", "reward", "reward_std")}
            for r in rows
        ],
        "rollouts": [
            {k: r.get(k) for k in ("finish", "turns", "model_tokens", "seconds", "reward")}
            for r in rollouts
        ],
        "_sums": sums,
    }


STAGES = [  # (label, run folder, stage, LoRA)
    ("LoRA sft", "lora", "sft", True),
    ("LoRA stage1", "lora", "stage1", True),
    ("LoRA stage2", "lora", "stage2", True),
    ("LoRA stage3", "lora", "stage3", True),
    ("full fine-tuning sft", "full", "sft", False),
    ("full fine-tuning stage1", "full", "stage1", False),
]


def pipeline(run: Run, base: Path, work: Path, folders: set[str]) -> None:
    store = work / "store"
    settings = SimulationSettings(difficulty=PRESETS["realistic"])
    run.phase("simulate 40 realistic cases", 20, lambda: str(simulate(store, 40, 21, settings)))
    previous: dict[str, dict[str, float]] = {}  # run folder -> weights of its last stage
    for label, folder, stage, lora in (s for s in STAGES if s[1] in folders):

        def work_stage(folder: str = folder, stage: str = stage, lora: bool = lora) -> dict:
            config = stage_config(stage, work / folder, base, store, lora)
            result = train_stage(config, previous.get(folder))
            previous[folder] = sums = result.pop("_sums")
            if stage == "sft" and lora:  # LoRA's B starts at zero: an update makes it non-zero
                result["lora_b_nonzero"] = any(v > 0 for k, v in sums.items() if "lora_B" in k)
            print(json.dumps(result, indent=1), flush=True)
            return result

        run.phase(label, 30, work_stage)
    if "lora" in folders:
        run.phase("report", 5, lambda: str(report(work / "lora", run.out / "report.png")))


def decode_profile(base: Path, device: str = "cuda") -> dict[str, Any]:
    """Where a rollout's time goes on the GPU: generate() at two prompt lengths against the
    bare forward pass of one decoding step (KV cache of 1024 tokens)."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device).eval()
    result: dict[str, Any] = {
        f"generate_prompt_{prompt}_tok_per_s": generation_tokens_per_s(model, device, 64, prompt)
        for prompt in (16, 1024)
    }
    ids = torch.randint(0, model.config.vocab_size, (1, 1024), device=device)
    with torch.no_grad():
        past = model(input_ids=ids, use_cache=True).past_key_values
        token = ids[:, -1:]
        times = []
        for _ in range(32):
            synchronize(device)
            began = time.perf_counter()
            past = model(input_ids=token, past_key_values=past, use_cache=True).past_key_values
            synchronize(device)
            times.append(time.perf_counter() - began)
    result["forward_one_token_ms"] = 1000 * statistics.median(times[2:])
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", choices=("full", "tiny"), default="full")
    parser.add_argument("--seconds", type=float, default=330, help="stop starting phases after")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-path"))
    parser.add_argument(
        "--phases",
        default="speed,lora,full",
        help="comma list of: speed, decode (GPU only), lora (SFT + GRPO 1-3), full (SFT + GRPO 1)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)  # a rerun starts over, not from checkpoints
    run = Run(args.out, args.seconds)
    base = args.work / "base"
    run.phase("facts", 0, facts)
    run.phase("random base", 0, lambda: random_base(args.model_dir, args.arch, base))
    phases = set(args.phases.split(","))
    if "speed" in phases:
        run.phase("speed (GPU bf16 vs CPU float32)", 60, lambda: speed(base, args.arch))
    if "decode" in phases and torch.cuda.is_available():
        run.phase("decode profile (GPU)", 20, lambda: decode_profile(base))
    if phases & {"lora", "full"}:
        pipeline(run, base, args.work, phases & {"lora", "full"})


if __name__ == "__main__":
    main()
