"""Methods on held-out cases, same cases for every row: issue 13's results table.

    python bench/heldout.py --store HELDOUT_SIM --cases 10 --faults-of NEZHA \\
        --method expert=expert@compact --method base=local:none --method sft=local \\
        [--model smollm2-135m] [--out DIR]

`--store S --cases N`: the first N cases of S (a store no training config names).
`--faults-of S`: the cases of S whose fault the training split holds out
(`thinkfl.train.data.split_by_fault`, `--val-fraction`, `--split-seed`: the values the
training configs use). A method is NAME=KIND[:ADAPTER][@STYLE] (KIND as for `thinkfl eval
-p`; ADAPTER a GGUF LoRA file or `none`; STYLE full or compact, by default the style the
adapter was trained on, else full); `--model` is the local model (default: the default).

Prints one markdown row per method and set: R@1, R@3, MRR (strict), finishes, tokens the
policy read and wrote, the final dialogue's length in the local model's tokens (p50/max),
seconds per case (p50/p95) and the mean seconds per case reading prompts / writing replies
(llama.cpp reports the split); R@1 (service) counts a pod's service as a match.
Trajectories go to DIR; `--reuse` scores the ones already there (when they are of the same
cases).
"""

from __future__ import annotations

import argparse
import statistics
from functools import cache, partial
from pathlib import Path

import numpy as np

from thinkfl.agent import Budget, load_jsonl, run_case, save_jsonl
from thinkfl.agent.protocol import DialogueStyle
from thinkfl.files import atomic_path
from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.models.backends import chat_messages
from thinkfl.models.factory import default_dialogue, make_policy
from thinkfl.models.registry import DEFAULT_MODEL, resolve_gguf
from thinkfl.telemetry import TelemetryStore
from thinkfl.tools import Toolbox
from thinkfl.train.data import load_questions, split_by_fault


def dialogue_tokens(model: str = DEFAULT_MODEL):
    """Token count of a whole dialogue in a registry model's chat format (default: the
    default model)."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = Llama(model_path=str(resolve_gguf(model)), vocab_only=True, verbose=False)
    formatter = Jinja2ChatFormatter(vocab.metadata["tokenizer.chat_template"], "", "")

    def count(messages) -> int:
        text = formatter(messages=chat_messages(messages, native_tools=False)).prompt
        return len(vocab.tokenize(text.encode(), add_bos=False, special=True))

    return count


def case_sets(args) -> dict[str, tuple[TelemetryStore, list]]:
    sets = {}
    for path in args.store:
        store = TelemetryStore.open(path)
        sets[path.name] = (store, store.cases()[: args.cases or None])
    for path in args.faults_of:
        _, held = split_by_fault(load_questions([path]), args.val_fraction, args.split_seed)
        store = TelemetryStore.open(path)
        sets[f"{path.name} held-out faults"] = (store, [q.case for q in held])
    return sets


def row(name: str, set_name: str, trajectories, store, count) -> str:
    entities = store.entities()
    ranks = [rank_of_truth(t.ranking, t.truth, entities, MatchLevel.STRICT) for t in trajectories]
    service = [
        rank_of_truth(t.ranking, t.truth, entities, MatchLevel.SERVICE) for t in trajectories
    ]
    n = len(trajectories)
    finishes = "/".join(
        str(sum(t.finish == f for t in trajectories))
        for f in ("printed", "forced", "fallback", "no_answer")
    )
    lengths = [count(t.messages) for t in trajectories]
    seconds = [t.seconds for t in trajectories]
    reading = statistics.mean(t.prompt_seconds for t in trajectories)
    writing = statistics.mean(t.policy_seconds - t.prompt_seconds for t in trajectories)
    return (
        f"| {set_name} ({n}) | {name} | {sum(r == 0 for r in ranks) / n:.3f} "
        f"| {sum(r is not None and r < 3 for r in ranks) / n:.3f} "
        f"| {sum(1 / (r + 1) for r in ranks if r is not None) / n:.3f} "
        f"| {sum(r == 0 for r in service) / n:.3f} | {finishes} "
        f"| {statistics.mean(t.prompt_tokens + t.completion_tokens for t in trajectories):,.0f} "
        f"| {statistics.median(lengths):,.0f} / {max(lengths):,} "
        f"| {statistics.median(seconds):.1f} / {np.percentile(seconds, 95):.1f} "
        f"| {reading:.1f} / {writing:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, action="append", default=[])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--faults-of", type=Path, action="append", default=[])
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--method", action="append", required=True)
    parser.add_argument("--model", default=None, help="the local model (default: the default)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/heldout"))
    parser.add_argument("--reuse", action="store_true", help="score the trajectories in --out")
    args = parser.parse_args()
    sets, count, rows = case_sets(args), dialogue_tokens(args.model or DEFAULT_MODEL), []
    for method in args.method:
        name, _, spec = method.partition("=")
        spec, _, style = spec.partition("@")
        kind, _, adapter = spec.partition(":")
        policy = cache(partial(make_policy, kind, args.model, adapter=adapter or None))
        dialogue = (
            DialogueStyle(style) if style else default_dialogue(kind, args.model, adapter or None)
        )
        for set_name, (store, cases) in sets.items():
            path = args.out / f"{set_name.replace(' ', '-')}-{name}.jsonl"
            saved = list(load_jsonl(path)) if args.reuse and path.is_file() else []
            if [t.case_id for t in saved] == [c.case_id for c in cases]:
                trajectories = saved  # the same cases: score them again
            else:
                budget = Budget(dialogue=dialogue)
                trajectories = [run_case(Toolbox(store, c), policy(), budget) for c in cases]
                args.out.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as temporary:
                    save_jsonl(trajectories, temporary)
            rows.append(row(name, set_name, trajectories, store, count))
            print(rows[-1], flush=True)
    print(
        "\n| set | method | R@1 | R@3 | MRR | R@1 (service) | printed/forced/fallback/none "
        "| tokens/case "
        "| dialogue tokens p50/max | s/case p50/p95 | s reading / writing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
