"""How far each training stage moved a LoRA adapter: ||B'A' - BA|| / ||BA|| over all modules.

usage: python bench/adapter_delta.py REFERENCE_ADAPTER_DIR ADAPTER_DIR [ADAPTER_DIR ...]

Each argument is a PEFT adapter folder (RUN/<stage>/adapter, or RUN/<stage>/init-adapter for
an imported starting adapter). Prints one line per adapter: the relative change of the weight
update the adapter applies (B @ A, summed over every adapted projection) and the largest
per-module change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def updates(folder: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    return {
        key.split(".lora_A.")[0]: tensors[key.replace(".lora_A.", ".lora_B.")].float()
        @ value.float()
        for key, value in tensors.items()
        if ".lora_A." in key
    }


def main(argv: list[str]) -> None:
    reference = updates(Path(argv[0]))
    base_norm = torch.sqrt(sum((u**2).sum() for u in reference.values()))
    for name in argv[1:]:
        other = updates(Path(name))
        diffs = {m: torch.linalg.norm(other[m] - reference[m]) for m in reference}
        total = torch.sqrt(sum(d**2 for d in diffs.values()))
        worst = max(diffs, key=lambda m: diffs[m] / torch.linalg.norm(reference[m]))
        print(
            f"{name}: relative change {float(total / base_norm):.2e}, "
            f"largest {float(diffs[worst] / torch.linalg.norm(reference[worst])):.2e} ({worst})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
