"""The truck / railcar / boat detector: an ultralytics YOLO network plus a model card.

freightwatch's own detector weights are stored as ``.safetensors`` (the network's state dict)
next to a ``.json`` model card that holds the architecture and how the weights were made, so
they load without unpickling anything. Ultralytics ``.pt`` checkpoints are Python pickles that
can run code when loaded: accept them only from sources you trust.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from freightwatch.datasets.annotations import Annotation
from freightwatch.errors import InputFileError
from freightwatch.models import ultralytics_env
from freightwatch.taxonomy import CLASSES, ClassMapping

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"
"""Where the demo weights ship inside the package."""


BUNDLED_DETECTORS: dict[str, str] = {
    "bundled": "detector.safetensors",
    "bundled-real": "detector.safetensors",
    "bundled-synthetic": "detector_synthetic.safetensors",
}
"""Names accepted in place of a weights path. ``bundled`` (the default) is the real-transfer
YOLOv8s (synthetic scenes + real ship tiles, from real-photo weights, stored compact);
``bundled-real`` is the same file under the name it had when it shipped beside the default;
``bundled-synthetic`` the YOLO11n trained on synthetic scenes only (4x less compute)."""


def bundled_detector(name: str = "bundled") -> Path:
    """Path of a bundled detector (``.safetensors``), by a name of :data:`BUNDLED_DETECTORS`."""
    return BUNDLED_DIR / BUNDLED_DETECTORS[name]


PRECISIONS = ("fp32", "bf16")
"""Forward-pass precisions :meth:`Detector.predict` accepts."""


def _on_cpu(device: str | None) -> bool:
    """Whether predictions for ``device`` (``None``: ultralytics' automatic choice) run on the CPU."""
    if device is not None:
        return str(device).lower() == "cpu"
    import torch

    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def git_commit(cwd: Path | None = None) -> str | None:
    """Current git commit of the working tree, or ``None`` outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass
class DetectorCard:
    """What a detector is and how it was made (written next to its weights as JSON).

    Attributes:
        classes: Class names in output order.
        gsd: Ground sample distance (m/px) of the training imagery; scenes far from it are
            resampled or warned about.
        imgsz: Training and default inference image size.
        arch: Model YAML it was built from (e.g. ``yolo11n.yaml``).
        model_yaml: The parsed architecture (with ``nc``), enough to rebuild the network.
        base_weights: Pretrained weights it was fine-tuned from, if any.
        data: Training data description.
        epochs: Epochs trained.
        seed: Training seed.
        commit: freightwatch git commit of the training run.
        created: UTC timestamp.
        metrics: Validation metrics.
        count_conf: Per-class score thresholds for counting, chosen on calibration sites disjoint
            from training and test (empty: one threshold for all, 0.25 unless given).
        class_iou: Per-class NMS IoU thresholds chosen on the same calibration sites, for classes
            where the default (0.5) miscounts (empty: the default for all).
        extra: Anything else (augmentations, versions).
    """

    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    gsd: float | None = 0.5
    imgsz: int = 640
    arch: str = "yolo11n.yaml"
    model_yaml: dict[str, Any] = field(default_factory=dict)
    base_weights: str | None = None
    data: str = ""
    epochs: int = 0
    seed: int = 0
    commit: str | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    metrics: dict[str, Any] = field(default_factory=dict)
    count_conf: dict[str, float] = field(default_factory=dict)
    class_iou: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the card as JSON."""
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DetectorCard:
        """Read a card; unknown keys are kept in ``extra``.

        Raises:
            InputFileError: the file is missing or not a card.
        """
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "detector model card (.json next to the weights) does not exist")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFileError(path, f"cannot read model card ({exc})") from exc
        if isinstance(data, dict) and data.get("format") == "freightwatch-density":
            raise InputFileError(path, "this is a density model's config, not a detector card "
                                 "(use it with `freightwatch density`)")
        if not isinstance(data, dict) or "classes" not in data:
            raise InputFileError(path, "not a freightwatch detector card (no 'classes')")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        extra = {k: v for k, v in data.items() if k not in cls.__dataclass_fields__}
        try:
            card = cls(**known)
        except TypeError as exc:
            raise InputFileError(path, f"invalid detector card: {exc}") from exc
        if not isinstance(card.classes, list) or not all(isinstance(c, str) for c in card.classes) or not card.classes:
            raise InputFileError(path, "invalid detector card: 'classes' must be a non-empty list of names")
        if not isinstance(card.model_yaml, dict) or not isinstance(card.extra, dict):
            raise InputFileError(path, "invalid detector card: 'model_yaml' and 'extra' must be objects")
        card.extra.update(extra)
        return card


def _concat_groups(per_group: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image, the detections of every NMS group together."""
    if len(per_group) == 1:
        return per_group[0]
    return [tuple(np.concatenate(parts) for parts in zip(*img, strict=True))  # type: ignore[misc]
            for img in zip(*per_group, strict=True)]


def slice_nms(preds: np.ndarray, conf: float, iou: float, classes: Sequence[int] | None = None,
              max_det: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-wise greedy NMS of one image's raw YOLO output, as ultralytics' ``non_max_suppression``.

    The same steps (best class per anchor, score strictly above ``conf``, centre boxes to corners,
    greedy suppression above IoU ``iou`` within a class, at most ``max_det`` kept in score order),
    but run by OpenCV's C++ NMS: ultralytics otherwise falls back to a Python loop of torch ops
    (~3.5 ms a slice), or needs torchvision, whose import costs ~1 s per process.

    Args:
        preds: ``(4 + classes, anchors)`` float array, boxes as centre x, y, width, height.
        classes: Model class ids to keep (``None``: all).

    Returns:
        ``(xyxy (n, 4) float32, scores (n,), class ids (n,))``, highest score first.
    """
    import cv2

    p = np.asarray(preds, dtype=np.float32)
    cls_scores = p[4:]
    cls_ids = cls_scores.argmax(0)
    scores = cls_scores[cls_ids, np.arange(p.shape[1])]
    keep = scores > conf
    if classes is not None:
        keep &= np.isin(cls_ids, np.asarray(classes))
    idx = np.flatnonzero(keep)
    xy, half = p[:2, idx].T, p[2:4, idx].T / 2
    xyxy = np.concatenate([xy - half, xy + half], axis=1)
    scores, cls_ids = scores[idx], cls_ids[idx]
    if not len(idx):
        return xyxy, scores, cls_ids
    # OpenCV takes x, y, width, height; NMSBoxesBatched keeps classes apart
    rects = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]).astype(np.float64)
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(rects, scores, cls_ids.astype(np.int32), float(conf), float(iou)),
                      dtype=np.int64).reshape(-1)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_det]
    return xyxy[kept], scores[kept], cls_ids[kept]


class Detector:
    """A loaded detector: predicts oriented-as-axis-aligned boxes for truck, railcar and boat.

    Args:
        yolo: An ``ultralytics.YOLO`` object whose classes are freightwatch classes.
        card: Its model card.
    """

    def __init__(self, yolo: Any, card: DetectorCard) -> None:
        self.yolo = yolo
        self.card = card
        self._fused: Any = None  # the CPU fast path's fused copy of yolo.model (built on first use)
        self._fused_src: Any = None
        self._exported: dict[tuple[str, str, int], Any] = {}  # (runtime, precision, imgsz) -> ExportedNet
        names = yolo.model.names
        self._cls_of: dict[int, str | None] = {}
        mapping = ClassMapping.builtin()
        for i, n in (names.items() if isinstance(names, dict) else enumerate(names)):
            self._cls_of[int(i)] = mapping(str(n))
        if not any(self._cls_of.values()):
            raise ValueError(
                f"the detector's classes ({', '.join(map(str, self._cls_of))}: "
                f"{', '.join(str(n) for n in (names.values() if isinstance(names, dict) else names))}) "
                "include none of truck, railcar, boat"
            )

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> Detector:
        """Load weights: freightwatch ``.safetensors`` (+ ``.json`` card) or a trusted ultralytics ``.pt``.

        Args:
            path: Weights file, or a bundled name (``bundled``, ``bundled-synthetic``: see
                :data:`BUNDLED_DETECTORS`);
                the bundled demo detector when ``None``.

        Raises:
            InputFileError: missing file, unreadable weights, or a card that does not match.
        """
        if path is not None and str(path) in BUNDLED_DETECTORS and not Path(path).exists():
            path = bundled_detector(str(path))
        path = Path(path) if path is not None else bundled_detector()
        if not path.is_file():
            hint = " (run `make weights` to train the bundled demo weights)" if path == bundled_detector() else ""
            raise InputFileError(path, f"weights file does not exist{hint}")
        if path.suffix == ".safetensors":
            return cls._load_safetensors(path)
        if path.suffix == ".pt":
            return cls._load_pt(path)
        raise InputFileError(path, "unknown weights type: expected .safetensors (freightwatch) or .pt (ultralytics)")

    @classmethod
    def _load_safetensors(cls, path: Path) -> Detector:
        from safetensors import SafetensorError, safe_open

        from freightwatch.models import compact

        card_path = path.with_suffix(".json")
        try:  # the weights first: a random file named .safetensors is the problem, not its missing card
            with safe_open(str(path), "pt") as f:  # one read: tensors and the metadata that decodes them
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - a safe_open handle, not a dict
                metadata = f.metadata()
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputFileError(path, f"not a safetensors file ({str(exc).splitlines()[0][:200]})") from exc
        if compact.is_compact(metadata):
            try:
                state = compact.expand_state(state, metadata)
            except ValueError as exc:
                raise InputFileError(path, str(exc)) from exc
        card = DetectorCard.load(card_path)
        if not card.model_yaml:
            raise InputFileError(card_path, "model card has no 'model_yaml' architecture")
        YOLO = ultralytics_env.yolo()  # noqa: N806 - the class
        from ultralytics.nn.tasks import DetectionModel

        # The wrapper only lends its predictor: the network comes from model_yaml. A packaged YAML,
        # never card.arch as given: ultralytics downloads names like "yolo11x.pt" it cannot find.
        arch = card.arch if isinstance(card.arch, str) and card.arch.endswith((".yaml", ".yml")) else "yolo11n.yaml"
        try:
            yolo = YOLO(arch, task="detect")
        except Exception:  # noqa: BLE001 - a custom YAML not on this machine: any packaged one will do
            yolo = YOLO("yolo11n.yaml", task="detect")
        try:
            net = DetectionModel(cfg=dict(card.model_yaml), nc=len(card.classes), verbose=False)
        except Exception as exc:  # noqa: BLE001 - ultralytics raises KeyError/TypeError/... on bad YAML
            raise InputFileError(card_path, f"'model_yaml' is not a YOLO detection architecture ({exc!r})") from exc
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(ln.strip() for ln in str(exc).splitlines()[:3])[:300]
            raise InputFileError(path, f"weights do not match the architecture in {card_path.name} "
                                 f"({len(card.classes)} classes): {detail}") from exc
        net.names = dict(enumerate(card.classes))
        net.args = dict(yolo.model.args)
        net.task = "detect"
        net.eval()
        yolo.model = net
        try:
            return cls(yolo, card)
        except ValueError as exc:  # a checkpoint for other classes
            raise InputFileError(card_path, str(exc)) from exc

    @classmethod
    def _load_pt(cls, path: Path) -> Detector:
        YOLO = ultralytics_env.yolo()  # noqa: N806 - the class
        try:
            yolo = YOLO(str(path), task="detect")
        except Exception as exc:  # noqa: BLE001 - torch/pickle raise many types on bad files
            raise InputFileError(path, f"not an ultralytics checkpoint ({str(exc).splitlines()[0][:200]})") from exc
        card_path = path.with_suffix(".json")
        card = DetectorCard.load(card_path) if card_path.is_file() else DetectorCard(
            classes=[str(n) for n in yolo.model.names.values()], gsd=None, arch=str(path.name),
            imgsz=int(yolo.model.args.get("imgsz", 640)) if isinstance(yolo.model.args, dict) else 640,
        )
        try:
            return cls(yolo, card)
        except ValueError as exc:
            raise InputFileError(path, str(exc)) from exc

    def save(self, path: str | Path, half: bool = True, max_bytes: int | None = None) -> Path:
        """Save as ``.safetensors`` plus a ``.json`` card (no pickle).

        ``half`` stores floating-point tensors as float16: half the size (a YOLO11n in 5 MB instead
        of 10) for a change in detections below the noise of training; loading casts back.
        ``max_bytes`` stores the large weight tensors as 8-, 6- or 4-bit codes until the file fits
        that size (:mod:`freightwatch.models.compact`; how many bits each tensor got goes into the
        file's metadata and the card's ``extra["storage"]``). Measure the change in accuracy: these
        codes change the network more than float16 does.
        """
        from freightwatch.models import save_safetensors

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        net = self.yolo.model
        self.card.model_yaml = dict(net.yaml)
        self.card.classes = [self._cls_of[i] or str(net.names[i]) for i in sorted(self._cls_of)]
        state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
        metadata = {"format": "freightwatch-detector"}
        if max_bytes is not None:
            from collections import Counter

            from freightwatch.models import compact

            state, extra_meta = compact.compress_state(state, max_bytes)
            metadata.update(extra_meta)
            kinds = Counter(e["kind"] for e in json.loads(extra_meta[compact.META_KEY]).values())
            self.card.extra["storage"] = {"max_bytes": int(max_bytes), "tensors": dict(sorted(kinds.items()))}
        else:
            self.card.extra.pop("storage", None)  # from an earlier compact save of this detector
            if half:
                state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_safetensors(state, path, metadata=metadata)
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            path.unlink()  # no over-budget weights left without their card
            raise ValueError(f"{path}: {size} bytes after compaction, over the {max_bytes} asked")
        self.card.save(path.with_suffix(".json"))
        return path

    # -- prediction -------------------------------------------------------------------------------
    def predict(
        self,
        images: Sequence[np.ndarray],
        conf: float = 0.25,
        iou: float | Mapping[str, float] = 0.5,
        imgsz: int | None = None,
        max_det: int = 2000,
        device: str | None = None,
        precision: str = "fp32",
        runtime: str = "torch",
    ) -> list[list[Annotation]]:
        """Detect objects in a batch of RGB uint8 images.

        ``max_det`` defaults high: ultralytics' 300 silently caps recall on dense overhead tiles.

        On the CPU, a batch of images that already have the model's input size (the slices of
        sliced inference) skips ultralytics' predictor: one channels-last forward pass of the
        fused network, then ultralytics' NMS steps (run by OpenCV: :func:`slice_nms`), so the boxes
        are the predictor's. Other batches and other devices go through ``YOLO.predict``.

        Args:
            iou: NMS IoU threshold, or one per class name (classes not named get 0.5); NMS is
                class-wise either way.
            precision: ``fp32``, or ``bf16`` (about 1.5-2x faster where the CPU has AMX or
                AVX512-BF16, slower elsewhere; scores shift in the 2nd-3rd digit). PyTorch autocasts
                the whole network; OpenVINO keeps the stem in float32 (see
                :func:`freightwatch.models.runtimes.net_parts`), which keeps its boxes closer to fp32's.
            runtime: What runs the CPU fast path's forward pass: ``torch``, ``onnxruntime`` (fp32)
                or ``openvino`` (fp32 or bf16); see :mod:`freightwatch.models.runtimes`. Batches
                that do not take the fast path always run in PyTorch.

        Returns:
            One list of annotations (pixel boxes, ``score`` set) per image.
        """
        if not images:
            return []
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        if runtime != "torch":
            from freightwatch.models.runtimes import check_runtime

            check_runtime(runtime, precision)
        size = imgsz or self.card.imgsz
        groups = self._iou_groups(iou)
        if _on_cpu(device) and size % 32 == 0 and all(im.shape[:2] == (size, size) for im in images):
            dets = self._predict_direct(images, conf, groups, max_det, precision, runtime)
        else:
            bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]  # ultralytics expects OpenCV order
            per_group = []
            for thr, ids in groups:  # one pass per distinct threshold (usually one)
                results = self.yolo.predict(
                    bgr, conf=conf, iou=thr, imgsz=size, max_det=max_det, verbose=False, device=device,
                    batch=len(bgr), half=False, classes=ids,
                )
                per_group.append([(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(),
                                   r.boxes.cls.cpu().numpy()) for r in results])
            dets = _concat_groups(per_group)
        out: list[list[Annotation]] = []
        for xyxy, scores, cls_ids in dets:
            anns = [
                Annotation.from_bbox(name, xyxy[k], score=float(scores[k]))
                for k in range(len(xyxy))
                if (name := self._cls_of.get(int(cls_ids[k]))) is not None
            ]
            out.append(anns)
        return out

    def _iou_groups(self, iou: float | Mapping[str, float]) -> list[tuple[float, list[int] | None]]:
        """``(threshold, model class ids or None for all)`` per distinct NMS IoU threshold."""
        if not isinstance(iou, Mapping):
            return [(float(iou), None)]
        unknown = sorted(set(iou) - set(CLASSES))
        if unknown:
            raise ValueError(f"iou names unknown classes {unknown}; classes are {list(CLASSES)}")
        by_thr: dict[float, list[int]] = {}
        for k, name in self._cls_of.items():
            by_thr.setdefault(float(iou.get(name, 0.5)) if name else 0.5, []).append(k)
        if len(by_thr) == 1:
            return [(next(iter(by_thr)), None)]
        return [(thr, ids) for thr, ids in sorted(by_thr.items())]

    def _predict_direct(self, images: Sequence[np.ndarray], conf: float,
                        groups: list[tuple[float, list[int] | None]], max_det: int,
                        precision: str, runtime: str = "torch") -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        import torch

        net = self._fused_cpu_net()
        batch = np.stack(images)
        if runtime != "torch":
            key = (runtime, precision, int(batch.shape[1]))
            if key not in self._exported or self._exported[key][1] is not net:
                from freightwatch.models.runtimes import ExportedNet

                self._exported[key] = (ExportedNet(net, key[2], runtime, precision), net)
            preds = self._exported[key][0].run_images(batch)
        else:
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                preds = net(x)
        preds = (preds[0] if isinstance(preds, (list, tuple)) else preds).float()
        end2end = getattr(net, "end2end", False)  # NMS-free heads (YOLOv10/26): ultralytics filters those
        h, w = images[0].shape[:2]
        per_group = []
        for thr, ids in groups:  # class-wise NMS, restricted to the classes sharing this threshold
            kept = []
            for p in preds:
                if end2end:
                    from ultralytics.utils import nms

                    d = nms.non_max_suppression(p[None], conf, thr, ids, False, max_det=max_det, nc=0,
                                                end2end=True)[0].numpy()
                    xyxy, scores, cls_ids = d[:, :4].copy(), d[:, 4], d[:, 5]
                else:
                    xyxy, scores, cls_ids = slice_nms(p.numpy(), conf, thr, ids, max_det)
                # the predictor clips boxes to the image
                xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
                xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
                kept.append((xyxy, scores, cls_ids))
            per_group.append(kept)
        return _concat_groups(per_group)

    def _fused_cpu_net(self) -> Any:
        """The network with conv+BN fused, in eval mode and channels-last (built once, on first use)."""
        net = self._fused
        if net is None or self._fused_src is not self.yolo.model:
            import copy

            import torch

            ultralytics_env.yolo()  # thread settings (ultralytics pins torch to fewer threads)
            net = copy.deepcopy(self.yolo.model).float().cpu().eval()
            net = net.fuse(verbose=False) if hasattr(net, "fuse") else net
            net = net.to(memory_format=torch.channels_last)
            for p in net.parameters():
                p.requires_grad_(False)
            self._fused, self._fused_src = net, self.yolo.model
        return net
