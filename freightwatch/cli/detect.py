"""Detector commands: ``freightwatch train detector`` and ``freightwatch detect``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from freightwatch.cli import app, console, stdout
from freightwatch.cli.data import _parse_bands, _parse_class_values, _parse_fractions
from freightwatch.errors import FreightwatchError

train_app = typer.Typer(help="Train models (detector for 0.3-1 m imagery).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("detector")
def train_detector_cmd(
    data: Path = typer.Argument(..., help="data.yaml / YOLO folder, COCO JSON, or a folder of scene folders."),
    out: Path = typer.Option(Path("runs/train-detector"), "--out", help="Run folder."),
    model: str = typer.Option("yolo11n.yaml", help="Model YAML to build from (used when no --weights)."),
    weights: Path | None = typer.Option(
        None, help="Weights to fine-tune: a freightwatch .safetensors detector (e.g. the bundled one), or an "
        "ultralytics .pt (a pickle: trusted files only)."),
    epochs: int = typer.Option(50, help="Training epochs."),
    imgsz: int = typer.Option(640, help="Training image size."),
    batch: int = typer.Option(16, help="Batch size."),
    seed: int = typer.Option(0, help="Seed (same seed, same weights on the same machine)."),
    device: str | None = typer.Option(None, help="cpu, 0, 1, ... (default: GPU if available)."),
    workers: int = typer.Option(2, help="Data loader workers."),
    augment: float = typer.Option(1.0, help="Strength of nadir augmentations (0 disables)."),
    gsd: float | None = typer.Option(None, help="GSD of the training imagery in m (recorded in the model card)."),
    chip_size: int = typer.Option(640, "--chip-size", help="Chip size when chipping scene folders."),
    split: str = typer.Option("0.8,0.2,0", help="Train,val,test scene fractions when chipping."),
) -> None:
    """Train the truck/railcar/boat detector (ultralytics YOLO), offline, from a YAML or local weights."""
    from freightwatch.datasets.chips import ChipConfig
    from freightwatch.training.detector import DetectorTrainConfig, train_detector

    cfg = DetectorTrainConfig(
        model=model, weights=weights, epochs=epochs, imgsz=imgsz, batch=batch, seed=seed, device=device,
        workers=workers, augment=augment, gsd=gsd,
        chip=ChipConfig(size=chip_size, fractions=_parse_fractions(split), seed=seed),
    )
    res = train_detector(data, out, cfg)
    typer.echo(f"weights: {res.weights}\ncard:    {res.card}\nmetrics: {res.metrics}")


def _parse_class_iou(items: list[str] | None) -> dict[str, float] | None:
    """``railcar=0.4`` options -> ``{"railcar": 0.4}``; ``none`` -> ``{}``; nothing -> ``None`` (the card's)."""
    if not items:
        return None
    if items == ["none"]:
        return {}
    return _parse_class_values(items, "--class-iou", 0.0, 1.0, lo_open=True)


@app.command("detect")
def detect_cmd(
    scene: Path = typer.Argument(..., help="GeoTIFF scene (any size)."),
    zones: Path | None = typer.Option(None, "--zones", help="Zones GeoJSON (lot, bridge, rail_yard, river, dock)."),
    out: Path = typer.Option(Path("runs/detect"), "--out", help="Output folder."),
    weights: Path | None = typer.Option(
        None, help="Detector weights, or bundled-synthetic for the faster synthetic-only YOLO11n "
        "(default: the bundled real-transfer YOLOv8s)."),
    conf: float | None = typer.Option(
        None, help="Score threshold for all classes (default: the model card's per-class counting thresholds, "
        "else 0.25)."),
    slice_size: int | None = typer.Option(None, "--slice-size", help="Slice size (default: model's image size)."),
    overlap: float = typer.Option(0.2, help="Slice overlap (fraction of the slice)."),
    batch: int = typer.Option(8, help="Slices per forward pass."),
    resample: bool = typer.Option(False, help="Resample the scene to the detector's training GSD."),
    dock_distance: float = typer.Option(15.0, "--dock-distance", help="Boats this close (m) to a dock are docked."),
    bands: str | None = typer.Option(None, help="RGB band choice for multi-band scenes, e.g. 3,2,1."),
    device: str | None = typer.Option(None, help="Torch device (cpu, 0, ...)."),
    precision: str = typer.Option("fp32", help="fp32, or bf16 (faster on CPUs with AMX/AVX512-BF16, slower "
                                  "elsewhere; scores shift slightly)."),
    iou: float = typer.Option(0.5, help="IoU threshold of the per-slice NMS (and of the partial merge)."),
    merge: str = typer.Option("partial", help="Cross-slice merge: partial (border-cut partial views give way "
                              "to whole ones), nms-ios or nms-iou (plain NMS, as SAHI's NMS postprocess)."),
    merge_threshold: float | None = typer.Option(
        None, "--merge-threshold",
        help="Overlap threshold of the merge (default 0.7 on intersection-over-smaller; --iou for nms-iou)."),
    gdal_cache_mb: int = typer.Option(128, "--gdal-cache-mb", min=0, help="GDAL block cache while scanning, MB "
                                      "(caps memory on huge scenes; 0: GDAL's default, 5 % of RAM)."),
    class_iou: list[str] | None = typer.Option(
        None, "--class-iou", help="CLASS=IOU (repeatable): per-class NMS IoU over --iou (default: the model "
        "card's calibrated ones); 'none' for --iou everywhere."),
    runtime: str = typer.Option("torch", help="Forward pass on the CPU: torch, onnxruntime (fp32) or openvino "
                                "(fp32/bf16); the last two are optional installs, ~1.5x faster at fp32."),
) -> None:
    """Detect trucks, railcars and boats in a scene; write GeoJSON, counts per zone and an overlay PNG."""
    from freightwatch.inference.detect import DetectConfig, detect_scene, write_detections
    from freightwatch.inference.merge import MERGES
    from freightwatch.models.detector import PRECISIONS, Detector
    from freightwatch.models.runtimes import check_runtime

    if precision not in PRECISIONS:  # before loading any weights
        raise typer.BadParameter(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if merge not in MERGES:
        raise typer.BadParameter(f"--merge must be one of {', '.join(MERGES)}, not {merge!r}")
    try:
        check_runtime(runtime, precision)
    except FreightwatchError as exc:
        raise typer.BadParameter(str(exc), param_hint="--runtime") from None
    cfg = DetectConfig(slice_size=slice_size, overlap=overlap, batch=batch, conf=conf, resample=resample,
                       dock_distance_m=dock_distance, bands=_parse_bands(bands), device=device,
                       precision=precision, iou=iou, merge=merge, merge_threshold=merge_threshold,
                       gdal_cache_mb=gdal_cache_mb or None, runtime=runtime,
                       class_iou=_parse_class_iou(class_iou))
    detector = Detector.load(weights)
    result = detect_scene(scene, detector, cfg, zones)
    files = write_detections(result, scene, out, bands=cfg.bands)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    table = Table(title=f"detections in {scene.name}")
    for col in ("zone", "class", "state", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for (z, c, s), n in sorted(result.counts().items()):
        table.add_row(z, c, s, str(n))
    stdout.print(table)
    for name, p in files.items():
        typer.echo(f"{name:>16}: {p}")


@app.command("compact")
def compact_cmd(
    weights: Path = typer.Argument(..., help="Detector: freightwatch .safetensors or a trusted ultralytics .pt."),
    out: Path = typer.Option(..., "--out", help="Output .safetensors (its .json card is written beside it)."),
    max_mb: float = typer.Option(9.5, "--max-mb", help="Largest file size in MB (10^6 bytes)."),
) -> None:
    """Store a detector in at most --max-mb: large tensors as 8-, 6- or 4-bit codes (no pickle).

    Measure the compacted weights (``freightwatch benchmark``) before shipping them: the codes
    change the network more than float16 storage does.
    """
    from freightwatch.models.detector import Detector

    if max_mb <= 0:
        raise typer.BadParameter("--max-mb must be positive")
    det = Detector.load(weights)
    try:
        path = det.save(out, max_bytes=int(max_mb * 1e6))
    except ValueError as exc:
        raise FreightwatchError(f"{weights}: {exc}") from None
    size = path.stat().st_size
    typer.echo(f"{path}: {size / 1e6:.2f} MB, tensors {det.card.extra['storage']['tensors']}")
