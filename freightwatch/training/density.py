"""Train the coarse-imagery density model, and calibrate its count intervals.

Two data modes:

* **Simulated coarse** (default): labelled *high-resolution* scenes (synthetic or real, any label
  format :func:`~freightwatch.datasets.formats.read_labels` reads; scene folders with
  ``scene.tif`` + ``labels.json`` by default). Every sample is a random high-resolution crop seen
  through a random coarse sensor (:meth:`SensorModel.random`: GSD in 3-5 m, PSF, noise,
  radiometry, JPEG) with :func:`~freightwatch.datasets.coarse.degrade_sample`, whose density
  targets match the degraded grid exactly. The model never sees the same sensor twice.
* **Real coarse** (``coarse=True``): coarse scenes labelled with points (a GeoJSON of Point
  features with a ``class`` property, or any label format, whose object centres are used).
  Targets are splatted directly from the points; no degradation.

Both add random 90-degree rotations and flips (nadir images have no "up"). Half the crops (by
default) are centred near a random object of a random class, so rare classes (boats) are seen.

Loss: ``MSE`` of 2x2-pooled maps (tolerant to one-pixel shifts of a centre) plus ``L1`` of counts
in windows of 8 and 32 pixels and of the whole crop, so both the map and the counts are learnt.
The pixel term also reaches pixels the output ReLU has switched off (``revive``); without it a
first model never learnt trucks queueing on bridges.

Crops around objects pick rare classes as often as common ones and, within a class, isolated
objects as often as those in packed lots (``sparse_boost``).

Runs are deterministic per seed: samples are drawn from ``numpy`` generators keyed by
``(seed, epoch, step, index)`` and the network is initialised after ``torch.manual_seed``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from rasterio.windows import Window

from freightwatch._progress import progress
from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.coarse import (
    SensorModel,
    coarse_valid,
    degrade_image,
    degrade_labels,
    degrade_sample,
    density_for_window,
    density_targets,
)
from freightwatch.datasets.geo import Zone
from freightwatch.errors import FreightwatchError, InputFileError
from freightwatch.inference.density import SceneReader
from freightwatch.models.density import DensityConfig, DensityModel, normalise_batch
from freightwatch.models.detector import git_commit
from freightwatch.taxonomy import CLASSES, ClassMapping

log = logging.getLogger(__name__)


# -- configuration --------------------------------------------------------------------------------
@dataclass
class DensityTrainConfig:
    """Settings of a density training run (mirrors ``freightwatch train density`` options).

    Attributes:
        epochs: Epochs.
        steps_per_epoch: Batches per epoch (samples are drawn afresh, so an epoch is a budget).
        batch: Crops per batch.
        crop: Crop edge in coarse pixels.
        lr: Peak learning rate (AdamW, one-cycle cosine schedule).
        weight_decay: AdamW weight decay.
        gsd_range: Coarse GSDs drawn (metres), high-resolution mode.
        sigma: Density kernel std in coarse pixels.
        object_focus: Probability that a crop is placed around a random object.
        sparse_boost: Exponent ``p`` of the object-picking weight ``1 / n ** p``, ``n`` = objects of
            the same class within ``sparse_radius_m``: 1 makes isolated objects (a queue on a
            bridge, trucks on roads) as likely to be picked as those in a packed lot, which
            otherwise make up >90 % of the trucks and drown them out; 0 picks uniformly.
        sparse_radius_m: Neighbourhood radius of ``sparse_boost`` in metres.
        class_focus: Relative weight of each class when picking the object a crop is placed
            around (classes not named weigh 1; ``None``: every class present equally likely).
            ``{"railcar": 3}`` shows rail yards three times as often as each other class.
        bands: 3 (RGB) or 4 (RGB + NIR) input bands.
        nir_band: 1-based NIR band of 4-band scenes.
        pretrained: Optional MobileNetV2 ImageNet ``features`` weights for the encoder.
        init: Optional density weights to start from (fine-tuning), instead of a new network.
        coarse: Real coarse scenes with point labels (no simulation).
        label_format: Format of the label files (``coco``, ``yolo``, ``dota``, ``xview``, or
            ``points`` for a GeoJSON of points).
        labels_name: Label file name inside scene folders.
        image_name: Image file name inside scene folders.
        src_gsd: Source GSD to assume for scenes without a CRS or label GSD.
        pixel_weight: Weight of the pixel loss.
        count_weight: Weight of the window-count loss.
        revive: Gradient slope below zero of the output ReLU, for the pixel loss only. A plain ReLU
            head gets no gradient where it outputs 0, so a context it switched off early (trucks
            queueing on a bridge over water) stays off for good; this lets the pixel loss switch
            it back on. The maps' values are unchanged, and the count loss (which would push whole
            windows of background up and made training unstable at 0.3) keeps the plain ReLU.
        seed: Seed of sampling and initialisation.
        threads: ``torch.set_num_threads`` (``None``: leave as is).
        cache_pixels: Scenes up to this many pixels are held in memory; larger ones are read
            window by window.
        checkpoint_every: Save ``checkpoints/epoch_NNN.safetensors`` every this many epochs (0: never).
        show_progress: Progress bar (``None``: when stderr is a terminal).
    """

    epochs: int = 10
    steps_per_epoch: int = 200
    batch: int = 16
    crop: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    gsd_range: tuple[float, float] = (3.0, 5.0)
    sigma: float = 1.0
    object_focus: float = 0.6
    sparse_boost: float = 1.0
    sparse_radius_m: float = 30.0
    class_focus: dict[str, float] | None = None
    bands: int = 3
    nir_band: int | None = None
    pretrained: Path | None = None
    init: Path | None = None
    coarse: bool = False
    label_format: str = "coco"
    labels_name: str = "labels.json"
    image_name: str = "scene.tif"
    src_gsd: float | None = None
    pixel_weight: float = 1.0
    count_weight: float = 1.0
    revive: float = 0.3
    seed: int = 0
    threads: int | None = None
    cache_pixels: int = 40_000_000
    checkpoint_every: int = 1
    show_progress: bool | None = None


@dataclass
class DensityTrainResult:
    """Paths written by :func:`train_density`."""

    weights: Path
    config: Path
    metrics: Path


# -- data -----------------------------------------------------------------------------------------
@dataclass
class TrainScene:
    """A labelled scene: its image and its labels in that image's pixel grid.

    Attributes:
        image: The raster.
        labels: Objects in its pixel coordinates.
        gsd: Its GSD in metres.
    """

    image: Path
    labels: ImageLabels
    gsd: float


def read_points(path: str | Path, transform: Any, width: int, height: int,
                mapping: ClassMapping | None = None) -> ImageLabels:
    """Point labels from a GeoJSON of Point (or MultiPoint) features with a ``class`` property.

    Coordinates are in the raster's CRS (the file's ``crs`` member is not reprojected); class
    names go through ``mapping`` (default :meth:`ClassMapping.builtin`), unmapped ones are dropped.

    Raises:
        InputFileError: unreadable file or features without a class or point geometry.
    """
    path = Path(path)
    mapping = mapping or ClassMapping.builtin()
    try:
        data = json.loads(path.read_text())
        feats = data["features"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputFileError(path, f"not a GeoJSON FeatureCollection of points ({exc})") from exc
    inv = ~transform
    anns: list[Annotation] = []
    for i, f in enumerate(feats, start=1):
        props = (f or {}).get("properties") or {}
        name = props.get("class", props.get("cls"))
        geom = (f or {}).get("geometry") or {}
        if name is None or geom.get("type") not in ("Point", "MultiPoint"):
            raise InputFileError(path, f"feature {i}: needs a 'class' property and a Point geometry", line=i)
        cls = mapping(str(name))
        if cls is None:
            continue
        pts = [geom["coordinates"]] if geom["type"] == "Point" else geom["coordinates"]
        for x, y, *_ in pts:
            px, py = inv * (float(x), float(y))
            # A tiny box around the point: Annotation.center is then exactly the point.
            anns.append(Annotation.from_bbox(cls, (px - 0.5, py - 0.5, px + 0.5, py + 0.5)))
    return ImageLabels(path.name, width, height, anns, transform=transform)


def _pick_image_labels(images: list[ImageLabels], image: Path, labels_path: Path) -> ImageLabels:
    if len(images) == 1:
        return images[0]
    for im in images:
        if Path(im.file_name).name == image.name:
            return im
    raise InputFileError(labels_path, f"holds {len(images)} images and none is named {image.name}")


def load_train_scene(image: str | Path, labels_path: str | Path, label_format: str = "coco",
                     src_gsd: float | None = None, mapping: ClassMapping | None = None) -> TrainScene:
    """Read one labelled scene's metadata and labels (pixels are read later, window by window).

    Raises:
        InputFileError: unreadable files, labels for another image size, or an unknown GSD.
    """
    from freightwatch.datasets.formats import read_labels
    from freightwatch.datasets.raster import read_info

    image, labels_path = Path(image), Path(labels_path)
    info = read_info(image)
    if not labels_path.is_file():
        raise InputFileError(labels_path, f"label file for {image.name} does not exist")
    if label_format == "points":
        labels = read_points(labels_path, info.transform, info.width, info.height, mapping)
    else:
        lab_set = read_labels(labels_path, label_format, mapping=mapping)
        labels = _pick_image_labels(list(lab_set.images), image, labels_path)
    if (labels.width, labels.height) != (info.width, info.height) and labels.width and labels.height:
        raise InputFileError(labels_path, f"labels are for {labels.width}x{labels.height} px but {image.name} is "
                                          f"{info.width}x{info.height} px")
    gsd = info.gsd or labels.gsd or src_gsd
    if gsd is None:
        raise InputFileError(image, "GSD unknown (no CRS and no gsd in the labels): pass src_gsd / --src-gsd")
    labels = replace(labels, width=info.width, height=info.height, gsd=gsd)
    return TrainScene(image, labels, float(gsd))


def find_scenes(paths: Iterable[str | Path], image_name: str = "scene.tif",
                labels_name: str = "labels.json") -> list[tuple[Path, Path]]:
    """``(image, labels)`` pairs from scene folders, folders of scene folders, or images.

    A folder holding ``image_name`` is one scene; otherwise each sub-folder that holds one is. An
    image file takes ``labels_name`` from its own folder, else ``<stem>.json`` beside it.

    Raises:
        InputFileError: a path that does not exist or holds no scene.
    """
    found: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            if (p / image_name).is_file():
                found.append((p / image_name, p / labels_name))
                continue
            subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / image_name).is_file())
            if not subs:
                raise InputFileError(p, f"no scene folders (with {image_name}) found")
            found.extend((d / image_name, d / labels_name) for d in subs)
        elif p.is_file():
            lab = p.parent / labels_name
            found.append((p, lab if lab.is_file() else p.with_suffix(".json")))
        else:
            raise InputFileError(p, "does not exist")
    return found


class _Source:
    """Pixels of one training scene: cached whole when small, else read window by window."""

    def __init__(self, scene: TrainScene, bands: int, nir_band: int | None, cache_pixels: int) -> None:
        self.scene = scene
        self.reader = SceneReader(scene.image, bands, None, nir_band)
        self.width, self.height = self.reader.info.width, self.reader.info.height
        self.cache: tuple[np.ndarray, np.ndarray] | None = None
        if self.width * self.height <= cache_pixels:
            self.cache = self.reader.read(Window(0, 0, self.width, self.height))
            self.reader.close()
        lab = scene.labels
        self.centers = lab.centers()
        ids = {c: i for i, c in enumerate(CLASSES)}
        self.class_ids = np.array([ids[a.cls] for a in lab.annotations], dtype=np.intp)
        self.weights = np.ones(len(self.centers))

    def set_sparse_weights(self, radius_px: float, power: float) -> None:
        """Object-picking weights ``1 / n ** power``, ``n`` = same-class objects within ``radius_px``."""
        c, ids = self.centers, self.class_ids
        n = np.zeros(len(c))
        for start in range(0, len(c), 512):  # chunked: memory 512 x N
            d2 = ((c[start:start + 512, None, :] - c[None, :, :]) ** 2).sum(-1)
            n[start:start + 512] = ((d2 <= radius_px**2) & (ids[start:start + 512, None] == ids[None, :])).sum(1)
        self.weights = 1.0 / np.maximum(n, 1.0) ** power

    def read(self, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None:
            img, mask = self.cache
            out = np.zeros((h, w, img.shape[2]), np.uint8)
            m = np.zeros((h, w), bool)
            cx0, cy0 = max(0, x0), max(0, y0)
            cx1, cy1 = min(self.width, x0 + w), min(self.height, y0 + h)
            if cx1 > cx0 and cy1 > cy0:
                out[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = img[cy0:cy1, cx0:cx1]
                m[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = mask[cy0:cy1, cx0:cx1]
            return out, m
        return self.reader.read(Window(x0, y0, w, h))

    def crop_labels(self, x0: int, y0: int, w: int, h: int) -> ImageLabels:
        """Objects whose centre is inside the crop, in crop coordinates."""
        lab = self.scene.labels
        c = self.centers
        if len(c):
            inside = np.flatnonzero((c[:, 0] >= x0) & (c[:, 0] < x0 + w) & (c[:, 1] >= y0) & (c[:, 1] < y0 + h))
        else:
            inside = np.zeros(0, dtype=np.intp)
        anns = [lab.annotations[i].translated(-x0, -y0) for i in inside]
        return ImageLabels(lab.file_name, w, h, anns, gsd=self.scene.gsd)

    def close(self) -> None:
        if self.cache is None:
            self.reader.close()


def _weighted_pick(weights: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with probability proportional to ``weights`` (one ``rng.random()`` draw)."""
    cum = np.cumsum(weights)
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(weights) - 1)


class DensitySampler:
    """Draws training samples (coarse image, density targets, validity) deterministically.

    Args:
        scenes: Labelled scenes (high resolution, or coarse when ``cfg.coarse``).
        cfg: Training settings.
        classes: Class order of the targets.
    """

    def __init__(self, scenes: Sequence[TrainScene], cfg: DensityTrainConfig, classes: Sequence[str] = CLASSES):
        if not scenes:
            raise FreightwatchError("no training scenes")
        self.cfg = cfg
        self.classes = list(classes)
        lo = min(cfg.gsd_range)
        if not cfg.coarse:
            for s in scenes:
                if s.gsd > lo * (1 + 1e-6):
                    raise InputFileError(s.image, f"GSD {s.gsd:.2f} m is coarser than the simulated {lo:g} m: "
                                                  "use coarse mode (--coarse) for coarse imagery")
        self.sources = [_Source(s, cfg.bands, cfg.nir_band, cfg.cache_pixels) for s in scenes]
        self._focus: np.ndarray | None = None
        if cfg.class_focus:
            unknown = sorted(set(cfg.class_focus) - set(CLASSES))
            if unknown or any(w < 0 for w in cfg.class_focus.values()) or not any(cfg.class_focus.values()):
                raise FreightwatchError(f"class_focus {cfg.class_focus}: weights must be >= 0, not all 0, "
                                        f"for classes among {list(CLASSES)}")
            # indexed by the sources' class ids (the CLASSES order)
            self._focus = np.array([float(cfg.class_focus.get(c, 1.0)) for c in CLASSES])
        if cfg.sparse_boost:
            for src in self.sources:
                src.set_sparse_weights(cfg.sparse_radius_m / src.scene.gsd, cfg.sparse_boost)

    def close(self) -> None:
        """Close scene files."""
        for s in self.sources:
            s.close()

    def _origin(self, src: _Source, size: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of a ``size`` crop: near a random object (class-balanced) or uniform."""
        max_x, max_y = max(0, src.width - size), max(0, src.height - size)
        if len(src.centers) and rng.random() < self.cfg.object_focus:
            present = np.unique(src.class_ids)
            cls = (present[rng.integers(len(present))] if self._focus is None
                   else present[_weighted_pick(self._focus[present], rng)])
            idx = np.flatnonzero(src.class_ids == cls)
            cx, cy = src.centers[idx[_weighted_pick(src.weights[idx], rng)]]
            x0 = int(np.floor(cx - rng.uniform(0.1, 0.9) * size))
            y0 = int(np.floor(cy - rng.uniform(0.1, 0.9) * size))
        else:
            x0, y0 = int(rng.integers(0, max_x + 1)), int(rng.integers(0, max_y + 1))
        return int(np.clip(x0, 0, max_x)), int(np.clip(y0, 0, max_y))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One sample: ``(P, P, bands)`` uint8 image, ``(C, P, P)`` density, ``(P, P)`` validity."""
        P = self.cfg.crop  # noqa: N806 - the crop size
        src = self.sources[int(rng.integers(len(self.sources)))]
        if self.cfg.coarse:
            x0, y0 = self._origin(src, P, rng)
            img, valid = src.read(x0, y0, P, P)
            dens = density_for_window(src.scene.labels, Window(x0, y0, P, P), self.cfg.sigma, self.classes)
        else:
            sensor = SensorModel.random(rng, tuple(self.cfg.gsd_range))
            # Source crop S pixels; the sensor GSD is nudged so the coarse crop is exactly P pixels.
            S = max(P, int(round(P * sensor.gsd / src.scene.gsd)))  # noqa: N806
            S = min(S, max(src.width, src.height))  # noqa: N806 - tiny scenes: padded below
            sensor = replace(sensor, gsd=S * src.scene.gsd / P)
            x0, y0 = self._origin(src, S, rng)
            hr, hr_valid = src.read(x0, y0, S, S)
            lab = src.crop_labels(x0, y0, S, S)
            if hr_valid.all():
                img, clab, dens = degrade_sample(hr, lab, sensor, rng, sigma=self.cfg.sigma)
                if self.classes != list(CLASSES):  # a model with its own class order (fine-tuning)
                    dens = density_targets(clab, sigma=self.cfg.sigma, classes=self.classes)
                valid = np.ones(img.shape[:2], bool)
            else:  # nodata in the crop: keep it out of the image and of the loss
                img = degrade_image(hr, src.scene.gsd, sensor, rng, valid=hr_valid, out_shape=(P, P))
                valid = coarse_valid(hr_valid, (P, P))
                dens = density_targets(degrade_labels(lab, sensor.gsd, (P, P)), sigma=self.cfg.sigma,
                                       classes=self.classes)
            if img.ndim == 2:
                img = img[..., None]
        img, dens, valid = _pad_to(img, dens, valid, P)
        k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        img, dens, valid = np.rot90(img, k, (0, 1)), np.rot90(dens, k, (1, 2)), np.rot90(valid, k, (0, 1))
        if flip:
            img, dens, valid = img[:, ::-1], dens[:, :, ::-1], valid[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(dens), np.ascontiguousarray(valid)

    def batch(self, seed: int, epoch: int, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch of ``n`` samples; the same arguments always give the same batch."""
        imgs, dens, valid = [], [], []
        for i in range(n):
            im, d, v = self.sample(np.random.default_rng([seed, epoch, step, i]))
            imgs.append(im)
            dens.append(d)
            valid.append(v)
        x = np.stack(imgs)
        return torch.from_numpy(x), torch.from_numpy(np.stack(dens)), torch.from_numpy(np.stack(valid))


def _pad_to(img: np.ndarray, dens: np.ndarray, valid: np.ndarray, p: int) -> tuple[np.ndarray, ...]:
    h, w = img.shape[:2]
    if (h, w) == (p, p):
        return img, dens, valid
    img2 = np.zeros((p, p, img.shape[2]), img.dtype)
    dens2 = np.zeros((dens.shape[0], p, p), dens.dtype)
    valid2 = np.zeros((p, p), bool)
    hh, ww = min(h, p), min(w, p)
    img2[:hh, :ww], dens2[:, :hh, :ww], valid2[:hh, :ww] = img[:hh, :ww], dens[:, :hh, :ww], valid[:hh, :ww]
    return img2, dens2, valid2


# -- loss -----------------------------------------------------------------------------------------
def density_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    pixel_weight: float = 1.0,
    count_weight: float = 1.0,
    pixel_pred: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Pixel plus window-count loss on masked density maps.

    * pixel: ``MSE`` of 2x2 sums (in hundredths of an object per pixel, so it is of order 1);
    * counts: ``L1`` of sums over 8 x 8 and 32 x 32 windows and the whole crop, each divided by
      its window's side in units of 8 pixels, so large windows do not dominate.

    Args:
        pred: ``(N, C, H, W)`` predicted density.
        target: ``(N, C, H, W)`` target density.
        valid: ``(N, H, W)`` bool; invalid pixels count in neither.
        pixel_weight: Weight of the pixel term.
        count_weight: Weight of the count terms.
        pixel_pred: What the pixel term sees, when it should differ from ``pred`` in its gradient
            only (see ``DensityTrainConfig.revive``).

    Returns:
        The loss and its parts as floats (for logging).
    """
    m = valid[:, None].to(pred.dtype)
    p, t = pred * m, target * m
    pp = p if pixel_pred is None else pixel_pred * m
    p2, t2 = F.avg_pool2d(pp, 2, ceil_mode=True) * 4, F.avg_pool2d(t, 2, ceil_mode=True) * 4
    pix = F.mse_loss(p2 * 10, t2 * 10)
    parts = {"pixel": float(pix.detach())}
    cnt = pred.new_zeros(())
    for k in (8, 32):
        if min(p.shape[-2:]) >= k:
            dk = (F.avg_pool2d(p, k) - F.avg_pool2d(t, k)) * (k * k)
            term = dk.abs().mean() / (k / 8)
            parts[f"count{k}"] = float(term.detach())
            cnt = cnt + term
    whole = (p.sum(dim=(2, 3)) - t.sum(dim=(2, 3))).abs().mean() / (max(p.shape[-2:]) / 8)
    parts["count_crop"] = float(whole.detach())
    cnt = cnt + whole
    return pixel_weight * pix + count_weight * cnt, parts


# -- training -------------------------------------------------------------------------------------
def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries we call may use the global state


def train_density(
    data: Sequence[str | Path] | Sequence[TrainScene],
    out_dir: str | Path,
    cfg: DensityTrainConfig | None = None,
    val: Sequence[str | Path] | Sequence[TrainScene] | None = None,
    mapping: ClassMapping | None = None,
) -> DensityTrainResult:
    """Train a density model; write ``density.safetensors``, ``density.json`` and ``metrics.json``.

    Args:
        data: Scene folders / folders of scene folders / images (see :func:`find_scenes`), or
            already loaded :class:`TrainScene` objects.
        out_dir: Run folder.
        cfg: Settings.
        val: Optional validation scenes, the same kinds as ``data``: a fixed set of crops is
            scored after every epoch (count MAE per class), recorded in ``metrics.json``.
        mapping: Source class names -> freightwatch classes for the label files.

    Returns:
        Paths of the weights, config and metrics.

    Raises:
        InputFileError: unreadable scenes or labels.
    """
    cfg = cfg or DensityTrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    scenes = _as_scenes(data, cfg, mapping)
    val_scenes = _as_scenes(val, cfg, mapping) if val else []
    _set_seed(cfg.seed)
    if cfg.init is not None:
        model = DensityModel.load(cfg.init)
        model.config.gsd_range = tuple(cfg.gsd_range)  # type: ignore[assignment]
    else:
        mcfg = DensityConfig.for_bands(cfg.bands, gsd_range=tuple(cfg.gsd_range), sigma_px=cfg.sigma)
        model = DensityModel.create(mcfg, pretrained=cfg.pretrained)
    net = model.net
    mcfg = model.config
    sampler = DensitySampler(scenes, cfg, mcfg.classes)
    val_batches = _validation_batches(val_scenes, cfg, mcfg.classes) if val_scenes else []
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, cfg.epochs * cfg.steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1,
                                                anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0)
    history: list[dict[str, Any]] = []
    t0 = time.time()
    ckpt_dir = out / "checkpoints"
    try:
        with progress(disable=None if cfg.show_progress is None else not cfg.show_progress) as bar:
            task = bar.add_task("training density", total=total)
            for epoch in range(cfg.epochs):
                net.train()
                sums: dict[str, float] = {}
                for step in range(cfg.steps_per_epoch):
                    x, y, v = sampler.batch(cfg.seed, epoch, step, cfg.batch)
                    z = net(normalise_batch(x.numpy(), mcfg.mean, mcfg.std), logits=True)
                    pred = F.relu(z)
                    # Same values, but the pixel loss also reaches pixels the ReLU has switched off.
                    neg = z.clamp(max=0)
                    revived = pred + cfg.revive * (neg - neg.detach()) if cfg.revive else None
                    loss, parts = density_loss(pred, y, v, cfg.pixel_weight, cfg.count_weight, pixel_pred=revived)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    parts["loss"] = float(loss.detach())
                    for k, val_ in parts.items():
                        sums[k] = sums.get(k, 0.0) + val_
                    bar.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs} loss {parts['loss']:.3f}")
                rec: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 1),
                                       **{k: v / cfg.steps_per_epoch for k, v in sums.items()}}
                if val_batches:
                    rec["val"] = _validate(model, val_batches)
                history.append(rec)
                log.info("epoch %d: %s", epoch + 1, json.dumps(rec))
                if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
                    model.save(ckpt_dir / f"epoch_{epoch + 1:03d}.safetensors")
    finally:
        sampler.close()
    net.eval()
    mcfg.training = {
        **mcfg.training,
        "mode": "coarse points" if cfg.coarse else "simulated coarse sensor (SensorModel.random)",
        "scenes": [f"{s.image.parent.name}/{s.image.name}" for s in scenes],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "commit": git_commit(Path(__file__).parent),
        "seconds": round(time.time() - t0, 1),
        "parameters": model.num_parameters(),
    }
    if history and "val" in history[-1]:
        mcfg.metrics = {**mcfg.metrics, "val_crops": history[-1]["val"]}
    weights = model.save(out / "density.safetensors")
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps({"history": history, "final": history[-1] if history else {}}, indent=2))
    return DensityTrainResult(weights, weights.with_suffix(".json"), metrics_path)


def _as_scenes(data: Sequence[Any] | None, cfg: DensityTrainConfig, mapping: ClassMapping | None) -> list[TrainScene]:
    if not data:
        return []
    if all(isinstance(d, TrainScene) for d in data):
        return list(data)
    pairs = find_scenes(data, cfg.image_name, cfg.labels_name)
    return [load_train_scene(img, lab, cfg.label_format, cfg.src_gsd, mapping) for img, lab in pairs]


def _validation_batches(scenes: Sequence[TrainScene], cfg: DensityTrainConfig, classes: Sequence[str],
                        n_batches: int = 4) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    sampler = DensitySampler(scenes, cfg, classes)
    try:
        # A seed stream apart from training's (no training run reaches epoch 2**32 - 1).
        return [sampler.batch(cfg.seed, 2**32 - 1, i, cfg.batch) for i in range(n_batches)]
    finally:
        sampler.close()


@torch.no_grad()
def _validate(model: DensityModel, batches: Sequence[tuple[torch.Tensor, ...]]) -> dict[str, Any]:
    model.net.eval()
    errs, trues = [], []
    for x, y, v in batches:
        p = model.net(normalise_batch(x.numpy(), model.config.mean, model.config.std)) * v[:, None]
        errs.append((p.sum(dim=(2, 3)) - (y * v[:, None]).sum(dim=(2, 3))).abs())
        trues.append((y * v[:, None]).sum(dim=(2, 3)))
    e, t = torch.cat(errs).mean(0), torch.cat(trues).mean(0)
    return {c: {"crop_mae": round(float(e[i]), 3), "crop_mean": round(float(t[i]), 3),
                "crop_rel_mae": round(float(e[i] / t[i]), 4) if t[i] > 0 else None}
            for i, c in enumerate(model.config.classes)}


# -- zone truth, calibration and evaluation --------------------------------------------------------
def zone_truth(
    labels: ImageLabels, zones: Sequence[Zone], classes: Sequence[str] = CLASSES
) -> dict[tuple[str, str], int]:
    """True counts per ``(zone, class)``: objects whose centre is inside the zone; ``all`` for the image.

    Centres are tested in map coordinates (``labels.transform``); ``all`` counts centres inside
    the image (``0 <= x < width``, the ownership rule of the density targets).
    """
    import shapely

    out: dict[tuple[str, str], int] = {}
    c = labels.centers()
    cls = np.array([a.cls for a in labels.annotations])
    inside = (c[:, 0] >= 0) & (c[:, 0] < labels.width) & (c[:, 1] >= 0) & (c[:, 1] < labels.height) if len(c) \
        else np.zeros(0, bool)
    for k in classes:
        out[("all", k)] = int(((cls == k) & inside).sum()) if len(c) else 0
    if zones and len(c):
        if labels.transform is None:
            raise ValueError("labels need a transform to place zones")
        mx, my = labels.transform * (c[:, 0], c[:, 1])
        for z in zones:
            hit = shapely.contains_xy(z.geometry, np.asarray(mx), np.asarray(my))
            for k in classes:
                out[(z.name, k)] = int((hit & (cls == k)).sum())
    else:
        for z in zones:
            for k in classes:
                out[(z.name, k)] = 0
    return out


@dataclass
class ZoneCount:
    """A predicted and a true count of one class in one zone of one evaluated scene.

    Attributes:
        site: Scene identifier.
        gsd: Coarse GSD in metres.
        zone: Zone name (``all`` = whole scene).
        kind: Zone kind (``scene`` for ``all``).
        cls: Class.
        relevant: Whether the zone is meant to count the class (``Zone.classes``; always for ``all``).
        pred: Predicted (corrected) count.
        true: True count.
        lower: Interval lower bound (``nan`` when uncalibrated).
        upper: Interval upper bound.
    """

    site: str
    gsd: float
    zone: str
    kind: str
    cls: str
    relevant: bool
    pred: float
    true: float
    lower: float = math.nan
    upper: float = math.nan


def evaluate_site(
    model: DensityModel,
    image: np.ndarray,
    labels: ImageLabels,
    zones: Sequence[Zone],
    gsd: float,
    work_dir: str | Path,
    rng: np.random.Generator,
    sensor: SensorModel | None = None,
    site: str = "",
    coverage: float = 0.9,
    tta: bool | None = None,
) -> list[ZoneCount]:
    """Degrade a labelled high-resolution site to ``gsd``, run the full inference pipeline, score zones.

    The coarse scene is written as a GeoTIFF and counted with
    :func:`~freightwatch.inference.density.density_scene` exactly as a user's scene would be.

    Args:
        model: The model.
        image: High-resolution ``(H, W, 3)`` image.
        labels: Its labels (with ``gsd`` and ``transform``).
        zones: Zones in the labels' CRS.
        gsd: Coarse GSD in metres.
        work_dir: Folder for the coarse scene and outputs (overwritten).
        rng: Generator for the sensor (when ``sensor`` is ``None``) and its noise.
        sensor: Sensor to simulate; ``SensorModel.random(rng, (gsd, gsd))`` by default.
        site: Identifier recorded in the results.
        coverage: Interval coverage.
        tta: Test-time augmentation (``None``: as the model's calibration says).
    """
    from freightwatch.datasets.geo import write_geotiff
    from freightwatch.inference.density import DensityRunConfig, density_scene

    sensor = SensorModel.random(rng, (gsd, gsd)) if sensor is None else replace(sensor, gsd=gsd)
    coarse, clab, _ = degrade_sample(image, labels, sensor, rng, sigma=model.config.sigma_px)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    scene = write_geotiff(work / "scene.tif", np.ascontiguousarray(coarse.transpose(2, 0, 1)), labels.crs,
                          clab.transform, photometric_rgb=True)
    res = density_scene(scene, model, work / "out", list(zones),
                        DensityRunConfig(coverage=coverage, tta=tta, show_progress=False))
    truth = zone_truth(clab, zones, model.config.classes)
    kinds = {z.name: z.kind for z in zones}
    rel = {z.name: set(z.classes) for z in zones}
    out = []
    for r in res.rows:
        z, c = r["zone"], r["class"]
        relevant = z == "all" or not rel.get(z) or c in rel[z]
        out.append(ZoneCount(site, float(clab.gsd or gsd), z, kinds.get(z, "scene"), c, relevant, float(r["count"]),
                             float(truth[(z, c)]), float(r["lower"]), float(r["upper"])))
    return out


def calibrate_intervals(
    counts: Sequence[ZoneCount],
    gsd_nodes: Sequence[float],
    k: float = 5.0,
    coverage: float = 0.9,
    classes: Sequence[str] = CLASSES,
    fit_scale: bool = True,
    pool_radius: float = 0.6,
    min_kind_n: int = 40,
    tta: bool = False,
) -> dict[str, Any]:
    """Split-conformal calibration of zone-count intervals from counts on held-out sites.

    Per class: a count scale ``sum(true) / sum(pred)`` at each GSD node (from the counts nearest
    to it; corrects a systematic, GSD-dependent bias), then at each node the sorted signed
    normalised residuals ``(true - s * pred) / (k + s * pred)`` of the counts within
    ``pool_radius`` metres of the node (``s`` interpolated at each count's own GSD). Pooling
    neighbouring GSDs multiplies the calibration sample per node; the error changes slowly with
    GSD. Residuals are kept for all zone kinds pooled and, for kinds with at least ``min_kind_n``
    residuals at every node, per kind (errors in a packed lot and on a bridge differ). Stored in
    :attr:`DensityConfig.interval` and used by :func:`~freightwatch.models.density.count_interval`.

    Args:
        counts: Raw (uncorrected) counts of zones of calibration sites (not training sites);
            only ``relevant`` ones are used.
        gsd_nodes: GSDs at which the calibration sites were evaluated.
        k: Count floor of the residual normalisation.
        coverage: Default coverage recorded.
        classes: Classes to calibrate.
        fit_scale: Fit the per-class count scale (else 1).
        pool_radius: Residuals of counts this close (metres) to a node are pooled into it.
        min_kind_n: Fewest residuals per node for a zone kind to get its own quantiles.
        tta: Whether the counts were made with test-time augmentation (inference then follows).

    Returns:
        The ``interval`` dictionary.
    """
    nodes = sorted(float(g) for g in gsd_nodes)
    rows = [c for c in counts if c.relevant]
    scale: dict[str, list[float]] = {}
    residuals: dict[str, list[list[float]]] = {}
    by_kind: dict[str, dict[str, list[list[float]]]] = {}
    n: dict[str, list[int]] = {}

    def pools(res: list[tuple[float, float]]) -> list[list[float]]:
        return [sorted(round(r, 5) for g, r in res if abs(g - node) <= pool_radius + 1e-6) for node in nodes]

    for cls in classes:
        mine = [c for c in rows if c.cls == cls]
        scale[cls] = []
        for i in range(len(nodes)):
            sel = [c for c in mine if int(np.argmin([abs(c.gsd - x) for x in nodes])) == i]
            sp, st = sum(c.pred for c in sel), sum(c.true for c in sel)
            s = float(np.clip(st / sp, 0.5, 2.0)) if fit_scale and sp > 1.0 and st > 0 else 1.0
            scale[cls].append(round(s, 5))
        res: dict[str, list[tuple[float, float]]] = {}
        for c in mine:
            p = c.pred * float(np.interp(c.gsd, nodes, scale[cls]))
            res.setdefault(c.kind, []).append((c.gsd, (c.true - p) / (k + p)))
        residuals[cls] = pools([r for kind_res in res.values() for r in kind_res])
        n[cls] = [len(r) for r in residuals[cls]]
        by_kind[cls] = {}
        for kind, kind_res in sorted(res.items()):
            table = pools(kind_res)
            if min(len(r) for r in table) >= min_kind_n:
                by_kind[cls][kind] = table
    return {
        "method": "split-conformal on held-out synthetic sites: per class and GSD node, count scale "
                  "sum(true)/sum(pred), then quantiles of (true - count) / (k + count) pooled within "
                  f"{pool_radius:g} m of the node, per zone kind where >= {min_kind_n} residuals; linear in GSD",
        "k": float(k),
        "coverage": float(coverage),
        "tta": bool(tta),
        "gsd_nodes": nodes,
        "pool_radius": float(pool_radius),
        "scale": scale,
        "residuals": residuals,
        "residuals_by_kind": by_kind,
        "n": n,
    }


def apply_calibration(counts: Sequence[ZoneCount], interval: dict[str, Any], coverage: float = 0.9) -> list[ZoneCount]:
    """Counts as a model with calibration ``interval`` would report them (scale and interval)."""
    from freightwatch.models.density import corrected_count, count_interval

    out = []
    for c in counts:
        p = corrected_count(interval, c.pred, c.cls, c.gsd)
        lo, hi = count_interval(interval, p, c.cls, c.gsd, coverage, c.kind)
        out.append(replace(c, pred=p, lower=lo, upper=hi))
    return out


def summarise(counts: Sequence[ZoneCount], gsds: Sequence[float] | None = None) -> dict[str, Any]:
    """Accuracy figures of zone counts: relative MAE per class and zone kind per GSD, interval coverage.

    ``rel_mae = sum |pred - true| / sum true`` over the zones of the headline kind of each class
    (trucks: ``lot``; railcars: ``rail_yard``; boats: ``river``); ``interval_rel_halfwidth`` the
    median half-width of their intervals relative to the count; coverage is the fraction of
    relevant zone counts (including ``all``) inside their interval.
    """
    headline = {"truck": ("lot",), "railcar": ("rail_yard",), "boat": ("river",)}
    gsd_list = sorted({round(c.gsd, 2) for c in counts}) if gsds is None else [round(g, 2) for g in gsds]

    def near(c: ZoneCount, g: float) -> bool:
        return abs(c.gsd - g) < 0.25

    out: dict[str, Any] = {"rel_mae": {}, "coverage": {}, "n_zones": {}, "interval_rel_halfwidth": {}}
    for cls, kinds in headline.items():
        out["rel_mae"][cls], out["n_zones"][cls], out["interval_rel_halfwidth"][cls] = {}, {}, {}
        for g in gsd_list:
            sel = [c for c in counts if c.cls == cls and c.kind in kinds and near(c, g)]
            t = sum(c.true for c in sel)
            out["rel_mae"][cls][f"{g:g}"] = round(sum(abs(c.pred - c.true) for c in sel) / t, 4) if t else None
            out["n_zones"][cls][f"{g:g}"] = len(sel)
            hw = [(c.upper - c.lower) / 2 / max(c.pred, 1.0) for c in sel if math.isfinite(c.lower)]
            out["interval_rel_halfwidth"][cls][f"{g:g}"] = round(float(np.median(hw)), 4) if hw else None
    rel = [c for c in counts if c.relevant and math.isfinite(c.lower)]
    for cls in CLASSES:
        out["coverage"][cls] = {}
        for g in gsd_list:
            sel = [c for c in rel if c.cls == cls and near(c, g)]
            out["coverage"][cls][f"{g:g}"] = round(np.mean([c.lower <= c.true <= c.upper for c in sel]), 4) \
                if sel else None
    out["coverage"]["overall"] = round(float(np.mean([c.lower <= c.true <= c.upper for c in rel])), 4) if rel else None
    per_kind: dict[str, Any] = {}
    for c in counts:
        if not c.relevant:
            continue
        key = f"{c.cls}@{c.kind}"
        d = per_kind.setdefault(key, {"abs_err": 0.0, "true": 0.0, "n": 0, "covered": 0})
        d["abs_err"] += abs(c.pred - c.true)
        d["true"] += c.true
        d["n"] += 1
        d["covered"] += int(c.lower <= c.true <= c.upper)
    out["rel_mae_by_zone_kind_all_gsds"] = {
        k: {"rel_mae": round(v["abs_err"] / v["true"], 4) if v["true"] else None, "n": v["n"],
            "mean_true": round(v["true"] / v["n"], 2), "coverage": round(v["covered"] / v["n"], 4)}
        for k, v in sorted(per_kind.items())
    }
    return out

