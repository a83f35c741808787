"""``freightwatch benchmark``: COCO mAP, counting error, density error and the GSD sweep on labeled data."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from freightwatch.cli import app, console, stdout
from freightwatch.cli.data import _parse_bands
from freightwatch.taxonomy import CLASSES


@app.command("benchmark")
def benchmark_cmd(
    data: Path = typer.Option(..., "--data", help="Labels: COCO JSON (or folder of scene folders), YOLO data.yaml "
                                                  "(or its folder), DOTA labelTxt folder, xView GeoJSON."),
    fmt: str = typer.Option(..., "--format", help="Label format: coco, yolo, dota, xview."),
    out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, report.md, PNGs, CSVs)."),
    weights: Path | None = typer.Option(None, help="Detector weights (default: bundled, when they exist)."),
    density_weights: Path | None = typer.Option(None, "--density-weights",
                                                help="Density weights (default: bundled demo weights)."),
    gsd_sweep: str | None = typer.Option(None, "--gsd-sweep", help="GSDs in metres to degrade to, e.g. "
                                                                    "0.3,0.5,1,2,3,5 (default: no sweep)."),
    mapping: str | None = typer.Option(None, help="Class mapping: builtin, dota, xview, freightwatch, or a YAML file "
                                                  "(default: the format's own)."),
    conf: float | None = typer.Option(None, help="Your detector score threshold for every class (default: the "
                                      "detector card's per-class counting thresholds, as `freightwatch detect` "
                                      "uses them); counts are also reported at best F1."),
    zones: Path | None = typer.Option(None, "--zones", help="Zones GeoJSON for every image (default: zones.geojson "
                                                            "beside each image, if any)."),
    images: Path | None = typer.Option(None, "--images", help="Image folder, where the label format does not say."),
    gsd: float | None = typer.Option(None, "--gsd", help="GSD in metres of images that state none."),
    density_gsd: float | None = typer.Option(None, "--density-gsd",
                                             help="GSD to simulate for the density model when the data is finer than "
                                                  "its range (default: the range's lower end)."),
    max_images: int | None = typer.Option(None, "--max-images", help="Evaluate only the first N images."),
    examples: int = typer.Option(6, "--examples", help="Example images with errors to draw."),
    split: str | None = typer.Option(None, help="YOLO split to read (default: all)."),
    iou: float = typer.Option(0.5, help="IoU for matching detections to objects (PR curves, F1)."),
    min_score: float = typer.Option(0.001, "--min-score", help="Detections below this score are dropped."),
    coverage: float = typer.Option(0.9, min=0.5, max=0.99, help="Coverage of the density count intervals."),
    no_detector: bool = typer.Option(False, "--no-detector", help="Leave the detector out."),
    no_density: bool = typer.Option(False, "--no-density", help="Leave the density model out."),
    lenient: bool = typer.Option(False, help="Skip malformed label records instead of failing."),
    bands: str | None = typer.Option(None, help="RGB band choice for multi-band images, e.g. 3,2,1."),
    device: str | None = typer.Option(None, help="Torch device for the detector (cpu, 0, ...)."),
    seed: int = typer.Option(0, help="Seed of the coarse-sensor simulation."),
) -> None:
    """Benchmark the detector and the density model on labeled tiles or scenes: metrics.json, report.md, PNGs."""
    from freightwatch.evaluation.benchmark import BenchmarkConfig, benchmark
    from freightwatch.evaluation.sweep import parse_gsds

    cfg = BenchmarkConfig(
        conf=conf, iou=iou, min_score=min_score, gsd=gsd, density_gsd=density_gsd, coverage=coverage,
        sweep=parse_gsds(gsd_sweep) if gsd_sweep else (), examples=examples, bands=_parse_bands(bands), device=device,
        seed=seed,
    )
    res = benchmark(data, fmt, out, weights, density_weights, cfg, mapping=mapping, images=images, zones=zones,
                    use_detector=not no_detector, use_density=not no_density, lenient=lenient, split=split,
                    max_images=max_images, command=["freightwatch", *sys.argv[1:]])
    m = res.metrics
    for w in m["warnings"]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    d = m["data"]
    console.print(f"evaluated {d['images_evaluated']} of {d['images']} images: "
                  + ", ".join(f"{d['objects'][c]} {c}" for c in CLASSES), highlight=False)
    if m["detection"]:
        table = Table(title="detection (pycocotools)")
        for col in ("class", "objects", "AP", "AP50", "AP75", "AR", "best-F1 thr", "F1"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for c in ("overall", *CLASSES):
            v = m["detection"]["coco"][c]
            pr = m["detection"]["pr"].get(c)
            table.add_row(c, str(v["n_gt"]), *(_f(v.get(k)) for k in ("AP", "AP50", "AP75", "AR")),
                          _f(pr["best_f1"]["threshold"]) if pr else "", _f(pr["best_f1"]["f1"]) if pr else "")
        stdout.print(table)
    table = Table(title="counting error per image")
    for col in ("method", "class", "MAE", "rel. MAE", "bias", "within ±10%", "coverage"):
        table.add_column(col, justify="left" if col in ("method", "class") else "right")
    for meth, per in m["counting"]["per_image"].items():
        for c, v in per.items():
            if v["n"]:
                table.add_row(meth, c, _f(v["mae"], 2), _p(v["rel_mae"]), _f(v["bias"], 2), _p(v["within_10pct"]),
                              _p(v["coverage"]))
    stdout.print(table)
    if m["sweep"]:
        table = Table(title="GSD sweep: relative count error per image")
        for col in ("GSD", "class", "detector", "density"):
            table.add_column(col, justify="right")
        rows = {(r["gsd"], r["class"], r["method"]): r for r in m["sweep"]["rows"]}
        for g in m["sweep"]["gsds"]:
            for c in CLASSES:
                det, den = rows.get((g, c, "detector_best_f1")), rows.get((g, c, "density"))
                if det or den:
                    star = "*" if den and den.get("in_range") is False else ""
                    table.add_row(f"{g:g}", c, _p(det["rel_mae"]) if det else "-",
                                  (_p(den["rel_mae"]) + star) if den else "-")
        stdout.print(table)
    for name in ("metrics", "report"):
        typer.echo(f"{name:>8}: {res.files[name]}")


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"
