"""One table for a training run: each model's `thinkfl eval` results on the same cases.

usage: python bench/training_table.py STORE CASES LABEL=EVAL_JSONL [LABEL=EVAL_JSONL ...]

Each EVAL_JSONL is a method file written by `thinkfl eval` (e.g. out/eval-train/sim-sft/
local.jsonl); only the first CASES cases of STORE are counted (0: all), so runs of different
lengths compare on the same cases. Prints the Markdown table of docs/results.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from thinkfl.evaluate import case_results, markdown, summarize
from thinkfl.evaluate.runner import load_done
from thinkfl.telemetry import TelemetryStore


def main(argv: list[str]) -> None:
    store = TelemetryStore.open(Path(argv[0]))
    wanted = [c.case_id for c in store.cases()][: int(argv[1]) or None]
    results = []
    for spec in argv[2:]:
        label, path = spec.split("=", 1)
        done = load_done(Path(path))
        missing = [case for case in wanted if case not in done]
        if missing:
            raise SystemExit(f"{path}: {len(missing)} of the {len(wanted)} cases missing")
        results += case_results(label, [done[case] for case in wanted], store)
    print(markdown(summarize(results), f"{Path(argv[0]).name}: first {len(wanted)} cases"))


if __name__ == "__main__":
    main(sys.argv[1:])
