"""Simulator throughput (cases/s, spans/s) and peak memory, per system and difficulty.

    python bench/bench_simulate.py [--cases 50]

Each configuration runs in a fresh child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from pathlib import Path
from thinkfl.simulate import PRESETS, SimulationSettings, simulate
from thinkfl.telemetry import TelemetryStore
system, preset, cases, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
began = time.perf_counter()
path = simulate(out, cases, 1, SimulationSettings(system=system, difficulty=PRESETS[preset]))
seconds = time.perf_counter() - began
counts = TelemetryStore.open(path).manifest.counts
print(json.dumps({"seconds": seconds, "counts": counts,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=50)
    args = parser.parse_args()
    configs = [
        ("boutique", "realistic", args.cases),
        ("trainticket", "realistic", args.cases),
        ("boutique", "hard", args.cases),
        ("generated:1000", "realistic", max(2, args.cases // 10)),
    ]
    print(
        f"{'system':<16}{'preset':<11}{'cases':>6}{'seconds':>9}{'cases/s':>9}{'spans/s':>10}"
        f"{'spans':>11}{'samples':>11}{'peak MB':>9}"
    )
    for system, preset, cases in configs:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [sys.executable, "-c", CHILD, system, preset, str(cases), f"{tmp}/s"],
                capture_output=True,
                text=True,
                check=True,
            )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        c = r["counts"]
        print(
            f"{system:<16}{preset:<11}{cases:>6}{r['seconds']:>9.1f}{cases / r['seconds']:>9.2f}"
            f"{c['spans'] / r['seconds']:>10,.0f}{c['spans']:>11,}{c['metrics']:>11,}{r['peak_mb']:>9.0f}"
        )


if __name__ == "__main__":
    main()
