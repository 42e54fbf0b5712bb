"""The `thinkfl` command line: thin parsing and rendering over the packages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from thinkfl.telemetry import ADAPTERS, CaseRules, TelemetryError, TelemetryStore, extract_cases
from thinkfl.telemetry import ingest as run_ingest

app = typer.Typer(
    name="thinkfl",
    help="Failure localization for microservice systems: ingest telemetry, list failure cases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, files) gets a fixed width instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

FORMATS_HELP = "; ".join(f"{name}: {adapter.description}" for name, adapter in ADAPTERS.items())


def _fail(error: Exception) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command()
def ingest(
    source_format: Annotated[str, typer.Argument(metavar="FORMAT", help=FORMATS_HELP)],
    src: Annotated[Path, typer.Argument(help="the source folder or file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the store directory to create")],
    force: Annotated[bool, typer.Option(help="replace an existing store at --out")] = False,
    max_bad_rows: Annotated[
        int, typer.Option(help="malformed CSV rows to skip (reported) before failing")
    ] = 100,
) -> None:
    """Load telemetry in FORMAT from SRC into a new store at --out, with its failure cases."""
    progress = Progress(
        TextColumn("[bold]ingest[/] {task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )
    task = progress.add_task(source_format, total=None)
    try:
        with progress:
            result = run_ingest(
                source_format,
                src,
                out,
                overwrite=force,
                max_bad_rows=max_bad_rows,
                on_plan=lambda total: progress.update(task, total=total),
                on_file=lambda name: progress.update(task, advance=1, description=name[-28:]),
            )
    except TelemetryError as error:
        raise _fail(error) from None
    counts = ", ".join(f"{value:,} {name}" for name, value in result.counts.items())
    console.print(f"[green]stored[/] {result.store}: {counts}", soft_wrap=True)
    for row in result.skipped_rows:
        errors.print(f"[yellow]skipped malformed row[/] {row}", highlight=False, soft_wrap=True)
    for fault in result.faults_without_traffic:
        errors.print(f"[yellow]no entry trace in the window of fault[/] {fault}")


@app.command()
def cases(
    store: Annotated[Path, typer.Argument(help="a store made by `thinkfl ingest`")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    latency_factor: Annotated[
        float | None, typer.Option(help="anomalous entry: duration >= this x baseline")
    ] = None,
    after_s: Annotated[
        float | None, typer.Option(help="window end, seconds after injection")
    ] = None,
    before_s: Annotated[float | None, typer.Option(help="window start, seconds before")] = None,
    save: Annotated[bool, typer.Option(help="store recomputed cases in the store")] = False,
) -> None:
    """List the failure cases of a store (recomputed when a threshold is given)."""
    try:
        opened = TelemetryStore.open(store)
        overrides = {
            k: v
            for k, v in {
                "latency_factor": latency_factor,
                "after_s": after_s,
                "before_s": before_s,
            }.items()
            if v is not None
        }
        if overrides:
            listed = extract_cases(opened, CaseRules(**overrides)).cases
            if save:
                opened.save_cases(listed)
        else:
            listed = opened.cases()
    except TelemetryError as error:
        raise _fail(error) from None
    if as_json:
        sys.stdout.write(json.dumps([c.model_dump(mode="json") for c in listed], indent=1) + "\n")
        return
    table = Table(title=f"{len(listed)} failure cases in {store}", box=box.SIMPLE_HEAD)
    for column in ("case", "root cause (level: entity)", "fault type", "entry span", "x base"):
        table.add_column(column, no_wrap=True)
    table.add_column("anomaly", no_wrap=True)
    for case in listed:
        table.add_row(
            case.case_id,
            f"{case.truth.level.value}: {case.truth.entity}",
            case.truth.fault_type,
            case.entry_span_id[:16],
            f"{case.latency_ratio:.1f}",
            f"{case.anomaly.value} ({case.anomalous_traces})",
        )
    console.print(table)


@app.command()
def info(store: Annotated[Path, typer.Argument(help="a store made by `thinkfl ingest`")]) -> None:
    """Show what a store holds."""
    try:
        opened = TelemetryStore.open(store)
    except TelemetryError as error:
        raise _fail(error) from None
    manifest = opened.manifest
    console.print(f"[bold]{store}[/] ({manifest.source_format} from {manifest.source})")
    for name, value in manifest.counts.items():
        console.print(f"  {name:<10} {value:>12,}")
    if manifest.time_range:
        console.print(f"  time range {manifest.time_range[0]} .. {manifest.time_range[1]}")
    if manifest.skipped_rows:
        console.print(f"  [yellow]{len(manifest.skipped_rows)} malformed rows were skipped[/]")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="where the demo store goes")] = Path("out/demo-store"),
) -> None:
    """Ingest the bundled sample incident and list its failure cases."""
    sample = Path(__file__).parent / "data" / "demo-aiops2022"
    console.print(f"[bold]ThinkFL demo[/]: ingesting the bundled sample {sample.name}")
    ingest("aiops2022", sample, out, force=True, max_bad_rows=0)
    cases(out)


def main() -> None:  # pragma: no cover - console script entry
    app()
