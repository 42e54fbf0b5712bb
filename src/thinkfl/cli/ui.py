"""What every command shares: the consoles, one-line failures, progress bars, option types."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pydantic
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from thinkfl.agent.protocol import DialogueStyle
from thinkfl.models.factory import PolicyKind
from thinkfl.telemetry import (
    ADAPTERS,
)

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


def _fail(error: Exception | str) -> typer.Exit:
    if isinstance(error, pydantic.ValidationError):
        error = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
        )
    errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


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
DialogueOption = Annotated[
    DialogueStyle | None,
    typer.Option(
        help="full: the tool manual and long observations; compact: for a model trained on "
        "compact dialogues (sft.dialogue: compact). Default: the style the local adapter was "
        "trained on (the shipped one: compact), else full",
        show_default=False,
    ),
]
