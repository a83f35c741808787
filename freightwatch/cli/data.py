"""Data-layer commands: scene info, synthetic sites, coarse-sensor degradation, label conversion, chips."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from freightwatch.cli import app, console, stdout
from freightwatch.errors import FreightwatchError
from freightwatch.taxonomy import CLASSES


def _parse_bands(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--bands expects three 1-based band numbers like 3,2,1, got {text!r}") from None
    if len(bands) != 3:
        raise typer.BadParameter(f"--bands expects three band numbers, got {text!r}")
    return bands  # type: ignore[return-value]


def _load_mapping(path: Path | None):
    from freightwatch.taxonomy import ClassMapping

    return ClassMapping.from_yaml(path) if path else None


@app.command("info")
def info_cmd(
    scene: Path = typer.Argument(..., help="A GeoTIFF (or any GDAL raster)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a scene's size, bands, CRS, ground sample distance and acquisition time."""
    from freightwatch.datasets.raster import read_info

    meta = read_info(scene).as_dict()
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    table = Table(title=str(scene), show_header=False)
    for k, v in meta.items():
        table.add_row(k, "-" if v is None else str(v))
    stdout.print(table)


@app.command("synth")
def synth_cmd(
    out: Path = typer.Option(..., "--out", help="Output folder (scene.tif, labels.json, zones.geojson)."),
    gsd: float = typer.Option(0.5, help="Ground sample distance in metres per pixel."),
    size_m: float = typer.Option(1000.0, "--size-m", help="Side of the square site in metres."),
    seed: int = typer.Option(0, help="Random seed (same seed, same scene)."),
    activity: float = typer.Option(0.7, min=0.0, max=1.0, help="0 = empty lots, 1 = full."),
    acquired: str | None = typer.Option(None, help="Acquisition time to record (ISO 8601)."),
) -> None:
    """Generate a synthetic border-crossing site with exact labels and zones."""
    from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site

    when = datetime.fromisoformat(acquired) if acquired else None
    with console.status(f"rendering {size_m:.0f} m site at {gsd} m/px"):
        site = generate_site(SiteConfig(size_m=size_m, gsd=gsd, seed=seed, activity=activity, acquired=when))
        paths = write_site(site, out)
    counts = site.labels.counts()
    table = Table(title=f"synthetic site {out}")
    for col in ("class", "objects"):
        table.add_column(col)
    for c in CLASSES:
        table.add_row(c, str(counts.get(c, 0)))
    stdout.print(table)
    for p in paths.values():
        typer.echo(f"wrote {p}")


@app.command("degrade")
def degrade_cmd(
    scene: Path = typer.Argument(..., help="High-resolution GeoTIFF."),
    labels: Path = typer.Option(..., "--labels", help="Labels of the scene (COCO JSON, or --format)."),
    gsd: float = typer.Option(3.0, help="Target ground sample distance in metres."),
    out: Path = typer.Option(..., "--out", help="Output folder (scene.tif, density.tif)."),
    fmt: str = typer.Option("coco", "--format", help="Label format: coco, yolo, dota, xview."),
    seed: int = typer.Option(0, help="Noise seed."),
    mtf: float = typer.Option(0.3, help="Sensor MTF at Nyquist (sharpness; PlanetScope ~0.2-0.35)."),
    noise: float = typer.Option(2.0, help="Additive noise standard deviation (0-255 units)."),
    sigma: float = typer.Option(1.0, help="Density kernel sigma in output pixels."),
) -> None:
    """Simulate a coarse (3-5 m) sensor from a labeled high-resolution scene, with density targets."""
    from freightwatch.datasets.coarse import SensorModel, degrade_scene
    from freightwatch.datasets.formats import read_labels

    label_set = read_labels(labels, fmt)
    if len(label_set.images) != 1:
        raise FreightwatchError(f"{labels}: expected labels for one scene, found {len(label_set.images)} images")
    sensor = SensorModel(gsd=gsd, mtf_nyquist=mtf, noise_std=noise)
    with console.status(f"degrading {scene} to {gsd} m"):
        paths = degrade_scene(scene, label_set.images[0], gsd, out, sensor=sensor, seed=seed, sigma=sigma)
    for p in paths.values():
        typer.echo(f"wrote {p}")
