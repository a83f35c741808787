"""Density commands: ``freightwatch train density`` and ``freightwatch density``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from freightwatch.cli import app, console, stdout
from freightwatch.cli.data import _load_mapping, _parse_bands, _parse_class_values
from freightwatch.cli.detect import train_app


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected two numbers like 3,5, got {text!r}") from None
    if not 0 < lo <= hi:
        raise typer.BadParameter(f"expected 0 < min <= max, got {text!r}")
    return lo, hi


@train_app.command("density")
def train_density_cmd(
    data: list[Path] = typer.Argument(..., help="Scene folders (scene.tif + labels.json), folders of them, or images."),
    out: Path = typer.Option(Path("runs/train-density"), "--out", help="Run folder."),
    coarse: bool = typer.Option(False, "--coarse", help="Scenes are real coarse imagery with point labels "
                                                        "(no sensor simulation)."),
    label_format: str = typer.Option("coco", "--format", help="Label format: coco, yolo, dota, xview, or points "
                                                              "(GeoJSON points with a 'class' property)."),
    labels_name: str = typer.Option("labels.json", "--labels-name", help="Label file name in scene folders."),
    image_name: str = typer.Option("scene.tif", "--image-name", help="Image file name in scene folders."),
    mapping: Path | None = typer.Option(None, help="Class mapping YAML for the labels."),
    val: list[Path] | None = typer.Option(None, "--val", help="Validation scenes (repeatable)."),
    epochs: int = typer.Option(10, help="Epochs."),
    steps: int = typer.Option(200, help="Batches per epoch."),
    batch: int = typer.Option(16, help="Crops per batch."),
    crop: int = typer.Option(128, help="Crop size in coarse pixels."),
    lr: float = typer.Option(3e-3, help="Peak learning rate."),
    gsd_range: str = typer.Option("3,5", "--gsd-range", help="Simulated coarse GSD range in metres (min,max)."),
    sigma: float = typer.Option(1.0, help="Density kernel std in coarse pixels."),
    bands: int = typer.Option(3, help="Input bands: 3 (RGB) or 4 (RGB + NIR)."),
    nir_band: int | None = typer.Option(None, "--nir-band", help="1-based NIR band of 4-band scenes (default 4)."),
    pretrained: Path | None = typer.Option(None, help="MobileNetV2 ImageNet features (.safetensors) for the encoder."),
    init: Path | None = typer.Option(None, help="Density weights to fine-tune from."),
    src_gsd: float | None = typer.Option(None, "--src-gsd", help="GSD (m) of scenes without a CRS."),
    seed: int = typer.Option(0, help="Seed (same seed, same weights on the same machine)."),
    threads: int | None = typer.Option(None, help="Torch CPU threads."),
    class_focus: list[str] | None = typer.Option(None, "--class-focus", help="CLASS=WEIGHT (repeatable): how "
                                                 "often crops are centred on that class, relative to 1 for others."),
) -> None:
    """Train the density model for coarse 3-5 m imagery (simulated from high-res labels, or --coarse points)."""
    from freightwatch.training.density import DensityTrainConfig, train_density

    if bands not in (3, 4):
        raise typer.BadParameter("--bands must be 3 or 4")
    cfg = DensityTrainConfig(
        epochs=epochs, steps_per_epoch=steps, batch=batch, crop=crop, lr=lr, gsd_range=_parse_range(gsd_range),
        sigma=sigma, bands=bands, nir_band=nir_band, pretrained=pretrained, init=init, coarse=coarse,
        label_format=label_format, labels_name=labels_name, image_name=image_name, src_gsd=src_gsd, seed=seed,
        threads=threads, class_focus=_parse_class_values(class_focus, "--class-focus", 0.0, float("inf")) or None,
    )
    res = train_density(data, out, cfg, val=val or None, mapping=_load_mapping(mapping))
    typer.echo(f"weights: {res.weights}\nconfig:  {res.config}\nmetrics: {res.metrics}")


@app.command("density")
def density_cmd(
    scene: Path = typer.Argument(..., help="Coarse (3-5 m) GeoTIFF scene, any size."),
    zones: Path | None = typer.Option(None, "--zones", help="Zones GeoJSON to count in."),
    out: Path = typer.Option(Path("runs/density"), "--out", help="Output folder."),
    weights: Path | None = typer.Option(None, help="Density weights (default: bundled demo weights)."),
    force: bool = typer.Option(False, "--force", help="Run on scenes outside the trained GSD range or without GSD."),
    gsd: float | None = typer.Option(None, "--gsd", help="Scene GSD in metres (for scenes without a CRS)."),
    coverage: float = typer.Option(0.9, min=0.5, max=0.99, help="Coverage of the count intervals."),
    tile: int = typer.Option(512, help="Tile size in pixels (memory grows with its square)."),
    margin: int = typer.Option(48, help="Context around each tile in pixels."),
    bands: str | None = typer.Option(None, help="RGB band choice for multi-band scenes, e.g. 3,2,1."),
    nir_band: int | None = typer.Option(None, "--nir-band", help="NIR band for 4-band models (default 4)."),
    gdal_cache_mb: int = typer.Option(128, "--gdal-cache-mb", min=0, help="GDAL block cache while scanning, MB "
                                      "(caps memory on huge scenes; 0: GDAL's default, 5 % of RAM)."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Average the 8 rotations/flips of each tile "
                                    "(8x slower; default: as the weights were calibrated, see the README)."),
) -> None:
    """Count trucks, railcars and boats in coarse imagery: writes density.tif, counts.csv and counts.json."""
    from freightwatch.inference.density import DensityRunConfig, density_to_dir

    cfg = DensityRunConfig(tile=tile, margin=margin, coverage=coverage, force=force, gsd=gsd,
                           bands=_parse_bands(bands), nir_band=nir_band, gdal_cache_mb=gdal_cache_mb or None,
                           tta=tta)
    result = density_to_dir(scene, out, weights, zones, cfg)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    table = Table(title=f"density counts in {scene.name} ({coverage:.0%} intervals)")
    for col in ("zone", "class", "count", "lower", "upper"):
        table.add_column(col, justify="left" if col in ("zone", "class") else "right")
    for r in result.rows:
        table.add_row(r["zone"], r["class"], f"{r['count']:.1f}",
                      *("-" if v != v else f"{v:.1f}" for v in (r["lower"], r["upper"])))
    stdout.print(table)
    for name, p in result.files.items():
        typer.echo(f"{name:>12}: {p}")
