"""SFT demonstrations at scale: the teacher on every training question of an SFT config, one
process per store, then a table by store and fault type.

    python bench/demonstrations.py configs/sft.yaml [--workers 2]

Each store's solved dialogues go to `RUN/sft/demonstrations/STORE.jsonl` (a store already
collected is reused); all of them, store by store in turn up to `sft.max_examples`, are merged
into `RUN/sft/demonstrations.jsonl`, the file `thinkfl train` trains on (it collects only
when that file is missing). Prints questions, solved, fault types covered and dialogue
length in the default model's tokens (p50/max) per store (`--tokens-of` another registry model).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from itertools import chain, zip_longest
from pathlib import Path

from heldout import dialogue_tokens
from thinkfl.agent import Trajectory, load_jsonl, save_jsonl
from thinkfl.files import atomic_path
from thinkfl.models.registry import DEFAULT_MODEL
from thinkfl.train.config import TrainConfig, TrainError, load_config
from thinkfl.train.data import load_questions, split_by_fault
from thinkfl.train.sft import collect_demonstrations


def collect_store(config: TrainConfig, store: Path) -> tuple[str, int, Path]:
    """(store name, training questions, file of solved dialogues) for one store."""
    train, _ = split_by_fault(
        load_questions([store]), config.data.val_fraction, config.data.split_seed
    )
    path = config.out / "demonstrations" / f"{store.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = config.sft.model_copy(update={"max_examples": len(train) or 1})
    try:
        collect_demonstrations(train, settings, path)
    except TrainError:
        with atomic_path(path) as partial:  # the teacher solved none of these questions
            save_jsonl([], partial)
    return store.name, len(train), path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokens-of", default=DEFAULT_MODEL, help="registry model to count with")
    args = parser.parse_args()
    config = load_config(args.config)
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(
            pool.map(collect_store, [config] * len(config.data.stores), config.data.stores)
        )
    count, by_store = dialogue_tokens(args.tokens_of), {}
    print("| store | training questions | solved (top 3) | fault types | tokens p50 / max |")
    print("|---|---|---|---|---|")
    for name, questions, path in results:
        kept: list[Trajectory] = list(load_jsonl(path))
        by_store[name] = kept
        lengths = [count(t.messages) for t in kept] or [0]
        faults = Counter(t.truth.fault_type for t in kept if t.truth)
        print(
            f"| {name} | {questions} | {len(kept)} | {len(faults)} "
            f"| {statistics.median(lengths):,.0f} / {max(lengths):,} |"
        )
    merged = [t for t in chain(*zip_longest(*by_store.values())) if t is not None]
    merged = merged[: config.sft.max_examples]
    with atomic_path(config.out / "demonstrations.jsonl") as partial:
        save_jsonl(merged, partial)
    faults = Counter(t.truth.fault_type for t in merged if t.truth)
    print(
        f"\n{len(merged)} dialogues -> {config.out / 'demonstrations.jsonl'}; by fault type: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
    )


if __name__ == "__main__":
    main()
