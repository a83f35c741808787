"""Initialise a narrow YOLO from a wider pretrained one by weight selection.

A small network trained from a YAML learns nothing from real photographs, and the only real-photo
detector here (a YOLOv8s) is too large to bundle. YOLOv8n and YOLOv8s share their depth and differ
only in width (0.25 vs 0.50): every YOLOv8n tensor has the shape of a YOLOv8s tensor with some
dimensions halved. *Weight selection* (Xu et al., "Initializing Models with Larger Ones", ICLR 2024)
initialises the small model with a uniform subset of the large model's weights and fine-tunes it.
Measured here (docs/real_imagery.md), a YOLOv8n selected from the real-photo YOLOv8s beats a
YOLOv8n from scratch on real ship tiles after 2 epochs but not a YOLO11n pretrained on synthetic
scenes: with batch-norm convolutions, half the input channels decorrelate the features within a
few blocks.

Selection here takes every k-th index of each dimension that is k times smaller in the target
(k = 2 for v8s -> v8n) and every index of a dimension of equal size. Taking every k-th index,
rather than the first n, commutes with the channel ``chunk`` / ``Concat`` of C2f, SPPF and the
neck (their parts all have sizes divisible by k), so the channels a layer keeps are exactly the
channels the next layer reads. Tensors whose shapes are not related that way (a class head for
other classes) keep their fresh initialisation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class SelectionReport:
    """What :func:`select_weights` did.

    Attributes:
        selected: Target tensors filled from the source (keys).
        skipped: Target tensors kept as initialised, with the reason.
        parameters: Number of target values filled from the source.
        total: Number of target values.
    """

    selected: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    parameters: int = 0
    total: int = 0


def _index_step(src: int, dst: int) -> int | None:
    """Stride that selects ``dst`` of ``src`` indices uniformly, or None when there is none."""
    if dst == src:
        return 1
    if dst < src and src % dst == 0:
        return src // dst
    return None


def select_weights(source: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[dict[str, Any], SelectionReport]:
    """Fill a narrow network's state from a wider one's by uniform selection.

    Args:
        source: State dict of the wide, pretrained network (e.g. YOLOv8s).
        target: State dict of the narrow network as initialised (e.g. YOLOv8n); same keys for the
            layers they share.

    Returns:
        The new target state dict (tensors not selectable are the target's own) and a report.
    """
    out: dict[str, Any] = {}
    rep = SelectionReport()
    for key, t in target.items():
        rep.total += int(t.numel())
        s = source.get(key)
        if s is None:
            out[key] = t
            rep.skipped[key] = "not in the source"
            continue
        if s.ndim != t.ndim:
            out[key] = t
            rep.skipped[key] = f"rank {s.ndim} vs {t.ndim}"
            continue
        steps = [_index_step(a, b) for a, b in zip(s.shape, t.shape, strict=True)]
        if any(k is None for k in steps):
            out[key] = t
            rep.skipped[key] = f"shape {tuple(s.shape)} vs {tuple(t.shape)}"
            continue
        sel = s[tuple(slice(None, None, k) for k in steps)] if s.ndim else s
        out[key] = sel.to(dtype=t.dtype).clone().contiguous()
        rep.selected.append(key)
        rep.parameters += int(t.numel())
    return out, rep


def select_detector(source_pt: str | Path, model_yaml: str = "yolov8n.yaml", out: str | Path | None = None,
                    gsd: float | None = 0.5, imgsz: int = 640) -> tuple[Path, SelectionReport]:
    """Build a freightwatch detector (``model_yaml``, our 3 classes) from a wider ultralytics checkpoint.

    Args:
        source_pt: The wide ultralytics ``.pt`` checkpoint (a pickle: trusted input only).
        model_yaml: Target architecture; same depth as the source, narrower width.
        out: Where to write the ``.safetensors`` (+ ``.json`` card); default next to nothing:
            ``<source stem>_to_<yaml stem>.safetensors`` in the current directory.
        gsd: Ground sample distance recorded in the card.
        imgsz: Image size recorded in the card.

    Returns:
        The written weights and the selection report. Fine-tune the result (``--init``): its class
        head is untrained and its batch-norm statistics are the wide network's.
    """
    from freightwatch.errors import InputFileError
    from freightwatch.models import ultralytics_env
    from freightwatch.models.detector import Detector, DetectorCard
    from freightwatch.taxonomy import CLASSES

    source_pt = Path(source_pt)
    if not source_pt.is_file():
        raise InputFileError(source_pt, "source checkpoint does not exist")
    YOLO = ultralytics_env.yolo()  # noqa: N806 - the class
    try:
        src = YOLO(str(source_pt), task="detect").model.float().state_dict()
    except Exception as exc:  # noqa: BLE001 - torch/pickle raise many types on bad files
        raise InputFileError(source_pt, f"not an ultralytics checkpoint ({str(exc).splitlines()[0][:200]})") from exc
    from ultralytics.nn.tasks import DetectionModel

    net = DetectionModel(cfg=model_yaml, nc=len(CLASSES), verbose=False)
    state, rep = select_weights(src, net.state_dict())
    net.load_state_dict(state, strict=True)
    net.names = dict(enumerate(CLASSES))
    yolo = YOLO(model_yaml, task="detect")
    net.args = dict(yolo.model.args)
    net.task = "detect"
    yolo.model = net
    card = DetectorCard(classes=list(CLASSES), gsd=gsd, imgsz=imgsz, arch=model_yaml,
                        base_weights=str(source_pt), data="none (weight selection only: fine-tune before use)",
                        extra={"weight_selection": {"from": source_pt.name, "selected_tensors": len(rep.selected),
                                                    "skipped_tensors": len(rep.skipped),
                                                    "selected_fraction": round(rep.parameters / max(rep.total, 1), 4)}})
    det = Detector(yolo, card)
    dest = Path(out) if out is not None else Path(f"{source_pt.stem}_to_{Path(model_yaml).stem}.safetensors")
    path = det.save(dest, half=False)
    log.info("weight selection %s -> %s: %d tensors selected (%.1f %% of values), %d kept fresh",
             source_pt.name, model_yaml, len(rep.selected), 100 * rep.parameters / max(rep.total, 1), len(rep.skipped))
    return path, rep
