"""LoRA adapters between PEFT and GGUF: export so llama.cpp serves base + adapter, import so
training continues from a GGUF adapter (e.g. the one shipped with the package).

llama.cpp names tensors its own way (`blk.N.attn_q.weight`); `gguf`'s tensor-name map gives
that name for each Hugging Face module, and the adapter tensors are written as
`<name>.lora_a` / `<name>.lora_b`. For llama-architecture models the converter permutes the
rows of q/k projections for its rotary layout; the same permutation applies to lora_b (and
is undone on import).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thinkfl.agent.protocol import DialogueStyle
from thinkfl.files import atomic_path
from thinkfl.models.registry import DIALOGUE_KEY
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


def _unpermute_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of `_permute_rows`."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, rows // heads // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# The projections LoRA targets in qwen2/llama decoder layers, by their HF module names.
_LAYER_MODULES = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]


@dataclass
class _Layout:
    """What converting an adapter of one base model needs: its config.json, its gguf
    architecture and the HF -> llama.cpp tensor-name map."""

    config: dict[str, Any]
    arch: Any
    names: Any

    def rotary_heads(self, module: str) -> int | None:
        """The heads by which lora_b rows are (un)permuted: llama q/k projections only."""
        import gguf

        if self.arch != gguf.MODEL_ARCH.LLAMA or not module.endswith(("q_proj", "k_proj")):
            return None
        heads = int(self.config["num_attention_heads"])
        if module.endswith("q_proj"):
            return heads
        return int(self.config.get("num_key_value_heads") or heads)


def _layout(base: Path) -> _Layout:
    """The layout of the HF model at `base`; only architectures llama.cpp LoRA takes."""
    import gguf

    config = json.loads((base / "config.json").read_text())
    arches = {"qwen2": gguf.MODEL_ARCH.QWEN2, "llama": gguf.MODEL_ARCH.LLAMA}
    if config.get("model_type") not in arches:
        raise TrainError(
            f"{base}/config.json: model_type '{config.get('model_type')}' has no GGUF LoRA export "
            f"here (supported: {', '.join(arches)}). Fix: serve the adapter with --policy hf"
        )
    arch = arches[config["model_type"]]
    return _Layout(config, arch, gguf.get_tensor_name_map(arch, config["num_hidden_layers"]))


def export_lora_gguf(adapter: Path, out: Path, dialogue: DialogueStyle | None = None) -> Path:
    """Convert `adapter` (a PEFT LoRA folder) to one GGUF file at `out` (temp, then rename).
    `dialogue`: the style it was trained on, kept in the file (`DIALOGUE_KEY`) so that
    `localize` and `eval` run it in that style by default."""
    import gguf
    from safetensors.numpy import load_file

    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    layout = _layout(Path(adapter_config["base_model_name_or_path"]))
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    with atomic_path(out) as partial:
        writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[layout.arch])
        writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter_config["lora_alpha"]))
        if dialogue is not None:
            writer.add_string(DIALOGUE_KEY, dialogue.value)
        for key in sorted(tensors):
            if ".lora_A." not in key:
                continue
            module = key.removeprefix(_PREFIX).split(".lora_A.")[0]
            target = layout.names.get_name(f"{module}.weight", try_suffixes=(".weight",))
            if target is None:
                raise TrainError(f"{adapter}: no llama.cpp tensor for module '{module}'")
            lora_a = tensors[key].astype(np.float32)
            lora_b = tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float32)
            if heads := layout.rotary_heads(module):
                lora_b = _permute_rows(lora_b, heads)
            writer.add_tensor(f"{target}.lora_a", lora_a.astype(np.float16))
            writer.add_tensor(f"{target}.lora_b", lora_b.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def import_lora_gguf(source: Path, base: Path, out: Path) -> Path:
    """Convert the GGUF LoRA file `source`, made for the HF model at `base`, to a PEFT adapter
    folder at `out` (temp, then rename): the inverse of `export_lora_gguf`."""
    import gguf
    from peft import LoraConfig
    from safetensors.numpy import save_file

    layout = _layout(base)
    config = layout.config
    modules = {
        layout.names.get_name(f"model.layers.{layer}.{module}.weight", try_suffixes=(".weight",)): (
            f"model.layers.{layer}.{module}"
        )
        for layer in range(config["num_hidden_layers"])
        for module in _LAYER_MODULES
    }
    try:
        reader = gguf.GGUFReader(str(source))
    except (OSError, ValueError) as error:
        raise TrainError(f"{source}: not a readable GGUF file ({error})") from None
    alpha = reader.get_field(gguf.Keys.Adapter.LORA_ALPHA)
    if alpha is None:
        raise TrainError(f"{source}: no {gguf.Keys.Adapter.LORA_ALPHA}; not a GGUF LoRA adapter")
    tensors: dict[str, np.ndarray] = {}
    ranks: set[int] = set()
    for tensor in reader.tensors:
        target, _, part = tensor.name.rpartition(".")
        module = modules.get(target)
        if part not in ("lora_a", "lora_b") or module is None:
            raise TrainError(
                f"{source}: tensor '{tensor.name}' is not a LoRA tensor of a "
                f"{config['model_type']} layer projection with {config['num_hidden_layers']} "
                f"layers. Fix: import it with the base model it was trained on ({base})"
            )
        weights = np.array(tensor.data, dtype=np.float32)
        if part == "lora_b" and (heads := layout.rotary_heads(module)):
            weights = _unpermute_rows(weights, heads)
        if part == "lora_a":
            ranks.add(weights.shape[0])
        tensors[f"{_PREFIX}{module}.lora_{part[-1].upper()}.weight"] = weights
    if len(ranks) != 1:
        raise TrainError(f"{source}: expected one LoRA rank over all tensors, found {ranks}")
    targets = sorted({key.split(".lora_")[0].rsplit(".", 1)[1] for key in tensors})
    layers = sorted({int(key.split(".layers.")[1].split(".")[0]) for key in tensors})
    with atomic_path(out) as partial:
        partial.mkdir(parents=True)
        LoraConfig(
            r=ranks.pop(),
            lora_alpha=float(alpha.contents()),
            target_modules=targets,
            # an adapter of the top layers only (model.lora_layers) stays one
            layers_to_transform=layers if len(layers) < config["num_hidden_layers"] else None,
            task_type="CAUSAL_LM",
            base_model_name_or_path=str(base),
        ).save_pretrained(str(partial))
        save_file(tensors, str(partial / "adapter_model.safetensors"))
        shutil.rmtree(out, ignore_errors=True)
    return out
