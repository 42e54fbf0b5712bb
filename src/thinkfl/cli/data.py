"""Data commands: ingest, cases, simulate, export, info."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from thinkfl.cli.app import app
from thinkfl.cli.ui import (
    FORMATS_HELP,
    InvalidRows,
    StoreArgument,
    _above_one,
    _counting_progress,
    _fail,
    _not_negative,
    _positive,
    console,
    errors,
)
from thinkfl.telemetry import (
    CaseRules,
    TelemetryError,
    TelemetryStore,
    extract_cases,
)
from thinkfl.telemetry import ingest as run_ingest
from thinkfl.telemetry.incidents import IncidentRules, cases_phrase, detect_incidents


def _detect_when_unlabelled(store: Path) -> None:
    """A store without labels gets the incidents found in its telemetry as its cases."""
    opened = TelemetryStore.open(store)
    if opened.faults():
        return
    found = detect_incidents(opened).incidents
    opened.save_cases(found)
    console.print(f"[green]no labels[/]: {cases_phrase(found)} found in the telemetry itself")


def _start_from_evidence(store: Path) -> None:
    """Restart every case of a store from an entry trace through its strongest evidence."""
    from thinkfl.evidence.start import choose_starts

    opened = TelemetryStore.open(store)
    total = len(opened.cases())
    if not total:
        return
    progress = _counting_progress("[bold]evidence[/] start points")
    with progress:
        task = progress.add_task("cases", total=total)
        chosen = choose_starts(opened, on_case=lambda _c: progress.update(task, advance=1))
    opened.save_cases(chosen)
    moved = sum(c.start_component is not None for c in chosen)
    console.print(
        f"[green]start points[/]: {moved} of {total} cases start from a trace through their strongest evidence"
    )


@app.command()
def ingest(
    source_format: Annotated[str, typer.Argument(metavar="FORMAT", help=FORMATS_HELP)],
    src: Annotated[Path, typer.Argument(help="the source folder or file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the store directory to create")],
    force: Annotated[bool, typer.Option(help="replace an existing store at --out")] = False,
    max_bad_rows: Annotated[
        int, typer.Option(min=0, help="malformed CSV rows to skip (reported) before failing")
    ] = 100,
    invalid_rows: Annotated[
        InvalidRows,
        typer.Option(
            help="rows with impossible values (NaN, a time before 1970, a negative duration, an "
            "id repeated with other content, a fault listed twice): skip them (listed in the "
            "manifest and here) or fail the ingest"
        ),
    ] = InvalidRows.SKIP,
) -> None:
    """Load telemetry in FORMAT from SRC into a new store at --out, with its failure cases."""
    progress = _counting_progress("[bold]ingest[/] {task.description:<28}")
    task = progress.add_task(source_format, total=None)
    try:
        with progress:
            result = run_ingest(
                source_format,
                src,
                out,
                overwrite=force,
                max_bad_rows=max_bad_rows,
                invalid_rows=invalid_rows.value,
                on_plan=lambda total: progress.update(task, total=total),
                on_file=lambda name: progress.update(task, advance=1, description=name[-28:]),
            )
        _detect_when_unlabelled(result.store)
        _start_from_evidence(result.store)
    except TelemetryError as error:
        raise _fail(error) from None
    # the cases as stored now (incidents found when there are no labels), as `info` says
    listed = cases_phrase(TelemetryStore.open(result.store).cases())
    counts = ", ".join(
        f"{value:,} {name}" for name, value in result.counts.items() if name != "cases"
    )
    counts += f", {listed}"
    console.print(f"[green]stored[/] {result.store}: {counts}", soft_wrap=True)
    for line in result.recovered:
        errors.print(f"[yellow]recovered[/] {line}", highlight=False, soft_wrap=True)
    for row in result.skipped_rows:
        errors.print(f"[yellow]skipped malformed row[/] {row}", highlight=False, soft_wrap=True)
    for rejected in result.rejected_rows:
        example = f", e.g. {rejected.examples[0]}" if rejected.examples else ""
        errors.print(
            f"[yellow]left out[/] {rejected.count} {rejected.table} row(s): {rejected.reason}{example}",
            highlight=False,
            soft_wrap=True,
        )
    for note in result.notes:
        errors.print(f"[yellow]note[/] {note}", highlight=False, soft_wrap=True)
    for name in result.skipped_files:
        errors.print(
            f"[yellow]not read[/] {name} (unknown to this format)", highlight=False, soft_wrap=True
        )
    for fault in result.faults_without_traffic:
        errors.print(f"[yellow]no entry trace in the window of fault[/] {fault}")


@app.command()
def cases(
    store: StoreArgument,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    latency_factor: Annotated[
        float | None,
        typer.Option(
            callback=_above_one, help="anomalous entry: duration >= this x baseline (> 1)"
        ),
    ] = None,
    after_s: Annotated[
        float | None,
        typer.Option(callback=_positive, help="window end, seconds after injection (> 0)"),
    ] = None,
    before_s: Annotated[
        float | None,
        typer.Option(callback=_not_negative, help="window start, seconds before (>= 0)"),
    ] = None,
    save: Annotated[bool, typer.Option(help="store recomputed cases in the store")] = False,
    detect: Annotated[
        bool,
        typer.Option(
            help="list the incidents found in the telemetry (no labels used); on a labelled "
            "store each carries the fault it overlaps, and undetected faults are listed"
        ),
    ] = False,
) -> None:
    """List the failure cases of a store: its labelled faults, or the incidents found in the
    telemetry itself (a store without labels, or --detect)."""
    missed: list[str] = []
    try:
        opened = TelemetryStore.open(store)
        if detect or not opened.faults():
            found = detect_incidents(
                opened,
                IncidentRules(
                    **_known(
                        {"latency_factor": latency_factor, "after_s": after_s, "before_s": before_s}
                    )
                ),
            )
            listed, missed = found.incidents, found.missed
            if save:
                opened.save_cases(listed)
                _start_from_evidence(store)
                listed = TelemetryStore.open(store).cases()
            _show_cases(store, listed, missed, as_json)
            return
        overrides: dict[str, Any] = {
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
                _start_from_evidence(store)
                listed = TelemetryStore.open(store).cases()
        else:
            listed = opened.cases()
    except TelemetryError as error:
        raise _fail(error) from None
    _show_cases(store, listed, missed, as_json)


def _known(values: dict[str, float | None]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


CASE_COLUMNS = (
    "case",
    "root cause",
    "fault type",
    "entry span",
    "x base",
    "anomaly",
    "start through",
)


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows for people on a terminal (the first column, the id people copy, is never cut:
    the others wrap), or plain tab-separated lines in full for a pipe or a file."""
    if not console.is_terminal:
        sys.stdout.write(f"# {title}\n" + "\t".join(columns) + "\n")
        sys.stdout.writelines("\t".join(row) + "\n" for row in rows)
        return
    table = Table(title=title, box=box.SIMPLE_HEAD)
    longest = max((len(row[0]) for row in rows), default=len(columns[0]))
    table.add_column(columns[0], no_wrap=True, min_width=max(longest, len(columns[0])))
    for column in columns[1:]:  # wrapped between words first, never narrower than one
        table.add_column(column, overflow="fold", min_width=max(map(len, column.split())))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _show_cases(store: Path, listed: list[Any], missed: list[str], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps([c.model_dump(mode="json") for c in listed], indent=1) + "\n")
        return
    title = f"{cases_phrase(listed)} in {store}"
    rows = [
        (
            case.case_id,
            f"{case.truth.level.value}: {case.truth.entity}" if case.truth else "unlabelled",
            case.truth.fault_type if case.truth else "-",
            case.entry_span_id,
            f"{case.latency_ratio:.1f}",
            f"{case.anomaly.value} ({case.anomalous_traces})",
            case.start_component or "slowest",
        )
        for case in listed
    ]
    _print_table(title, CASE_COLUMNS, rows)
    if missed:
        errors.print(
            f"[yellow]{len(missed)} labelled faults without a detected incident[/]: "
            + ", ".join(missed),
            soft_wrap=True,
        )


@app.command()
def simulate(
    preset: Annotated[str, typer.Argument(help="difficulty: easy, realistic or hard")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the store directory to create")],
    cases: Annotated[int, typer.Option(min=1, help="labelled failure cases to generate")] = 100,
    seed: Annotated[int, typer.Option(help="same seed, same store")] = 0,
    system: Annotated[str, typer.Option(help="boutique, trainticket or generated:N")] = "boutique",
    request_rate: Annotated[
        float, typer.Option(callback=_positive, help="entry requests per second (> 0)")
    ] = 0.3,
    force: Annotated[bool, typer.Option(help="replace an existing store at --out")] = False,
) -> None:
    """Generate a store of labelled failures in a simulated microservice system."""
    from thinkfl.simulate import PRESETS, SimulationSettings
    from thinkfl.simulate import simulate as run_simulation

    if preset not in PRESETS:
        raise _fail(ValueError(f"unknown preset '{preset}'. Presets: {', '.join(PRESETS)}"))
    progress = _counting_progress(f"[bold]simulate[/] {preset} {system}")
    try:
        settings = SimulationSettings(
            system=system, difficulty=PRESETS[preset], request_rate=request_rate
        )
        with progress:
            task = progress.add_task(preset, total=cases)
            path = run_simulation(
                out,
                cases,
                seed,
                settings,
                overwrite=force,
                on_case=lambda _i: progress.update(task, advance=1),
            )
        _start_from_evidence(path)
    except (TelemetryError, ValueError) as error:
        raise _fail(error) from None
    counts = ", ".join(f"{v:,} {k}" for k, v in TelemetryStore.open(path).manifest.counts.items())
    console.print(f"[green]stored[/] {path}: {counts}", soft_wrap=True)


@app.command()
def export(
    layout: Annotated[str, typer.Argument(help="aiops2022 or nezha")],
    store: Annotated[Path, typer.Argument(help="a store (ingested or simulated)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the folder to create")],
) -> None:
    """Write a store in a layout `thinkfl ingest` reads (exports round-trip)."""
    from thinkfl.telemetry.export import EXPORTERS

    if layout not in EXPORTERS:
        raise _fail(ValueError(f"unknown layout '{layout}'. Layouts: {', '.join(EXPORTERS)}"))
    try:
        path = EXPORTERS[layout](TelemetryStore.open(store), out)
    except TelemetryError as error:
        raise _fail(error) from None
    console.print(f"[green]exported[/] {store} as {layout}: {path}", soft_wrap=True)


@app.command()
def info(store: StoreArgument) -> None:
    """Show what a store holds."""
    try:
        opened = TelemetryStore.open(store)
    except TelemetryError as error:
        raise _fail(error) from None
    manifest = opened.manifest
    console.print(f"[bold]{store}[/] ({manifest.source_format} from {manifest.source})")
    # what the files hold now (a live store grows, alerts add cases), not the manifest's counts
    counts = opened.table_rows() | {
        "entities": len(opened.entities()),
        "faults": len(opened.faults()),
    }
    for name, value in counts.items():
        console.print(f"  {name:<10} {value:>12,}")
    console.print(f"  {cases_phrase(opened.cases())}")
    if manifest.time_range:
        console.print(f"  time range {manifest.time_range[0]} .. {manifest.time_range[1]}")
    if manifest.skipped_rows:
        console.print(f"  [yellow]{len(manifest.skipped_rows)} malformed rows were skipped[/]")
    for rejected in manifest.rejected_rows:
        console.print(
            f"  [yellow]{rejected.count} {rejected.table} rows left out[/]: {rejected.reason}",
            soft_wrap=True,
        )
    if manifest.skipped_files:
        console.print(
            f"  [yellow]{len(manifest.skipped_files)} files not read[/]: "
            + ", ".join(manifest.skipped_files[:5]),
            soft_wrap=True,
        )
