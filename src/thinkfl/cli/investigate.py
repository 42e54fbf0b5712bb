"""Investigating: localize, report, demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from thinkfl.agent import Budget, Step, Trajectory, TurnDone, run_case
from thinkfl.agent.explain import evidence_lines
from thinkfl.cli.app import app
from thinkfl.cli.data import ingest
from thinkfl.cli.modelcmd import _pull_with_progress
from thinkfl.cli.ui import (
    AdapterOption,
    BaseUrlOption,
    DialogueOption,
    InvalidRows,
    MaxDepthOption,
    ModelOption,
    PolicyOption,
    StoreArgument,
    _fail,
    console,
    errors,
)
from thinkfl.evidence.start import case_by_id, case_starting_at
from thinkfl.files import refuse_special_file
from thinkfl.models.factory import PolicyError, PolicyKind, default_dialogue, make_policy
from thinkfl.models.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    ModelError,
)
from thinkfl.telemetry import (
    FailureCase,
    TelemetryError,
    TelemetryStore,
)
from thinkfl.telemetry.incidents import case_for_trace
from thinkfl.tools import Toolbox, parse_timestamp


def _show_step(step: Step) -> None:
    arguments = ", ".join(f"{k}={v!r}" for k, v in step.arguments.items())
    mark = "[green]→[/]" if step.ok else "[yellow]→[/]"
    console.print(f"{mark} [bold]{step.tool}[/]({arguments})", soft_wrap=True, highlight=False)
    lines = step.observation.splitlines()
    for line in lines[:8]:
        console.print(Text("    " + line, style="dim"), soft_wrap=True, highlight=False)
    if len(lines) > 8:
        console.print(f"    [dim]… {len(lines) - 8} more lines[/]")


class _TurnProgress:
    """A live line while the policy writes its next turn (a local model takes seconds per
    turn), and with `--verbose` one line per turn: tokens read and written, seconds."""

    def __init__(self, policy_name: str) -> None:
        self.policy_name = policy_name
        self.verbose = os.environ.get("THINKFL_VERBOSE") == "1"
        self.status = console.status(self._waiting(1), spinner="dots")

    def _waiting(self, turn: int) -> str:
        return f"[dim]turn {turn}: {self.policy_name} is writing its next step…[/]"

    def __enter__(self) -> _TurnProgress:
        self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.__exit__(None, None, None)

    def on_turn(self, done: TurnDone) -> None:
        if self.verbose:
            reading = f" ({done.prompt_seconds:.1f} s reading)" if done.prompt_seconds else ""
            console.print(
                f"[dim]turn {done.turn}: read {done.prompt_tokens:,} tokens, wrote "
                f"{done.completion_tokens} in {done.seconds:.1f} s{reading}[/]",
                highlight=False,
            )
        self.status.update(self._waiting(done.turn + 1))


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
    dialogue: DialogueOption = None,
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
    for target in (save, html):  # before the investigation, not after it
        if target is not None:
            refuse_special_file(target)
    try:
        opened = TelemetryStore.open(store)
        failure = _case_to_investigate(opened, case, trace, at, service)
        if policy == PolicyKind.LOCAL and (model is None or model in REGISTRY):
            _pull_with_progress(model or DEFAULT_MODEL)
        chosen = make_policy(policy, model, base_url, api_key, native_tools, adapter=adapter)
        dialogue = dialogue or default_dialogue(policy, model, adapter)
    except (TelemetryError, ModelError, PolicyError) as error:
        raise _fail(error) from None
    if not as_json:
        console.print(
            f"[bold]{failure.case_id}[/]: entry {failure.entry_span_id} at {failure.entry_service} "
            f"({failure.latency_ratio:.1f}x normal) — investigating with {chosen.name}",
            soft_wrap=True,
        )
    budget = Budget(max_depth=max_depth, rethink=rethink, dialogue=dialogue)
    if as_json:
        trajectory = run_case(Toolbox(opened, failure), chosen, budget)
    else:
        with _TurnProgress(chosen.name) as progress:
            trajectory = run_case(
                Toolbox(opened, failure), chosen, budget, _show_step, progress.on_turn
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
    _exit_unless_answered(trajectory)


def _exit_unless_answered(trajectory: Trajectory) -> None:
    """A damaged store (exit 2) or a crashed backend (exit 1): said, never exit code 0."""
    if trajectory.store_failures:
        raise _fail(f"the investigation has no answer: {trajectory.error}")
    if trajectory.finish == "error":
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
        return case_by_id(store, case)
    if trace:
        return case_for_trace(store, trace)
    when = parse_timestamp(at)
    if when is None:
        raise typer.BadParameter(
            f"--at '{at}': use ISO 8601 (2024-05-01T10:16:50Z) or epoch seconds"
        )
    return case_starting_at(store, when, service)


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
    failure = case_by_id(opened, case)
    chosen = make_policy(policy, model, base_url, None, False)
    budget = Budget(dialogue=default_dialogue(policy, model))
    trajectory = run_case(Toolbox(opened, failure), chosen, budget)
    _exit_unless_answered(trajectory)
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
    sample = Path(__file__).resolve().parents[1] / "data" / "demo-aiops2022"  # thinkfl/data
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
            "The default model is Qwen2.5-Coder-0.5B with the shipped LoRA adapter (docs/results.md:"
            " below the expert). The compact student, faster and answering on its own: --model "
            "smollm2-135m. Compare: "
            f"thinkfl localize {out} --case {failure.case_id} --policy expert",
            soft_wrap=True,
        )
