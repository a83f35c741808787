"""Rich progress bars shared by the CLI and long-running API calls."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress(disable: bool | None = None) -> Progress:
    """A progress bar on stderr; hidden when stderr is not a terminal unless FREIGHTWATCH_PROGRESS=1."""
    if disable is None:
        disable = not (sys.stderr.isatty() or os.environ.get("FREIGHTWATCH_PROGRESS") == "1")
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
        transient=False,
    )
