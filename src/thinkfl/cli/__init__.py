"""The `thinkfl` command line: thin parsing and rendering over the packages, one module per
group of commands (data, models, investigate, evaluation, training, serving)."""

from thinkfl.cli import (  # noqa: F401 - importing a module registers its commands
    data,
    evaluation,
    investigate,
    modelcmd,
    serving,
    training,
)
from thinkfl.cli.app import app, main

__all__ = ["app", "main"]
