"""The density model for coarse (3-5 m) imagery: one non-negative density map per class.

At 3-5 m a truck or railcar is 1-6 pixels long and packed lots blur into texture, so objects are
counted, not detected: the network regresses a per-pixel density whose integral over any region is
the expected number of objects whose centre lies there (the targets of
:func:`freightwatch.datasets.coarse.density_targets`).

Architecture (:class:`DensityNet`), chosen for 1-6 pixel objects on a CPU budget:

* **Full-resolution stem**: two 3x3 convolutions at stride 1. A stride-2 first layer (as every
  ImageNet encoder has) would average a 1-pixel-wide railcar with its surroundings before any
  learnt filter sees it; this branch keeps it and feeds the last decoder stage.
* **Encoder**: MobileNetV2 ``features[:7]`` (stride 8, 32 channels, 55 k parameters), optionally
  initialised from ImageNet weights (``pretrained``). Stopping at stride 8 keeps a 3 m scene's
  lot rows (about 4-5 pixels apart) resolvable while giving a receptive field of about 100 pixels
  (300-500 m), enough to see a lot or a yard as a whole.
* **Context**: two dilated depthwise-separable residual blocks at stride 8 (dilation 2 and 4)
  widen the receptive field cheaply, which helps density in large uniform areas.
* **Decoder**: U-Net style, x2 upsampling with skip connections at strides 4, 2 and 1, so the
  output is on the input grid (stride 1): ``density.tif`` shares the scene's grid exactly.
* **Head**: 1x1 convolution and ReLU, times a fixed gain. ReLU makes the maps non-negative by
  construction and exactly zero on background, so empty areas of any size integrate to 0 (a
  softplus head leaks a small positive density everywhere, which adds up over a large zone).

We rejected upsampling the input 2x before the encoder: it costs 4x the compute for the same
effect as the stride-1 stem plus skips on these object sizes.

Weights are a ``.safetensors`` state dict next to a ``.json`` config (:class:`DensityConfig`:
classes, bands, GSD range, normalisation, architecture, interval calibration). Loading never
unpickles anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn

from freightwatch.errors import InputFileError
from freightwatch.taxonomy import CLASSES

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"
"""Where the demo weights ship inside the package."""

FORMAT = "freightwatch-density"
"""``format`` of the JSON config and of the safetensors metadata."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
NIR_MEAN, NIR_STD = 0.5, 0.25
"""Normalisation of a 4th (near-infrared) band: no ImageNet statistics exist for it."""


def bundled_density() -> Path:
    """Path of the bundled demo density weights (``.safetensors``)."""
    return BUNDLED_DIR / "density.safetensors"


def default_arch() -> dict[str, Any]:
    """Architecture parameters of :class:`DensityNet` (stored in the config)."""
    return {
        "name": "mnv2s8-unet",
        "stem": 16,
        "encoder_blocks": 7,
        "context": 64,
        "dilations": [2, 4],
        "decoder": [48, 32, 24],
        "separable": False,
        "output_gain": 0.1,
    }


@dataclass
class DensityConfig:
    """What a density model is and how it was made (written next to its weights as JSON).

    Attributes:
        classes: Class names, one output map each, in this order.
        bands: Number of input bands (3 = RGB, 4 = RGB + NIR).
        gsd_range: GSD range in metres of the training imagery; scenes outside it (beyond
            ``gsd_tolerance``) are refused unless forced.
        gsd_tolerance: Relative slack on ``gsd_range`` (0.15: 3-5 m accepts 2.61-5.75 m).
        mean: Per-band mean of inputs scaled to 0-1 (uint8 / 255).
        std: Per-band standard deviation, same scale.
        arch: :class:`DensityNet` parameters (see :func:`default_arch`).
        sigma_px: Std in pixels of the Gaussian each object was splatted with in the targets.
        interval: Calibration of the count intervals (see :func:`count_interval`); ``None`` when
            uncalibrated.
        training: How the weights were made (data, steps, seed, commit, ...).
        metrics: Measured accuracy.
        created: UTC timestamp.
        format: Always :data:`FORMAT`.
    """

    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    bands: int = 3
    gsd_range: tuple[float, float] = (3.0, 5.0)
    gsd_tolerance: float = 0.15
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    arch: dict[str, Any] = field(default_factory=default_arch)
    sigma_px: float = 1.0
    interval: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format: str = FORMAT

    def __post_init__(self) -> None:
        self.gsd_range = (float(self.gsd_range[0]), float(self.gsd_range[1]))
        if self.bands not in (3, 4):
            raise ValueError(f"bands must be 3 (RGB) or 4 (RGB+NIR), got {self.bands}")
        if len(self.mean) != self.bands or len(self.std) != self.bands:
            raise ValueError(f"mean and std need {self.bands} values (one per band)")
        if not self.classes:
            raise ValueError("a density model needs at least one class")

    @classmethod
    def for_bands(cls, bands: int = 3, **kw: Any) -> DensityConfig:
        """A config with the default normalisation for 3 (RGB) or 4 (RGB + NIR) bands."""
        mean = list(IMAGENET_MEAN) + ([NIR_MEAN] if bands == 4 else [])
        std = list(IMAGENET_STD) + ([NIR_STD] if bands == 4 else [])
        return cls(bands=bands, mean=mean, std=std, **kw)

    def gsd_accepted(self, gsd: float) -> bool:
        """Whether ``gsd`` is inside the trained range widened by the tolerance."""
        lo, hi = self.gsd_range
        return lo / (1 + self.gsd_tolerance) <= gsd <= hi * (1 + self.gsd_tolerance)

    def to_json(self) -> str:
        """The config as JSON text."""
        return json.dumps(asdict(self), indent=2, default=str)

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> DensityConfig:
        """Read a config.

        Raises:
            InputFileError: the file is missing, not JSON, or not a density config.
        """
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "density model config (.json next to the weights) does not exist")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFileError(path, f"cannot read density model config ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputFileError(path, f"not a freightwatch density model config (expected \"format\": \"{FORMAT}\")")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            cfg = cls(**known)
        except (TypeError, ValueError) as exc:
            raise InputFileError(path, f"invalid density model config: {exc}") from exc
        unknown = [c for c in cfg.classes if c not in CLASSES]
        if unknown:
            raise InputFileError(
                path, f"config is for classes {cfg.classes}, not freightwatch's ({', '.join(CLASSES)}): "
                f"unknown {', '.join(map(str, unknown))}"
            )
        return cfg


# -- network ------------------------------------------------------------------------------------
def _conv_bn(cin: int, cout: int, k: int = 3, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ContextBlock(nn.Module):
    """Residual dilated depthwise-separable block: a wide receptive field for few parameters."""

    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.dw = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, groups=ch, bias=False), nn.BatchNorm2d(ch)
        )
        self.pw = _conv_bn(ch, ch, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(self.dw(x))


def _sep_conv_bn(ch: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1: a 3x3 receptive field at a seventh of the cost."""
    return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, groups=ch, bias=False), nn.BatchNorm2d(ch),
                         _conv_bn(ch, ch, k=1))


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, separable: bool = False) -> None:
        super().__init__()
        self.fuse = nn.Sequential(_conv_bn(cin + cskip, cout, k=1),
                                  _sep_conv_bn(cout) if separable else _conv_bn(cout, cout, k=3))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, skip], dim=1))


# Output channels of MobileNetV2 features[i] and which blocks end a stride level.
_MNV2_CHANNELS = (32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64)
_MNV2_TAPS = {1: 2, 3: 4, 6: 8}  # block index -> stride of its output


class DensityNet(nn.Module):
    """Fully convolutional density regressor (see the module notes for the design).

    Args:
        in_channels: Input bands (3 or 4).
        n_classes: Output maps.
        stem: Channels of the full-resolution stem.
        encoder_blocks: MobileNetV2 ``features`` blocks used (7 = up to stride 8).
        context: Channels of the stride-8 context blocks.
        dilations: Dilation of each context block.
        decoder: Channels of the decoder stages at strides 4, 2 and 1.
        separable: Depthwise-separable 3x3 convolutions in the stem and decoder: 2.4x fewer FLOPs,
            but no faster on CPU (PyTorch's depthwise kernels are memory-bound), so off by default.
        output_gain: Fixed factor on the head's output, so targets (peaks near 0.16 per pixel)
            correspond to activations of order 1.
        **_: Other architecture keys (``name``) are ignored.
    """

    stride = 8
    """Input sizes are padded internally to a multiple of this."""

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = len(CLASSES),
        stem: int = 16,
        encoder_blocks: int = 7,
        context: int = 64,
        dilations: Sequence[int] = (2, 4),
        decoder: Sequence[int] = (48, 32, 24),
        separable: bool = False,
        output_gain: float = 0.1,
        **_: Any,
    ) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        if encoder_blocks != 7:
            raise ValueError("only encoder_blocks=7 (MobileNetV2 up to stride 8) is implemented")
        self.output_gain = float(output_gain)
        second = _sep_conv_bn(stem) if separable else _conv_bn(stem, stem)
        self.stem = nn.Sequential(_conv_bn(in_channels, stem), second)
        features = mobilenet_v2(weights=None).features[:encoder_blocks]
        if in_channels != 3:
            first = features[0][0]
            features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, stride=2, padding=1, bias=False)
        self.encoder = features
        c8 = _MNV2_CHANNELS[encoder_blocks - 1]
        self.context = nn.Sequential(_conv_bn(c8, context, k=1), *[_ContextBlock(context, d) for d in dilations])
        d4, d2, d1 = decoder
        self.up4 = _UpBlock(context, _MNV2_CHANNELS[3], d4, separable)
        self.up2 = _UpBlock(d4, _MNV2_CHANNELS[1], d2, separable)
        self.up1 = _UpBlock(d2, stem, d1, separable)
        self.head = nn.Conv2d(d1, n_classes, 1)
        # Start slightly positive so the ReLU passes gradient everywhere at first.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.constant_(self.head.bias, 0.1)

    def load_encoder(self, path: str | Path) -> None:
        """Initialise the encoder from MobileNetV2 ``features`` weights (a safetensors file).

        The file's keys are those of ``torchvision.models.mobilenet_v2().features.state_dict()``;
        blocks past the encoder are ignored. For 4-band inputs the first convolution's RGB
        weights are kept and the extra band starts from their mean.

        Raises:
            InputFileError: unreadable file or missing keys.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, FileNotFoundError) as exc:
            raise InputFileError(path, f"not a readable safetensors file ({exc})") from exc
        own = self.encoder.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise InputFileError(path, f"not MobileNetV2 features weights (missing {missing[0]!r} and others)")
        new = {k: state[k] for k in own}
        w0 = new["0.0.weight"]
        if w0.shape != own["0.0.weight"].shape:  # extra bands: RGB filters plus their mean
            extra = w0.mean(dim=1, keepdim=True).expand(-1, own["0.0.weight"].shape[1] - w0.shape[1], -1, -1)
            new["0.0.weight"] = torch.cat([w0, extra], dim=1)
        self.encoder.load_state_dict(new, strict=True)

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """``(N, bands, H, W)`` normalised input -> ``(N, classes, H, W)`` density (objects per pixel).

        With ``logits`` the head's output before the ReLU (times the gain) is returned instead,
        for training losses that need a gradient where the density is 0.
        """
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:  # replicate, not zeros: an edge of black would look like something
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        f1 = self.stem(x)
        skips: dict[int, torch.Tensor] = {}
        y = x
        for i, block in enumerate(self.encoder):
            y = block(y)
            if i in _MNV2_TAPS:
                skips[_MNV2_TAPS[i]] = y
        y = self.context(y)
        y = self.up4(y, skips[4])
        y = self.up2(y, skips[2])
        y = self.up1(y, f1)
        z = self.head(y) * self.output_gain
        out = z if logits else F.relu(z)
        return out[..., :h, :w]


# -- loaded model -------------------------------------------------------------------------------
class DensityModel:
    """A density network plus its config: normalisation, prediction, intervals, save and load.

    Args:
        net: The network (``eval()`` is called on it for prediction).
        config: Its config.
    """

    def __init__(self, net: DensityNet, config: DensityConfig) -> None:
        self.net = net
        self.config = config

    @classmethod
    def create(cls, config: DensityConfig | None = None, pretrained: str | Path | None = None) -> DensityModel:
        """A new, untrained model.

        Args:
            config: Its config (default: RGB, truck/railcar/boat, 3-5 m).
            pretrained: Optional MobileNetV2 ImageNet ``features`` weights (safetensors) for the
                encoder. Never required; training from scratch works, a bit more slowly.
        """
        config = config or DensityConfig()
        net = DensityNet(in_channels=config.bands, n_classes=len(config.classes), **config.arch)
        if pretrained is not None:
            net.load_encoder(pretrained)
            config.training = {**config.training, "encoder_init": Path(pretrained).name}
        return cls(net, config)

    @property
    def classes(self) -> list[str]:
        """Class names in output order."""
        return list(self.config.classes)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.net.parameters())

    # -- inputs -------------------------------------------------------------------------------------
    def normalise(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W, bands)`` uint8 (or 0-255 float) image -> ``(1, bands, H, W)`` normalised tensor.

        Raises:
            ValueError: the image has the wrong number of bands.
        """
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != self.config.bands:
            n = self.config.bands
            raise ValueError(f"expected an (H, W, {n}) image ({n} bands), got shape {img.shape}")
        return normalise_batch(img[None], self.config.mean, self.config.std)

    @torch.no_grad()
    def predict(self, image: np.ndarray, valid: np.ndarray | None = None, tta: bool = False) -> np.ndarray:
        """Density maps of one image.

        Args:
            image: ``(H, W, bands)`` uint8.
            valid: Optional ``(H, W)`` bool mask; density is zeroed where it is False.
            tta: Average the maps of the 8 rotations/flips of the image (8x the compute; nadir
                images have no "up", so each is an equally valid view).

        Returns:
            ``(classes, H, W)`` float32, objects per pixel, non-negative.
        """
        self.net.eval()
        x = self.normalise(image)
        if tta:
            acc = torch.zeros((1, len(self.config.classes), *x.shape[-2:]))
            for k in range(4):
                for flip in (False, True):
                    xi = torch.rot90(x, k, (2, 3))
                    xi = torch.flip(xi, (3,)) if flip else xi
                    yi = self.net(xi)
                    yi = torch.flip(yi, (3,)) if flip else yi
                    acc += torch.rot90(yi, -k, (2, 3))
            out = (acc / 8)[0].numpy()
        else:
            out = self.net(x)[0].numpy()
        if valid is not None:
            out = out * np.asarray(valid, dtype=bool)[None]
        return out.astype(np.float32, copy=False)

    # -- intervals ----------------------------------------------------------------------------------
    def count_interval(
        self, count: float, cls: str, gsd: float | None, coverage: float | None = None, kind: str | None = None
    ) -> tuple[float, float]:
        """Interval for a zone count; see :func:`count_interval`."""
        return count_interval(self.config.interval, count, cls, gsd, coverage, kind)

    def corrected_count(self, count: float, cls: str, gsd: float | None) -> float:
        """A raw integral corrected by the calibrated per-class scale (identity when uncalibrated)."""
        return corrected_count(self.config.interval, count, cls, gsd)

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save as ``.safetensors`` plus a ``.json`` config (no pickle). Returns the weights path."""
        from freightwatch.models import save_safetensors

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        meta = {"format": FORMAT, "classes": ",".join(self.config.classes), "bands": str(self.config.bands)}
        save_safetensors(state, path, metadata=meta)
        self.config.save(path.with_suffix(".json"))
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> DensityModel:
        """Load ``.safetensors`` weights and the ``.json`` config beside them.

        Args:
            path: Weights file; the bundled demo weights when ``None``.

        Raises:
            InputFileError: missing file, not a safetensors file, a config that is missing,
                malformed, for other classes, or that does not match the weights.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path) if path is not None else bundled_density()
        if not path.is_file():
            hint = " (run `make weights` to train the bundled demo weights)" if path == bundled_density() else ""
            raise InputFileError(path, f"density weights file does not exist{hint}")
        cfg_path = path.with_suffix(".json")
        if path.suffix != ".safetensors":
            raise InputFileError(path, "density weights must be a .safetensors file (with a .json config beside it)")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputFileError(path, f"not a safetensors file ({str(exc).splitlines()[0][:200]})") from exc
        config = DensityConfig.load(cfg_path)
        try:
            net = DensityNet(in_channels=config.bands, n_classes=len(config.classes), **config.arch)
        except (TypeError, ValueError) as exc:
            raise InputFileError(cfg_path, f"invalid architecture in config: {exc}") from exc
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()
            detail = " ".join(s.strip() for s in first[:3])[:300]
            raise InputFileError(
                path, f"weights do not match the config {cfg_path.name} "
                f"({len(config.classes)} classes, {config.bands} bands): {detail}"
            ) from exc
        net.eval()
        return cls(net, config)


def normalise_batch(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(N, H, W, B)`` uint8 images -> ``(N, B, H, W)`` float32: ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(list(mean), dtype=torch.float32)[None, :, None, None]
    s = torch.tensor(list(std), dtype=torch.float32)[None, :, None, None]
    return (x - m) / s


# -- count calibration and intervals ------------------------------------------------------------
def _residual_table(interval: dict[str, Any], cls: str, kind: str | None) -> list[Any] | None:
    """Per-node residuals of ``cls``: those of zone ``kind`` when calibrated, else all kinds pooled."""
    if kind is not None:
        table = interval.get("residuals_by_kind", {}).get(cls, {}).get(kind)
        if table is not None:
            return table
    return interval.get("residuals", {}).get(cls)


def _node_values(interval: dict[str, Any], per_node: list[Any] | None, gsd: float | None, fn: Any) -> float | None:
    """``fn(residuals)`` at each GSD node, linearly interpolated at ``gsd`` (clamped to the nodes)."""
    nodes = list(interval.get("gsd_nodes") or [])
    if per_node is None or not nodes or len(per_node) != len(nodes):
        return None
    vals = [fn(np.asarray(r, dtype=np.float64)) for r in per_node]
    g = float(np.mean(nodes)) if gsd is None else float(gsd)
    return float(np.interp(g, nodes, vals))


def corrected_count(interval: dict[str, Any] | None, count: float, cls: str, gsd: float | None) -> float:
    """Apply the calibrated per-class count scale (``interval["scale"]``, per GSD node), if any."""
    if not interval or cls not in interval.get("scale", {}):
        return float(count)
    nodes = list(interval.get("gsd_nodes") or [])
    vals = list(interval["scale"][cls])
    if not nodes or len(vals) != len(nodes):
        return float(count) * float(vals[0])
    g = float(np.mean(nodes)) if gsd is None else float(gsd)
    return float(count) * float(np.interp(g, nodes, vals))


def conformal_quantiles(residuals: np.ndarray, coverage: float) -> tuple[float, float]:
    """Split-conformal lower and upper quantiles of signed residuals for a two-sided interval.

    With ``n`` calibration residuals and ``alpha = 1 - coverage``, the upper bound is the
    ``ceil((n + 1)(1 - alpha / 2))``-th smallest residual and the lower the
    ``floor((n + 1) alpha / 2)``-th (clamped to the sample), which covers a new exchangeable
    residual with probability at least ``coverage`` (less the clamping, for tiny ``n``).
    """
    r = np.sort(np.asarray(residuals, dtype=np.float64))
    n = len(r)
    if n == 0:
        return math.nan, math.nan
    alpha = 1.0 - coverage
    hi = min(n, max(1, math.ceil((n + 1) * (1 - alpha / 2))))
    lo = min(n, max(1, math.floor((n + 1) * alpha / 2)))
    return float(r[lo - 1]), float(r[hi - 1])


def count_interval(
    interval: dict[str, Any] | None,
    count: float,
    cls: str,
    gsd: float | None,
    coverage: float | None = None,
    kind: str | None = None,
) -> tuple[float, float]:
    """Split-conformal interval for a (corrected) zone count.

    The calibration (``interval``, made by
    :func:`freightwatch.training.density.calibrate_intervals`) holds, per class and GSD node, the
    signed normalised residuals ``r = (true - count) / (k + count)`` of zone counts on held-out
    calibration sites, pooled over zone kinds and, where there were enough, per zone kind. The
    interval is ``[count + q_lo (k + count), count + q_hi (k + count)]``, widened to contain
    ``count`` and clipped at 0, with ``q_lo, q_hi`` from :func:`conformal_quantiles` at each node,
    linearly interpolated in GSD.
    The ``k`` floor keeps small counts' intervals from collapsing to a point; the ``count`` term
    makes the width proportional for large counts, where errors are mostly relative. Without a
    calibration the interval is ``(nan, nan)``.

    Args:
        interval: The ``interval`` member of a :class:`DensityConfig`.
        count: The corrected count of one class in one zone.
        cls: Its class.
        gsd: The scene's GSD in metres.
        coverage: Nominal coverage; the calibration's default (0.9) when ``None``.
        kind: The zone's kind (``lot``, ``bridge``, ..., ``scene`` for a whole scene); kinds
            without their own calibration use the pooled one.
    """
    if not interval:
        return math.nan, math.nan
    cov = float(interval.get("coverage", 0.9) if coverage is None else coverage)
    table = _residual_table(interval, cls, kind)
    q_lo = _node_values(interval, table, gsd, lambda r: conformal_quantiles(r, cov)[0])
    q_hi = _node_values(interval, table, gsd, lambda r: conformal_quantiles(r, cov)[1])
    if q_lo is None or q_hi is None or not (math.isfinite(q_lo) and math.isfinite(q_hi)):
        return math.nan, math.nan
    k = float(interval.get("k", 5.0))
    scale = k + max(float(count), 0.0)
    # Quantiles of one sign (e.g. docks, where calibration zones held no boats) would put the
    # estimate outside its own interval; widening to include it only adds coverage.
    lo, hi = min(count, count + q_lo * scale), max(count, count + q_hi * scale)
    return max(0.0, lo), max(0.0, hi)
