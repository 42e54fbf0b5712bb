"""A trained PEFT LoRA adapter as a GGUF LoRA file, so llama.cpp serves base + adapter.

llama.cpp names tensors its own way (`blk.N.attn_q.weight`); `gguf`'s tensor-name map gives
that name for each Hugging Face module, and the adapter tensors are written as
`<name>.lora_a` / `<name>.lora_b`. For llama-architecture models the converter permutes the
rows of q/k projections for its rotary layout; the same permutation applies to lora_b.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from thinkfl.train.config import TrainError

_PREFIX = "base_model.model."


def _permute_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order (as in its convert_hf_to_gguf.py)."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def export_lora_gguf(adapter: Path, out: Path) -> Path:
    """Convert `adapter` (a PEFT LoRA folder) to one GGUF file at `out` (temp, then rename)."""
    import gguf
    from safetensors.numpy import load_file

    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    base = Path(adapter_config["base_model_name_or_path"])
    config = json.loads((base / "config.json").read_text())
    arches = {"qwen2": gguf.MODEL_ARCH.QWEN2, "llama": gguf.MODEL_ARCH.LLAMA}
    if config.get("model_type") not in arches:
        raise TrainError(
            f"{base}/config.json: model_type '{config.get('model_type')}' has no GGUF LoRA export "
            f"here (supported: {', '.join(arches)}). Fix: serve the adapter with --policy hf"
        )
    arch = arches[config["model_type"]]
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads")
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    partial = out.with_name(f".{out.name}.partial")
    writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter_config["lora_alpha"]))
    for key in sorted(tensors):
        if ".lora_A." not in key:
            continue
        module = key.removeprefix(_PREFIX).split(".lora_A.")[0]
        target = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if target is None:
            raise TrainError(f"{adapter}: no llama.cpp tensor for module '{module}'")
        lora_a = tensors[key].astype(np.float32)
        lora_b = tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float32)
        if arch == gguf.MODEL_ARCH.LLAMA and module.endswith(("q_proj", "k_proj")):
            lora_b = _permute_rows(
                lora_b, heads if module.endswith("q_proj") else kv_heads or heads
            )
        writer.add_tensor(f"{target}.lora_a", lora_a.astype(np.float16))
        writer.add_tensor(f"{target}.lora_b", lora_b.astype(np.float16))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
