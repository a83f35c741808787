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


def _parse_class_values(items: list[str] | None, option: str, lo: float, hi: float,
                        lo_open: bool = False) -> dict[str, float]:
    """``["railcar=0.4", ...]`` -> ``{"railcar": 0.4}``, each class a freightwatch class and each
    value in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); usage errors name ``option``."""
    out: dict[str, float] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if name.strip() not in CLASSES or not (lo < v <= hi if lo_open else lo <= v <= hi):
            bound = f"{lo:g} {'<' if lo_open else '<='} value <= {hi:g}"
            raise typer.BadParameter(f"expected CLASS=VALUE with CLASS in {', '.join(CLASSES)} and {bound}, "
                                     f"got {item!r}", param_hint=option)
        out[name.strip()] = v
    return out


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


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Site seed."),
    size_m: float = typer.Option(1000.0, "--size-m", help="Site side in metres."),
) -> None:
    """Run the bundled demo on a synthetic border-crossing site (offline, CPU)."""
    from freightwatch.demo import run_demo

    with console.status("running the demo"):
        res = run_demo(out, seed=seed, size_m=size_m)
    zones = sorted({z for z, _ in res.true_counts} | {z for z, _ in res.density_counts}
                   | {z for z, _ in res.detector_counts})
    has_det, has_model = bool(res.detector_counts), bool(res.model_counts)
    table = Table(title="objects per zone: truth (0.5 m labels) vs "
                  + ("detector at 0.5 m" if has_det else "no detector weights")
                  + (" and density model at 3 m [90 % interval]" if has_model else " and 3 m density-target integral"))
    for col in ("zone", "class", "true", "detector 0.5 m", "density 3 m"):
        table.add_column(col, justify="left" if col in ("zone", "class") else "right", no_wrap=True)
    for z in zones:
        for c in CLASSES:
            t, d = res.true_counts.get((z, c), 0), res.detector_counts.get((z, c), 0)
            m = res.model_counts.get((z, c))
            dens = res.density_counts.get((z, c), 0.0)
            if not (t or d or (m and m[0] >= 0.5) or dens >= 0.5):
                continue
            table.add_row(z, c, str(t), str(d) if has_det else "-",
                          f"{m[0]:.0f} [{m[1]:.0f}-{m[2]:.0f}]" if m else (f"{dens:.1f}" if not has_model else "-"))
    stdout.print(table)
    if has_det:
        states = Table(title="boats by state: truth vs detector (docked = within 15 m of a dock or shore)")
        for col in ("zone", "state", "true", "detected"):
            states.add_column(col, justify="left" if col in ("zone", "state") else "right")
        for z, st in sorted(set(res.true_boat_states) | set(res.boat_states)):
            states.add_row(z, st, str(res.true_boat_states.get((z, st), 0)), str(res.boat_states.get((z, st), 0)))
        stdout.print(states)
    for name, p in res.files.items():
        typer.echo(f"{name:>16}: {p}")


@app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="Labels to read (file or folder, depending on the format)."),
    src_fmt: str = typer.Option(..., "--from", help="Input format: coco, yolo, dota, xview."),
    dst_fmt: str = typer.Option(..., "--to", help="Output format: coco, yolo, dota, xview."),
    out: Path = typer.Option(..., "--out", help="Output file (coco, xview) or folder (yolo, dota)."),
    mapping: Path | None = typer.Option(None, "--mapping", help="YAML class mapping for other datasets."),
    lenient: bool = typer.Option(False, help="Skip malformed records (and report them) instead of failing."),
) -> None:
    """Convert labels between COCO, YOLO, DOTA and xView, mapping classes to truck/railcar/boat."""
    from freightwatch.datasets.formats import read_labels, write_labels

    labels = read_labels(src, src_fmt, mapping=_load_mapping(mapping), lenient=lenient)
    written = write_labels(labels, out, dst_fmt)
    console.print(f"read {labels.summary()}")
    for msg in labels.skipped[:10]:
        console.print(f"  skipped: {msg}", highlight=False)
    typer.echo(f"wrote {written}")


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--split expects train,val,test fractions like 0.8,0.2,0, got {text!r}") from None
    parts += [0.0] * (3 - len(parts))
    if len(parts) != 3:
        raise typer.BadParameter(f"--split expects at most three fractions, got {text!r}")
    return parts[0], parts[1], parts[2]


@app.command("chips")
def chips_cmd(
    scenes: list[Path] = typer.Argument(..., help="Scene folders, each with scene.tif and labels.json (COCO)."),
    out: Path = typer.Option(..., "--out", help="Dataset root to write (YOLO data.yaml + COCO JSON)."),
    size: int = typer.Option(640, help="Chip size in pixels."),
    overlap: float = typer.Option(0.2, help="Overlap: fraction of the chip size (<1) or pixels."),
    min_visible: float = typer.Option(0.5, "--min-visible", help="Keep border-cut objects at least this visible."),
    keep_empty: float = typer.Option(0.2, "--keep-empty", help="Fraction of object-free chips to keep."),
    split: str = typer.Option("0.8,0.2,0", help="Train,val,test fractions of scenes (split by scene)."),
    seed: int = typer.Option(0, help="Split seed."),
    bands: str | None = typer.Option(None, help="RGB band choice for multi-band scenes, e.g. 3,2,1."),
) -> None:
    """Cut labeled scenes into training chips: an ultralytics YOLO dataset plus COCO JSON, split by scene."""
    from freightwatch.datasets.chips import ChipConfig, export_chips
    from freightwatch.datasets.formats.coco import read_coco

    pairs = []
    for d in scenes:
        scene, labels = d / "scene.tif", d / "labels.json"
        for p in (scene, labels):
            if not p.is_file():
                raise FreightwatchError(f"{d}: expected {p.name} in the scene folder")
        ls = read_coco(labels)
        if len(ls.images) != 1:
            raise FreightwatchError(f"{labels}: expected one scene, found {len(ls.images)} images")
        im = ls.images[0]
        im.scene_id = im.scene_id or d.name
        pairs.append((scene, im))
    cfg = ChipConfig(size=size, overlap=overlap, min_visible=min_visible, keep_empty=keep_empty,
                     fractions=_parse_fractions(split), seed=seed, bands=_parse_bands(bands))
    try:
        res = export_chips(pairs, out, cfg)
    except ValueError as exc:
        raise FreightwatchError(str(exc)) from exc
    table = Table(title=f"chips in {out}")
    for col in ("split", "chips", *CLASSES):
        table.add_column(col, justify="right")
    for s, n in res.chips.items():
        table.add_row(s, str(n), *(str(res.objects[s].get(c, 0)) for c in CLASSES))
    stdout.print(table)
    typer.echo(f"wrote {res.data_yaml}")
