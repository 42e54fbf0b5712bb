"""The `thinkfl` Typer app: one line for every failure, --debug and --verbose."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import pydantic
import typer
from typer._click import exceptions as click_errors  # typer bundles its own click
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from thinkfl.cli.ui import _fail, errors
from thinkfl.files import SpecialFileError
from thinkfl.models.factory import PolicyError
from thinkfl.models.registry import (
    ModelError,
)
from thinkfl.telemetry import (
    TelemetryError,
)


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
        except BrokenPipeError:  # `thinkfl cases STORE | head`: the reader left; say nothing
            _silence_stdout()
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: ClickContext) -> object:
        try:
            return super().invoke(ctx)
        except (click_errors.ClickException, typer.Exit, typer.Abort, BrokenPipeError):
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises no second BrokenPipeError
    (the recipe of Python's signal documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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
    if isinstance(error, SpecialFileError):
        return f"{where}: {error.strerror}. Fix: give the path of a regular file"
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


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback of an internal error")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="a line per turn of the policy (tokens, seconds) and the model libraries' "
            "own output (llama.cpp, transformers)",
        ),
    ] = False,
) -> None:
    """Failure localization for microservice systems: ingest telemetry, find failure cases,
    localize their root causes, evaluate and train investigators."""
    ctx.obj = {"debug": debug}
    if verbose:
        os.environ["THINKFL_VERBOSE"] = "1"


def main() -> None:  # pragma: no cover - console script entry
    app()
