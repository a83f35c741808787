"""``freightwatch batch``: count every scene of a catalog at a site, locally or on Ray.

Exit status: 0 when every scene was counted (or already was), 3 when some scenes failed (listed in
``DIR/failures.csv``; the others are counted and kept), 2 when the run cannot start (unreadable
catalog or site, unusable weights), 130 when interrupted (finished scenes are kept).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from freightwatch.cli import app, console

EXIT_SOME_FAILED = 3
"""Exit status when some scenes could not be counted."""


@app.command("batch")
def batch_cmd(
    catalog: Path = typer.Argument(..., help="Scene catalog: a folder of GeoTIFFs, a CSV (path, time, ...) or a "
                                             "STAC ItemCollection JSON."),
    site: str = typer.Option(..., "--site", help="Site file (YAML with zones) or a bundled site name."),
    out: Path = typer.Option(..., "--out", help="Output folder (per-scene rows, manifest, failures, counts table)."),
    engine: str = typer.Option("local", help="local (this process) or ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: a local Ray on this machine)."),
    method: str = typer.Option("auto", help="auto (by GSD), detector or density."),
    weights: Path | None = typer.Option(None, help="Detector weights (default: bundled, when they exist)."),
    density_weights: Path | None = typer.Option(None, "--density-weights",
                                                help="Density weights (default: bundled demo weights)."),
    num_workers: int | None = typer.Option(None, "--num-workers", min=1,
                                           help="Ray actors, each loading the models once (default: 2 locally, "
                                                "all CPUs of a cluster)."),
    max_in_flight: int | None = typer.Option(None, "--max-in-flight", min=1,
                                             help="Scenes submitted to Ray and not yet collected (default: 2 per "
                                                  "worker)."),
    coverage: float = typer.Option(0.9, min=0.5, max=0.99, help="Coverage of the count intervals."),
    skip_failed: bool = typer.Option(False, "--skip-failed", help="Do not retry scenes that failed before and "
                                                                  "have not changed."),
    keep_maps: bool = typer.Option(False, "--keep-maps", help="Keep density maps / detections under DIR/maps."),
    time_pattern: str | None = typer.Option(None, "--time-pattern",
                                            help="Filename time pattern for undated scenes, e.g. %Y%m%d_%H%M%S."),
) -> None:
    """Count trucks, railcars and boats in every scene of a catalog; resumable, one bad scene costs only itself."""
    from freightwatch.batch.engine import ENGINES, BatchConfig, run_batch

    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if method not in ("auto", "detector", "density"):
        raise typer.BadParameter(f"--method must be auto, detector or density, got {method!r}")
    cfg = BatchConfig(method=method, weights=weights, density_weights=density_weights, engine=engine,
                      address=address, num_workers=num_workers, max_in_flight=max_in_flight, coverage=coverage,
                      retry_failed=not skip_failed, keep_maps=keep_maps, time_pattern=time_pattern)
    result = run_batch(catalog, site, out, cfg)
    for rec in result.failed[:10]:
        console.print(f"  [red]failed[/] {rec.scene}: {rec.error}", highlight=False, soft_wrap=True)
    if len(result.failed) > 10:
        console.print(f"  ... and {len(result.failed) - 10} more", highlight=False)
    rate = result.scenes_per_minute
    speed = f", {rate:.1f} scenes/min" if rate == rate else ""
    typer.echo(f"{result.summary()}{speed}")
    typer.echo(f"counts: {result.files.get('parquet')} (+ .csv)")
    if result.failed:
        sys.exit(EXIT_SOME_FAILED)  # not typer.Exit: without standalone mode click would return the code, not exit
