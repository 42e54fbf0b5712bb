"""Our n-sigma and BARO side by side with the RCAEval package's own, on the same cases.

Set-up (bench only, never a project dependency):
    .venv/bin/pip install --no-deps rcaeval==1.8.1
    .venv/bin/pip install scikit-learn==1.9.1 tqdm==4.70.1 requests==2.34.2
Run:
    .venv/bin/python bench/bench_rcaeval.py STORE [STORE ...]

For every case the same metric samples (normal = 20 min before injection, anomalous = the
case window) go to both implementations: RCAEval gets them as its wide frame
(`time` + one `<entity>_<metric>` column per series) and ranks series; a series' entity is
its component. Printed: how often the top component agrees, and R@1/R@3 of each.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import RCAEval.utility

# RCAEval 1.8.1 skips methods whose heavy dependencies are missing only on Python 3.10/3.12/
# 3.14; on 3.11 it imports them all (causallearn, torch...). Take its tolerant path instead.
RCAEval.utility.is_py310 = lambda: True

from RCAEval.e2e import baro as rcaeval_baro  # noqa: E402
from RCAEval.e2e import nsigma as rcaeval_nsigma  # noqa: E402

from thinkfl.baselines import baro, n_sigma  # noqa: E402
from thinkfl.baselines.classical import NORMAL_S, _place  # noqa: E402
from thinkfl.grader import MatchLevel, rank_of_truth  # noqa: E402
from thinkfl.telemetry import Candidate, TelemetryStore  # noqa: E402

SEP = "|"  # entity|metric column names: entity and metric names may contain "_"


def wide_frame(store: TelemetryStore, case):
    start = case.inject_time - timedelta(seconds=NORMAL_S)
    table = store.query(
        "SELECT epoch(time)::DOUBLE AS time, level || ':' || entity || ? || metric AS series, value "
        "FROM metrics WHERE time BETWEEN ? AND ?",
        [SEP, start, case.window_end],
    ).to_pandas()
    frame = table.pivot_table(index="time", columns="series", values="value", aggfunc="mean")
    frame = frame.sort_index().ffill().bfill().reset_index()
    frame.columns.name = None
    return frame


def rcaeval_ranking(store: TelemetryStore, case, method) -> list[Candidate]:
    frame = wide_frame(store, case)
    if frame.shape[1] <= 1:
        return []
    result = method(frame, inject_time=case.inject_time.timestamp(), dataset=None)
    ranking: list[Candidate] = []
    for series in result["ranks"]:
        if SEP not in series:  # RCAEval ranks the `time` column too when given no dataset preset
            continue
        level, name = series.split(SEP, 1)[0].split(":", 1)
        place = _place(store, level, name)
        if place not in ranking:
            ranking.append(place)
    return ranking


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stores", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.stores:
        store = TelemetryStore.open(path)
        entities, cases = store.entities(), store.cases()
        print(f"\n{path.name}: {len(cases)} cases")
        for label, ours, theirs in (
            ("n-sigma", n_sigma, rcaeval_nsigma),
            ("BARO", baro, rcaeval_baro),
        ):
            agree, r1, r3 = 0, [0, 0], [0, 0]
            for case in cases:
                pair = (ours(store, case), rcaeval_ranking(store, case, theirs))
                agree += bool(pair[0] and pair[1] and pair[0][0] == pair[1][0])
                for index, ranking in enumerate(pair):
                    rank = rank_of_truth(ranking, case.truth, entities, MatchLevel.STRICT)
                    r1[index] += rank == 0
                    r3[index] += rank is not None and rank < 3
            n = len(cases)
            print(
                f"  {label:<8} top-1 component agrees in {agree}/{n} cases; "
                f"R@1 ours {r1[0] / n:.3f} vs RCAEval {r1[1] / n:.3f}; "
                f"R@3 ours {r3[0] / n:.3f} vs RCAEval {r3[1] / n:.3f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
