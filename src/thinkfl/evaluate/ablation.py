"""Telemetry-shape ablations: the same incidents as another stack would have recorded them.

Each cell rewrites a store's tables with one SQL change (span kinds gone, no client spans,
no logs, metrics per service only, a tenth of the traces, clock skew between services) and
re-extracts the cases with the labels, exactly as an ingest would. `bench/bench_ablation.py`
runs methods on every cell; a rule that holds for one telemetry shape only shows up as a
cell far below the full store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thinkfl.evidence.start import choose_starts
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.cases import seal
from thinkfl.telemetry.errors import StoreError
from thinkfl.telemetry.model import Manifest
from thinkfl.telemetry.store import StoreWriter

SKEW_MS = 5  # the clock-skew cell moves each service by up to this many ms, either way
TRACE_SHARE = 10  # the sampled cell keeps one trace in this many


@dataclass(frozen=True)
class Ablation:
    what: str
    spans: str = "SELECT * FROM spans"
    logs: str = "SELECT * FROM logs"
    metrics: str = "SELECT * FROM metrics"


_SKEW = f"to_microseconds((hash({{col}}) % {2 * SKEW_MS + 1})::BIGINT * 1000 - {SKEW_MS * 1000})"

ABLATIONS: dict[str, Ablation] = {
    "full": Ablation("the store as it is (the reference)"),
    "kinds-absent": Ablation(
        "no span kinds", spans="SELECT * REPLACE ('unspecified' AS kind) FROM spans"
    ),
    "kinds-internal": Ablation(
        "every span INTERNAL (the OpenTelemetry SDK's default kind)",
        spans="SELECT * REPLACE ('internal' AS kind) FROM spans",
    ),
    "no-client-spans": Ablation(
        "no client spans: their children hang from the client's parent",
        spans="""SELECT s.* REPLACE (CASE WHEN c.span_id IS NOT NULL THEN c.parent_id
                                          ELSE s.parent_id END AS parent_id)
                 FROM spans s LEFT JOIN (SELECT span_id, parent_id FROM spans
                                         WHERE kind = 'client') c ON s.parent_id = c.span_id
                 WHERE s.kind <> 'client'""",
    ),
    "no-logs": Ablation("no logs", logs="SELECT * FROM logs WHERE false"),
    "metrics-per-service": Ablation(
        "pod metrics averaged per service (no per-pod series)",
        metrics="""SELECT 'service' AS level, e.service AS entity, m.metric, m.time,
                          avg(m.value) AS value
                   FROM metrics m JOIN entities e ON e.level = 'pod' AND e.name = m.entity
                   WHERE m.level = 'pod' AND e.service IS NOT NULL GROUP BY ALL
                   UNION ALL SELECT * FROM metrics WHERE level <> 'pod'""",
    ),
    "traces-10pct": Ablation(
        f"one trace in {TRACE_SHARE} kept (head sampling)",
        spans=f"SELECT * FROM spans WHERE hash(trace_id) % {TRACE_SHARE} = 0",
    ),
    "clock-skew-5ms": Ablation(
        f"each service's clock off by up to ±{SKEW_MS} ms (spans and logs)",
        spans=f"SELECT * REPLACE (start + {_SKEW.format(col='service')} AS start) FROM spans",
        logs=f"SELECT * REPLACE (time + {_SKEW.format(col='service')} AS time) FROM logs",
    ),
}


def ablated_store(store: TelemetryStore, cell: str, out: Path) -> TelemetryStore:
    """`store` rewritten as `cell` says, at `out` (reused when already there), with its
    faults and cases extracted again and started from their evidence, as `thinkfl ingest`
    and `thinkfl simulate` start theirs."""
    if cell not in ABLATIONS:
        raise StoreError(f"no ablation '{cell}'. Cells: {', '.join(ABLATIONS)}")
    if not (out / "manifest.json").is_file():
        _write(store, ABLATIONS[cell], cell, out)
    opened = TelemetryStore.open(out)
    opened.save_cases(choose_starts(opened))  # evidence is cached: cheap when reused
    return opened


def _write(store: TelemetryStore, ablation: Ablation, cell: str, out: Path) -> None:
    with StoreWriter(out) as writer:
        for table, sql in (
            ("spans", ablation.spans),
            ("logs", ablation.logs),
            ("metrics", ablation.metrics),
        ):
            writer.add(table, store.query(sql))
        writer.add_faults(store.faults())
        writer.add_call_edges(store.call_graph())
        seal(writer, Manifest(source_format=f"ablation:{cell}", source=str(store.path)))
