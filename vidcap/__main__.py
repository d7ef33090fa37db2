"""``python -m vidcap``: the same command line as ``vidcap``."""

from vidcap.cli import app

app()
