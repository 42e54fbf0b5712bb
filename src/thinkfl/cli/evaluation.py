"""`thinkfl eval`: methods over the cases of a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from thinkfl.agent import Budget
from thinkfl.cli.app import app
from thinkfl.cli.ui import (
    AdapterOption,
    BaseUrlOption,
    DialogueOption,
    MaxDepthOption,
    ModelOption,
    _advance,
    _counting_progress,
    _fail,
    console,
)
from thinkfl.models.factory import PolicyError, default_dialogue
from thinkfl.models.registry import (
    ModelError,
)
from thinkfl.telemetry import (
    TelemetryError,
    TelemetryStore,
)


@app.command("eval")
def evaluate_command(
    dataset: Annotated[
        Path, typer.Option("--dataset", "-d", help="a store made by `thinkfl ingest`")
    ],
    methods: Annotated[
        list[str], typer.Option("--policy", "-p", help="a method; repeat for several (see --help)")
    ],
    out: Annotated[Path, typer.Option(help="results folder (resumes what is there)")],
    cases: Annotated[int, typer.Option(min=0, help="only the first N cases (0: all)")] = 0,
    workers: Annotated[
        int, typer.Option(min=1, help="cases in parallel where the method allows")
    ] = 4,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    adapter: AdapterOption = None,
    max_depth: MaxDepthOption = 10,
    dialogue: DialogueOption = None,
) -> None:
    """Run methods over every case of a store; write per-case JSONL, summary.json/md and plots.

    Methods (each once, however often it is given): expert, local, hf, openai (agents);
    evidence (the evidence layer's own ranking); n-sigma, baro, microrank, tracerca
    (classical baselines); random, most-frequent (floors).
    """
    from thinkfl.evaluate import EvaluationError, case_results, method_names, run_method
    from thinkfl.evaluate.report import REPORT_FILES, write_report

    if out.exists() and not out.is_dir():
        raise _fail(f"{out}: exists and is a file, not a results folder. Fix: choose another --out")
    try:
        store = TelemetryStore.open(dataset)
        unknown = [m for m in methods if m not in method_names()]
        if unknown:
            raise EvaluationError(
                f"unknown method(s) {unknown}. Methods: {', '.join(method_names())}"
            )
        labelled = [c for c in store.cases() if c.truth is not None]
        if not labelled:
            raise EvaluationError(
                f"{dataset}: no labelled cases to score (incidents found in unlabelled telemetry "
                "have no truth); evaluate on a store ingested with its fault labels"
            )
        selected = labelled[: cases or None]
        results = []
        for method in dict.fromkeys(methods):  # each method once, in the order given
            progress = _counting_progress(f"[bold]{method:<14}[/]")
            with progress:
                task = progress.add_task(method, total=len(selected))
                given = {"model": model, "base_url": base_url, "adapter": adapter}
                options = {k: v for k, v in given.items() if v}
                trajectories = run_method(
                    method,
                    store,
                    out,
                    selected,
                    Budget(
                        max_depth=max_depth,
                        dialogue=dialogue or default_dialogue(method, model, adapter),
                    ),
                    workers,
                    on_case=_advance(progress, task),
                    **options,
                )
            results += case_results(method, trajectories, store)
    except (TelemetryError, ModelError, PolicyError, EvaluationError) as error:
        raise _fail(error) from None
    title = f"{dataset.name}: {len(selected)} cases"
    summary = write_report(results, out, title)
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("method", "R@1", "R@3", "MRR", "R@1 service", "p50 s", "calls"):
        table.add_column(column, no_wrap=True)
    for method, s in summary.items():
        table.add_row(
            method,
            f"{s['strict']['R@1']:.3f}",
            f"{s['strict']['R@3']:.3f}",
            f"{s['strict']['MRR']:.3f}",
            f"{s['service']['R@1']:.3f}",
            f"{s['cost']['latency_p50_s']:.3f}",
            f"{s['cost']['tool_calls_per_case']:.1f}",
        )
    console.print(table)
    console.print(f"wrote {out}/: {', '.join(REPORT_FILES)}", soft_wrap=True)
