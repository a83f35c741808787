"""The ``freightwatch`` command line: a thin face over the Python API.

Every subcommand calls one API function; errors a user can cause (:class:`FreightwatchError`)
are printed as one line naming the file and the problem, with exit status 2. ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from freightwatch.errors import FreightwatchError

app = typer.Typer(
    name="freightwatch",
    help="Measure freight activity (trucks, railcars, boats) from satellite imagery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
"""Messages, progress and errors."""
stdout = Console()
"""Results (tables) that a user may pipe."""
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output."),
) -> None:
    """Measure freight activity (trucks, railcars, boats) from satellite imagery."""
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )
    # GDAL reports every failed read through rasterio's logger; our errors already say it in one line.
    for noisy in ("rasterio", "rasterio._env", "ultralytics"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


# Subcommand modules register themselves on `app` when imported.
from freightwatch.cli import activity as _activity  # noqa: E402,F401
from freightwatch.cli import batch as _batch  # noqa: E402,F401
from freightwatch.cli import benchmark as _benchmark  # noqa: E402,F401
from freightwatch.cli import data as _data  # noqa: E402,F401
from freightwatch.cli import density as _density  # noqa: E402,F401
from freightwatch.cli import detect as _detect  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        rc = app(args=argv, standalone_mode=False)
        # without standalone mode click returns the code of `typer.Exit(n)` instead of exiting
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except FreightwatchError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors carry their own exit code
        # Recent typer vendors its own copy of click (typer._click), whose exceptions are not
        # click.ClickException: recognise both by what they offer.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
