"""Train the truck / railcar / boat detector with ultralytics, offline and reproducibly.

Accepts a YOLO dataset (``data.yaml``), a COCO dataset (JSON next to its images), or a folder
of labeled scene folders (``scene.tif`` + ``labels.json``) that is chipped on the fly. Starts from
local pretrained weights when given (fine-tuning) or from a model YAML (from scratch). Writes
``<out>/detector.safetensors`` + ``detector.json`` (model card) + ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from freightwatch._progress import progress
from freightwatch.datasets.annotations import ImageLabels
from freightwatch.datasets.chips import ChipConfig, export_chips
from freightwatch.errors import FreightwatchError, InputFileError
from freightwatch.models import ultralytics_env
from freightwatch.models.detector import Detector, DetectorCard, git_commit
from freightwatch.taxonomy import CLASSES

log = logging.getLogger(__name__)


def nadir_augmentations(strength: float = 1.0) -> list[Any]:
    """Albumentations transforms suited to overhead imagery, wired into ultralytics training.

    Nadir views have no "up": 90-degree rotations and flips are free data. Sensor variety is
    simulated with blur, GSD jitter (down-then-up sampling), brightness/contrast, haze and JPEG
    artefacts. ``strength`` scales the probabilities (0 disables them).
    """
    import albumentations as A

    p = float(np.clip(strength, 0, 1))
    return [
        A.RandomRotate90(p=0.5 * p),
        A.HorizontalFlip(p=0.5 * p),
        A.VerticalFlip(p=0.5 * p),
        A.Downscale(scale_range=(0.6, 0.95), p=0.2 * p),
        A.GaussianBlur(blur_limit=(3, 5), p=0.15 * p),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.5 * p),
        A.RandomFog(fog_coef_range=(0.05, 0.2), alpha_coef=0.08, p=0.1 * p),
        A.ImageCompression(quality_range=(45, 95), p=0.3 * p),
    ]


@dataclass
class DetectorTrainConfig:
    """Settings of a detector training run (mirrors ``freightwatch train detector`` options).

    Attributes:
        model: Model YAML to build from (``yolo11n.yaml``) when no weights are given.
        weights: Local pretrained weights to fine-tune: a freightwatch ``.safetensors`` detector (no
            pickle) or an ultralytics ``.pt`` (a pickle: trusted input only).
        epochs: Training epochs.
        imgsz: Training image size.
        batch: Batch size.
        seed: Seed for Python, NumPy, torch and ultralytics.
        device: ``cpu``, ``0``... or ``None`` for automatic.
        workers: Data loader workers.
        augment: Strength of the nadir augmentations (0 disables).
        gsd: GSD (m/px) of the training imagery, recorded in the model card.
        chip: Chip settings used when training from scene folders.
        patience: Early-stopping patience in epochs.
        extra: Further keyword arguments for ``YOLO.train``.
    """

    model: str = "yolo11n.yaml"
    weights: Path | None = None
    epochs: int = 50
    imgsz: int = 640
    batch: int = 16
    seed: int = 0
    device: str | None = None
    workers: int = 2
    augment: float = 1.0
    gsd: float | None = None
    chip: ChipConfig = field(default_factory=ChipConfig)
    patience: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectorTrainResult:
    """Files of a finished run.

    Attributes:
        weights: ``detector.safetensors``.
        card: ``detector.json`` model card.
        metrics: ``metrics.json``.
        run_dir: ultralytics' own run folder (logs, ``results.csv``).
    """

    weights: Path
    card: Path
    metrics: Path
    run_dir: Path


def _is_scene_dir(p: Path) -> bool:
    return (p / "scene.tif").is_file() and (p / "labels.json").is_file()


def scene_folder_pairs(scene_dirs: Sequence[Path]) -> list[tuple[Path, ImageLabels]]:
    """``(scene.tif, labels)`` per scene folder, the folder's name as scene id when the labels have none."""
    from freightwatch.datasets.formats.coco import read_coco

    pairs = []
    for d in scene_dirs:
        im = read_coco(d / "labels.json").images[0]
        im.scene_id = im.scene_id or d.name
        pairs.append((d / "scene.tif", im))
    return pairs


def prepare_dataset(data: str | Path, work_dir: Path, chip: ChipConfig) -> tuple[Path, str, float | None]:
    """Turn any supported training input into an ultralytics ``data.yaml``.

    Returns:
        The ``data.yaml``, a description for the model card, and the GSD if the data tells it.
    """
    from freightwatch.datasets.formats.coco import read_coco
    from freightwatch.datasets.formats.yolo import write_yolo

    data = Path(data)
    if not data.exists():
        raise InputFileError(data, "training data does not exist")
    if data.is_file() and data.suffix in (".yaml", ".yml"):
        return data, f"YOLO dataset {data}", None
    if data.is_dir() and (data / "data.yaml").is_file():
        return data / "data.yaml", f"YOLO dataset {data}", None
    if data.is_file() and data.suffix == ".json":
        labels = read_coco(data)
        gsds = [im.gsd for im in labels.images if im.gsd]
        root = work_dir / "dataset"
        ids = sorted({im.scene_id or im.file_name for im in labels.images})
        from freightwatch.datasets.chips import split_scenes

        split = split_scenes(ids, chip.fractions, chip.seed)
        for name in ("train", "val", "test"):
            part = [im for im in labels.images if split[im.scene_id or im.file_name] == name]
            if part:
                write_yolo(part, root, split=name, image_source=data.parent)
        return root / "data.yaml", f"COCO dataset {data}", (float(np.median(gsds)) if gsds else None)
    if data.is_dir():
        scene_dirs = sorted(p for p in [data, *data.iterdir()] if p.is_dir() and _is_scene_dir(p))
        if not scene_dirs:
            raise InputFileError(data, "no data.yaml, COCO JSON or scene folders (scene.tif + labels.json) found")
        pairs = scene_folder_pairs(scene_dirs)
        gsds = [im.gsd for _, im in pairs if im.gsd]
        try:
            res = export_chips(pairs, work_dir / "dataset", chip)
        except ValueError as exc:
            raise FreightwatchError(f"{data}: {exc}") from exc
        return res.data_yaml, f"{len(pairs)} scene folders in {data} ({dict(res.chips)} chips)", (
            float(np.median(gsds)) if gsds else None
        )
    raise InputFileError(data, "unsupported training data (expected data.yaml, COCO .json or a folder)")


def _model_yaml_for(det: Detector, default: str) -> str:
    """The architecture YAML a freightwatch detector was built from (its card's ``arch``)."""
    arch = det.card.arch
    return arch if isinstance(arch, str) and arch.endswith((".yaml", ".yml")) else default


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (ultralytics also receives the seed with deterministic=True)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - ultralytics' augmentations draw from the global state
    torch.manual_seed(seed)


def train_detector(
    data: str | Path, out_dir: str | Path, config: DetectorTrainConfig | None = None
) -> DetectorTrainResult:
    """Train a detector and save it as safetensors + model card.

    Args:
        data: ``data.yaml`` / YOLO folder, COCO JSON, or a folder of scene folders.
        out_dir: Run folder; receives ``detector.safetensors``, ``detector.json``, ``metrics.json``
            and ultralytics' run under ``ultralytics/``.
        config: Training settings.

    Returns:
        Paths of what was written.
    """
    cfg = config or DetectorTrainConfig()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_yaml, data_desc, data_gsd = prepare_dataset(data, out, cfg.chip)
    seed_everything(cfg.seed)
    YOLO = ultralytics_env.yolo()  # noqa: N806 - the class
    if cfg.weights is not None:
        if not Path(cfg.weights).is_file():
            raise InputFileError(cfg.weights, "pretrained weights file does not exist")
        if Path(cfg.weights).suffix == ".safetensors":
            # our own weights (no pickle): fine-tune a freightwatch detector, same architecture
            det = Detector.load(cfg.weights)
            net = det.yolo.model.float()
            for p in net.parameters():
                p.requires_grad_(True)
            yolo = YOLO(_model_yaml_for(det, cfg.model), task="detect").load(net)
        else:
            # Build from the YAML and transfer matching layers from the (trusted) checkpoint, so a
            # checkpoint for other classes (e.g. COCO's 80) still fine-tunes into our 3-class head.
            yolo = YOLO(cfg.model, task="detect").load(str(cfg.weights))
        base = str(cfg.weights)
    else:
        yolo = YOLO(cfg.model, task="detect")
        base = None
    augs = nadir_augmentations(cfg.augment) if cfg.augment > 0 else None
    if augs:
        log.info("augmentations: %s", ", ".join(type(a).__name__ for a in augs))
    import torch

    device = cfg.device or ("0" if torch.cuda.is_available() else "cpu")
    train_args: dict[str, Any] = dict(
        data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, seed=cfg.seed,
        deterministic=True, device=device, workers=cfg.workers, project=str(out), name="ultralytics",
        exist_ok=True, plots=False, amp=False, verbose=False, patience=cfg.patience,
        # nadir imagery: vertical flips are as natural as horizontal ones; no colour-space tricks
        flipud=0.5, fliplr=0.5, degrees=0.0, hsv_h=0.01, mosaic=1.0, close_mosaic=max(1, cfg.epochs // 10),
        # GSD jitter of +-25 %: the detector is tied to a GSD (model card), unlike ground-level photos
        scale=0.25,
        # one optimizer step per batch: ultralytics' nominal batch of 64 would leave a CPU-sized
        # dataset of a few hundred chips with a handful of steps per epoch
        nbs=cfg.batch,
        augmentations=augs,
    )
    train_args.update(cfg.extra)
    with progress() as bar:
        task = bar.add_task("training detector", total=cfg.epochs)

        def _epoch_end(trainer: Any) -> None:
            m = trainer.metrics or {}
            bar.update(task, completed=trainer.epoch + 1,
                       description=f"training detector (mAP50 {m.get('metrics/mAP50(B)', 0):.3f})")
            log.info("epoch %d/%d: %s", trainer.epoch + 1, cfg.epochs,
                     ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in m.items() if isinstance(v, int | float)))

        yolo.add_callback("on_fit_epoch_end", _epoch_end)
        yolo.train(**train_args)
    trainer = yolo.trainer
    run_dir = Path(trainer.save_dir)
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    trained = YOLO(str(best), task="detect")  # our own checkpoint from this run: trusted
    metrics = {k: float(v) for k, v in (trainer.metrics or {}).items() if isinstance(v, int | float)}
    card = DetectorCard(
        classes=list(CLASSES), gsd=cfg.gsd or data_gsd, imgsz=cfg.imgsz, arch=cfg.model, base_weights=base,
        data=data_desc, epochs=cfg.epochs, seed=cfg.seed, commit=git_commit(Path(__file__).parent),
        metrics=metrics,
        extra={"augmentations": [type(a).__name__ for a in augs or []], "ultralytics_run": str(run_dir)},
    )
    det = Detector(trained, card)
    weights = det.save(out / "detector.safetensors")
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps({"metrics": metrics, "data": data_desc, "epochs": cfg.epochs}, indent=2))
    if (run_dir / "results.csv").is_file():
        shutil.copy2(run_dir / "results.csv", out / "results.csv")
    return DetectorTrainResult(weights=weights, card=weights.with_suffix(".json"), metrics=metrics_path,
                               run_dir=run_dir)
