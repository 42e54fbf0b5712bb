"""`thinkfl train run|report`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from thinkfl.agent import Trajectory
from thinkfl.cli.app import app
from thinkfl.cli.ui import (
    _counting_progress,
    _fail,
    console,
)

if TYPE_CHECKING:  # training pulls in torch: imported where it is used
    from thinkfl.train.config import TrainConfig
    from thinkfl.train.pipeline import StageResult


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
