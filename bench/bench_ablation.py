"""The telemetry-shape ablation matrix (issue 25): R@1 of methods on each cell of each store.

    python bench/bench_ablation.py STORE [STORE ...] [--cases 40] [--cells ...] \\
        [--methods expert evidence n-sigma baro] [--out bench/out/ablation]

Each cell (`thinkfl.evaluate.ablation.ABLATIONS`) is the store rewritten as another stack
would have recorded it, with the cases extracted again; `full` is the same rewrite with no
change, so every row compares against a reference built in the same run. Prints, per store
and method, R@1 (strict) of every cell and its difference from `full`, marks a cell more than
`--tolerance` below it, and per cell whether `evidence` is within 0.02 of the best classical
baseline. Cells and trajectories are kept under --out and reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from machine import cpu_line
from thinkfl.agent import Budget
from thinkfl.evaluate import case_results, run_method
from thinkfl.evaluate.ablation import ABLATIONS, ablated_store
from thinkfl.telemetry import TelemetryStore

BASELINES = ("n-sigma", "baro")


def recall_at_1(method: str, store: TelemetryStore, cases: int, out: Path) -> float:
    selected = [c for c in store.cases() if c.truth is not None][: cases or None]
    trajectories = run_method(method, store, out, selected, Budget(), workers=1)
    results = case_results(method, trajectories, store)
    return sum(r.rank_strict == 0 for r in results) / max(len(results), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+")
    parser.add_argument("--cases", type=int, default=40, help="the first N cases (0: all)")
    parser.add_argument("--cells", nargs="+", default=list(ABLATIONS))
    parser.add_argument("--methods", nargs="+", default=["expert", "evidence", *BASELINES])
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("bench/out/ablation"))
    args = parser.parse_args()
    cells = ["full", *[c for c in args.cells if c != "full"]]
    print(cpu_line(), flush=True)
    began = time.monotonic()
    table: dict[tuple[str, str, str], float] = {}
    for path in args.stores:
        source = TelemetryStore.open(path)
        for cell in cells:
            folder = args.out / path.name / cell
            store = ablated_store(source, cell, folder / "store")
            for method in args.methods:
                table[(path.name, cell, method)] = recall_at_1(
                    method, store, args.cases, folder / "runs"
                )
            print(
                f"{path.name} {cell}: "
                + ", ".join(f"{m} {table[(path.name, cell, m)]:.3f}" for m in args.methods),
                flush=True,
            )
    print(f"\n{time.monotonic() - began:.0f} s; R@1 (strict), difference from `full`")
    print("| store | method | " + " | ".join(cells) + " |")
    print("|---|---|" + "---:|" * len(cells))
    for path in args.stores:
        for method in args.methods:
            full = table[(path.name, "full", method)]
            shown = []
            for cell in cells:
                value = table[(path.name, cell, method)]
                delta = value - full
                mark = " ⚠" if cell != "full" and delta < -args.tolerance else ""
                shown.append(
                    f"{value:.2f}" if cell == "full" else f"{value:.2f} ({delta:+.2f}){mark}"
                )
            print(f"| {path.name} | {method} | " + " | ".join(shown) + " |")
    if "evidence" in args.methods and any(b in args.methods for b in BASELINES):
        print("\nevidence against the best classical baseline (goal: >= best - 0.02)")
        for path in args.stores:
            for cell in cells:
                best = max(table[(path.name, cell, b)] for b in BASELINES if b in args.methods)
                evidence = table[(path.name, cell, "evidence")]
                verdict = "ok" if evidence >= best - 0.02 else "BELOW"
                print(
                    f"{path.name} {cell}: evidence {evidence:.3f}, best baseline {best:.3f} {verdict}"
                )


if __name__ == "__main__":
    main()
