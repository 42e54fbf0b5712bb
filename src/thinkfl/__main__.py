"""`python -m thinkfl` (also what `accelerate launch -m thinkfl` runs)."""

from thinkfl.cli import app

app()
