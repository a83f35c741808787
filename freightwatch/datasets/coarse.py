"""Simulating a 3-5 m PlanetScope-like sensor from high-resolution imagery, and density targets.

The density model counts objects in coarse imagery that nobody labels. It is trained on labelled
high-resolution scenes (0.1-1 m) degraded on the fly to 3-5 m, so this module has to be physically
sensible (the model must not learn artefacts of the simulation) and fast (it runs per batch).

Sensor simulation (:func:`degrade_image`), in order:

1. **PSF**: a Gaussian blur whose width is matched to the sensor's MTF at its Nyquist frequency
   (:func:`psf_sigma`). The MTF is the *system* MTF of the product grid, as measured on real
   images: it includes the detector footprint, which step 2 supplies, so the Gaussian only adds
   what is missing.
2. **Sampling**: area resampling (``cv2.INTER_AREA``) to the target grid, i.e. each output pixel is
   the mean of the ground it covers (a box filter one target pixel wide, MTF ``2/pi`` at Nyquist).
3. **Radiometry**: gamma, per-band gain and offset (colour cast, haze, exposure).
4. **Noise**: Gaussian read noise plus an optional signal-dependent (shot) term, spatially and
   inter-band correlated as in resampled, demosaiced products.
5. **Quantisation** to uint8 and optional JPEG compression (PlanetScope "visual" products and the
   JPEG quick-looks people actually have).

Tuning (defaults of :class:`SensorModel`), against two real 3 m PlanetScope visual scenes of ports:

- *Sharpness*: erf fits across a few hundred straight high-contrast edges give an edge-spread
  std of 0.65 / 0.76 / 0.88 px (10th / 25th / 50th percentile; 0.75 / 0.86 / 1.00 in the hazier
  scene). The same measurement on Google Earth tiles degraded here gives 0.61 / 0.71 / 0.89 at
  ``mtf_nyquist=0.1``, 0.46 / 0.54 / 0.74 at 0.3. The product is softer than the 0.2-0.35 quoted
  for Dove because that is at the detector's own ~3.7 m Nyquist; the 3 m product is resampled
  from it (cubic convolution) and its Nyquist is 25 % higher.
- *Noise*: on open water the real scenes show a high-pass std of 2.8-3.5 DN, first-difference
  std of 1.8-1.9 DN, lag-1 autocorrelation 0.6-0.7 and almost no chroma noise. The defaults give
  2.4-2.9, 1.6-1.9 and 0.56-0.61 (the rest of the real figure is wave texture).
- Not modelled: the real scenes show dark rims around bright hulls (shadow and resampling
  overshoot) and JPEG blocking (use ``jpeg_quality``).

Geometry: the output has :func:`coarse_shape` pixels and the resampling maps the full extent of the
input onto the full extent of the output, so pixel coordinates scale by exactly
:func:`scale_factors` (``w_out / w_in``, ``h_out / h_in``). :func:`degrade_labels` uses the same
factors and updates the affine transform so map coordinates are unchanged.

Density targets (:func:`density_targets`): one map per class; each object adds a unit-mass Gaussian
at its centre. **Ownership rule** (the same as for tiles): an object belongs to the pixel, and so
to the map or tile, containing its centre, with half-open intervals (``0 <= x < width``; a centre
exactly on a tile's right/bottom edge belongs to the next tile). Its kernel is truncated at the map
border and renormalised, so its whole mass stays inside the map; objects whose centre is outside
are ignored. Hence every map integrates to the number of centres inside it, and per-tile targets of
a partition of a scene (:func:`density_for_window`) add up to the scene's count. Note that cropping
a scene-level map does *not* have this property (kernels straddle the crop); compute targets per
window instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from rasterio.windows import Window

from freightwatch.datasets.annotations import ImageLabels
from freightwatch.datasets.geo import write_geotiff
from freightwatch.datasets.raster import Scene
from freightwatch.taxonomy import CLASSES

_BOX_MTF_NYQUIST = 2.0 / math.pi
"""MTF of a box filter one pixel wide at Nyquist: sinc(1/2) = sin(pi/2) / (pi/2)."""


_SOURCE_BLOCK = 4096
"""Source pixels per side read at once by :func:`degrade_scene` (about 50 MB of RGB)."""

MAX_COARSE_PIXELS = 8192 * 8192
"""Largest coarse grid :func:`degrade_scene` will build (it holds the output and density in memory)."""


def _sinc(x: float) -> float:
    return 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)


@dataclass(frozen=True)
class SensorModel:
    """A coarse optical sensor, as seen in its 8-bit RGB product.

    Defaults reproduce the sharpness and noise of real 3 m PlanetScope visual scenes (see the
    module notes) with no colour change; :meth:`random` varies them for training.

    Attributes:
        gsd: Target ground sample distance, metres per pixel.
        mtf_nyquist: System MTF at the target grid's Nyquist frequency (0.5 cycles/pixel),
            detector footprint included. Dove is quoted at 0.2-0.35 on its native ~3.7 m grid;
            real 3 m products measure about 0.1 (module notes).
        noise_std: Additive Gaussian noise, standard deviation in DN (0-255 units).
        shot_noise: Signal-dependent noise: variance grows by ``shot_noise * DN`` (so 0.05 adds
            about 3 DN of standard deviation at DN 200).
        noise_corr: Spatial correlation of the noise: std in target pixels of the Gaussian it is
            filtered with (its std stays ``noise_std``); 0 for white noise. Real products are
            resampled from the detector grid, which correlates the noise (0.7: lag-1 correlation 0.6).
        noise_band_corr: Correlation of the noise between bands (0-1). Bayer-mosaic sensors
            (Dove) and JPEG chroma subsampling make product noise mostly grey.
        gain: Per-band (R, G, B) multiplicative gain, after gamma.
        offset: Per-band additive offset in DN, after gain (haze lifts dark water, for instance).
        gamma: Tone curve ``255 * (x / 255) ** gamma`` applied first; < 1 brightens shadows.
        jpeg_quality: JPEG quality 1-100 to round-trip the result through, or ``None``.
    """

    gsd: float = 3.0
    mtf_nyquist: float = 0.1
    noise_std: float = 2.5
    shot_noise: float = 0.0
    noise_corr: float = 0.7
    noise_band_corr: float = 0.9
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gamma: float = 1.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if not self.gsd > 0:
            raise ValueError(f"gsd must be positive, got {self.gsd}")
        if not 0 < self.mtf_nyquist < 1:
            raise ValueError(f"mtf_nyquist must be in (0, 1), got {self.mtf_nyquist}")
        if self.noise_std < 0 or self.shot_noise < 0 or self.noise_corr < 0:
            raise ValueError("noise_std, shot_noise and noise_corr must be >= 0")
        if not 0 <= self.noise_band_corr <= 1:
            raise ValueError(f"noise_band_corr must be in [0, 1], got {self.noise_band_corr}")
        if len(self.gain) != 3 or len(self.offset) != 3:
            raise ValueError("gain and offset need one value per band (R, G, B)")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1-100 or None, got {self.jpeg_quality}")

    @classmethod
    def random(
        cls, rng: np.random.Generator, gsd_range: tuple[float, float] = (3.0, 5.0)
    ) -> SensorModel:
        """A random sensor for training: GSD, PSF, noise, colour cast, tone curve and JPEG.

        The ranges span what PlanetScope products show (Dove Classic to SuperDove, hazy to clear
        days, visual JPEGs) around the tuned defaults, so the model does not overfit one look:
        MTF 0.05-0.35 (log-uniform; the real 3 m scenes measure 0.06-0.1, native-grid figures
        reach 0.35), noise 1-4 DN, gain 0.76-1.21 with a +-5 % cast, offset -9 to +19 DN,
        gamma 0.8-1.25, JPEG quality 60-95 half the time.

        Args:
            rng: Random generator.
            gsd_range: Target GSD drawn uniformly from this range (metres).
        """
        cast = rng.uniform(0.95, 1.05, size=3)  # mild per-band colour cast ...
        exposure = rng.uniform(0.8, 1.15)  # ... on top of an overall exposure/contrast change
        return cls(
            gsd=float(rng.uniform(*gsd_range)),
            mtf_nyquist=float(np.exp(rng.uniform(np.log(0.05), np.log(0.35)))),
            noise_std=float(rng.uniform(1.0, 4.0)),
            shot_noise=float(rng.uniform(0.0, 0.05)),
            noise_corr=float(rng.uniform(0.0, 1.0)),
            noise_band_corr=float(rng.uniform(0.5, 1.0)),
            gain=tuple(float(g) for g in exposure * cast),  # type: ignore[arg-type]
            offset=tuple(float(o) for o in rng.uniform(-5.0, 15.0) + rng.uniform(-4.0, 4.0, size=3)),  # type: ignore[arg-type]
            gamma=float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))),
            jpeg_quality=None if rng.random() < 0.5 else int(rng.integers(60, 96)),
        )


def _gaussian_sigma_target(mtf: float) -> float:
    """Sigma (target pixels) of a Gaussian whose MTF at 0.5 cycles/pixel is ``mtf`` (0 if >= 1)."""
    if mtf >= 1.0:
        return 0.0
    return math.sqrt(-2.0 * math.log(mtf)) / math.pi


def psf_sigma(sensor: SensorModel, src_gsd: float, pixel_aperture: bool = True) -> float:
    """Gaussian PSF sigma, in source pixels, matched to the sensor's MTF at Nyquist.

    A Gaussian PSF of standard deviation ``s`` (target pixels) has ``MTF(f) = exp(-2 pi^2 s^2 f^2)``;
    at Nyquist (``f = 0.5`` cycles/pixel) ``MTF_N = exp(-pi^2 s^2 / 2)``, so
    ``s = sqrt(-2 ln MTF_N) / pi``. In source pixels that is ``s * gsd / src_gsd``.

    With ``pixel_aperture`` (the default, and what :func:`degrade_image` uses) ``MTF_N`` is the
    system MTF and the target pixel's box footprint, which area resampling applies, supplies a
    factor ``sinc(1/2) = 2/pi`` of it; the Gaussian then matches ``MTF_N / (2/pi)`` (and is 0 when
    ``MTF_N >= 2/pi``: the footprint alone is already that soft). Without it the Gaussian alone
    matches ``MTF_N``. :func:`degrade_image` applies this PSF, refined for the discrete kernels it
    actually uses (sampled Gaussian, whole-pixel means), so its output's MTF at Nyquist is
    ``MTF_N`` to about 0.01.

    Args:
        sensor: The target sensor.
        src_gsd: Source GSD (metres per pixel).
        pixel_aperture: Whether ``sensor.mtf_nyquist`` includes the target pixel footprint.
    """
    mtf = sensor.mtf_nyquist / (_BOX_MTF_NYQUIST if pixel_aperture else 1.0)
    return _gaussian_sigma_target(mtf) * sensor.gsd / src_gsd


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def coarse_shape(h: int, w: int, src_gsd: float, dst_gsd: float) -> tuple[int, int]:
    """``(height, width)`` of an ``h`` x ``w`` image resampled from ``src_gsd`` to ``dst_gsd``.

    ``round(h * src_gsd / dst_gsd)`` (halves up), at least 1. The pixel scale factors that go with
    it are :func:`scale_factors`, not ``src_gsd / dst_gsd``.
    """
    if not (src_gsd > 0 and dst_gsd > 0):
        raise ValueError(f"GSDs must be positive (src={src_gsd}, dst={dst_gsd})")
    r = src_gsd / dst_gsd
    return max(1, _round_half_up(h * r)), max(1, _round_half_up(w * r))


def scale_factors(src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> tuple[float, float]:
    """``(sx, sy)`` mapping source pixel coordinates to resampled ones: ``(w_dst / w_src, h_dst / h_src)``.

    These are exact for ``cv2.resize``, which maps the full extent onto the full extent.
    """
    (hs, ws), (hd, wd) = src_shape, dst_shape
    return wd / ws, hd / hs


def coarse_valid(valid: np.ndarray, out_shape: tuple[int, int], min_fraction: float = 0.5) -> np.ndarray:
    """Resample a validity mask: an output pixel is valid when >= ``min_fraction`` of it is."""
    h, w = out_shape
    frac = cv2.resize(valid.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return frac >= min_fraction


def _box_mtf(width: float, f: float) -> float:
    """MTF at ``f`` cycles/pixel of the mean of ``width`` whole pixels: ``sin(pi w f) / (w sin(pi f))``.

    At Nyquist of a 3-pixel mean it is 0.667 where the continuous ``sinc(1/2)`` is 0.637.
    """
    return abs(math.sin(math.pi * width * f) / (width * math.sin(math.pi * f)))


def _gauss_ksize(sigma: float) -> int:
    return 2 * int(math.ceil(4 * sigma)) + 1


@lru_cache(maxsize=1024)
def _discrete_gaussian_sigma(mtf: float, f: float) -> float:
    """Sigma (pixels) of the *sampled* Gaussian kernel whose MTF at ``f`` cycles/pixel is ``mtf``.

    For sigmas of a pixel or less the sampled kernel differs from the continuous formula, so solve
    for it (bisection; the MTF falls monotonically with sigma).
    """
    if mtf >= 1.0:
        return 0.0

    def response(sigma: float) -> float:
        k = cv2.getGaussianKernel(_gauss_ksize(sigma), sigma, ktype=cv2.CV_64F).ravel()
        n = np.arange(len(k)) - len(k) // 2
        return float((k * np.cos(2 * np.pi * f * n)).sum())

    lo, hi = 1e-3, max(1.0, 2 * _gaussian_sigma_target(mtf) * 0.5 / f)
    while response(hi) > mtf:
        hi *= 2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if response(mid) > mtf else (lo, mid)
    return 0.5 * (lo + hi)


def _pixels_per_target(k: float) -> int:
    """Intermediate pixels per target pixel, ``m``: the blur runs on an ``m``-times finer grid.

    The final step is then an exact ``m`` x ``m`` mean, whose MTF is known exactly; 3-6 pixels keep
    the blur accurate and cheap. Integer factors (0.5 m -> 3 m) avoid any other resampling.
    """
    kr = round(k)
    if abs(k - kr) < 1e-6 and kr <= 6:
        return max(1, kr)
    if abs(k - kr) < 1e-6:
        divisors = [m for m in range(6, 2, -1) if kr % m == 0]
        if divisors:
            return divisors[0]
    return max(1, min(int(k), 4))


def _resample(img: np.ndarray, out_shape: tuple[int, int], mtf: float) -> np.ndarray:
    """Blur and area-resample to ``out_shape`` so the chain's MTF at target Nyquist is ``mtf``.

    Returns float32. Steps: area-reduce to ``m`` pixels per target pixel (skipped when already
    there), Gaussian blur, exact ``m`` x ``m`` mean. The Gaussian is :func:`psf_sigma`'s, refined
    for the discrete kernels actually applied (both boxes and the sampled Gaussian), so the system
    MTF at Nyquist is within about 0.01 of ``mtf`` for 3 or more source pixels per target pixel
    (less accurate below that). Aliasing of the first reduction lies above 1.5 cycles per target
    pixel, where the Gaussian and the final mean suppress it.
    """
    h, w = out_shape
    k = 0.5 * (img.shape[0] / h + img.shape[1] / w)  # source pixels per target pixel
    m = _pixels_per_target(k)
    f = 0.5 / m  # target Nyquist in intermediate cycles/pixel
    pre = 1.0
    if img.shape[:2] != (h * m, w * m):
        img = cv2.resize(img, (w * m, h * m), interpolation=cv2.INTER_AREA)
        j = k / m  # source pixels per intermediate pixel
        pre = _box_mtf(j, 0.5 / k) if abs(j - round(j)) < 1e-6 else _sinc(0.5 / m) * _sinc(0.5 / k)
    sigma = _discrete_gaussian_sigma(round(mtf / (pre * _box_mtf(m, f)), 6), f)
    img = img.astype(np.float32, copy=False)
    if sigma > 0:
        ks = _gauss_ksize(sigma)
        img = cv2.GaussianBlur(img, (ks, ks), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA) if m > 1 else img
    return out.reshape(h, w, -1)


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...], corr: float, band_corr: float) -> np.ndarray:
    """Unit-variance Gaussian noise, correlated across bands and (Gaussian-filtered) in space."""
    n = rng.standard_normal(shape, dtype=np.float32)
    if band_corr > 0 and shape[-1] > 1:
        common = rng.standard_normal((*shape[:-1], 1), dtype=np.float32)
        n = np.sqrt(1 - band_corr, dtype=np.float32) * n + np.sqrt(band_corr, dtype=np.float32) * common
    if corr > 0:
        k = cv2.getGaussianKernel(2 * int(math.ceil(3 * corr)) + 1, corr).astype(np.float32)
        n = cv2.sepFilter2D(n, -1, k, k, borderType=cv2.BORDER_REFLECT).reshape(shape)
        n /= float((k**2).sum())  # a separable kernel k x k scales the std by ||k||^2
    return n


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if img.shape[2] == 3:  # OpenCV codecs are BGR; keep chroma subsampling on the right channels
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), params)
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else img
    bands = []
    for b in range(img.shape[2]):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., b]), params)
        bands.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img[..., b])
    return np.stack(bands, axis=-1)


def degrade_image(
    image: np.ndarray,
    src_gsd: float,
    sensor: SensorModel,
    rng: np.random.Generator | None = None,
    valid: np.ndarray | None = None,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Simulate ``sensor`` viewing a high-resolution image (see the module notes for the steps).

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` image at ``src_gsd``, uint8 or float in 0-255 DN.
            Three-band images are taken as RGB (gain/offset per band, JPEG chroma).
        src_gsd: Source GSD in metres; must not be coarser than ``sensor.gsd``.
        sensor: The sensor to simulate.
        rng: Random generator for the noise (a fresh unseeded one when ``None``).
        valid: Optional ``(H, W)`` bool mask of valid source pixels. Invalid pixels do not bleed
            into valid ones (normalised convolution) and output pixels less than half valid are 0.
        out_shape: Output ``(h, w)``; :func:`coarse_shape` by default. Labels must be scaled with
            :func:`scale_factors` of the same shapes.

    Returns:
        ``(h, w, C)`` (or ``(h, w)``) uint8 image at ``sensor.gsd``.
    """
    img = np.asarray(image)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an (H, W, C) or (H, W) image, got shape {img.shape}")
    if src_gsd > sensor.gsd * (1 + 1e-6):
        raise ValueError(f"source GSD {src_gsd} m is coarser than the target {sensor.gsd} m; cannot degrade")
    rng = np.random.default_rng() if rng is None else rng
    H, W, C = img.shape
    h, w = out_shape or coarse_shape(H, W, src_gsd, sensor.gsd)
    if img.dtype != np.uint8:
        img = img.astype(np.float32, copy=False)

    out_valid = None
    if valid is not None and not valid.all():
        # Normalised convolution: blur/resample image*valid and valid, divide.
        v = valid.astype(np.float32)
        num = _resample(img.astype(np.float32) * v[..., None], (h, w), sensor.mtf_nyquist)
        den = _resample(v, (h, w), sensor.mtf_nyquist)
        out = num / np.maximum(den, 1e-6)
        out_valid = coarse_valid(valid, (h, w))
    else:
        out = _resample(img, (h, w), sensor.mtf_nyquist)

    # Radiometry: tone curve, then per-band gain and offset.
    if sensor.gamma != 1.0:
        out = 255.0 * np.power(np.clip(out, 0, None) / 255.0, sensor.gamma, dtype=np.float32)
    gain = np.asarray(sensor.gain if C == 3 else [np.mean(sensor.gain)] * C, dtype=np.float32)
    offset = np.asarray(sensor.offset if C == 3 else [np.mean(sensor.offset)] * C, dtype=np.float32)
    if (gain != 1).any() or (offset != 0).any():
        out = out * gain + offset

    # Noise: read noise plus optional shot noise, variance noise_std^2 + shot_noise * DN.
    if sensor.noise_std > 0 or sensor.shot_noise > 0:
        std = np.sqrt(sensor.noise_std**2 + sensor.shot_noise * np.clip(out, 0, None), dtype=np.float32)
        out = out + _unit_noise(rng, out.shape, sensor.noise_corr, sensor.noise_band_corr) * std

    res = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if sensor.jpeg_quality is not None:
        res = _jpeg(res, sensor.jpeg_quality).reshape(h, w, C)
    if out_valid is not None:
        res[~out_valid] = 0
    return res[..., 0] if squeeze else res


def degrade_labels(labels: ImageLabels, dst_gsd: float, out_shape: tuple[int, int]) -> ImageLabels:
    """Labels of an image resampled to ``out_shape`` (``(h, w)``) at ``dst_gsd``.

    Polygons scale by :func:`scale_factors`; the transform becomes
    ``old * Affine.scale(1 / sx, 1 / sy)`` so every map coordinate is unchanged. ``gsd`` is the
    actual pixel size (``labels.gsd / mean(sx, sy)``, within half a target pixel per image side
    of ``dst_gsd``) when the source GSD is known, else ``dst_gsd``.
    """
    h, w = out_shape
    sx, sy = scale_factors((labels.height, labels.width), (h, w))
    gsd = dst_gsd if labels.gsd is None else labels.gsd / (0.5 * (sx + sy))
    return replace(
        labels,
        width=w,
        height=h,
        annotations=[a.scaled(sx, sy) for a in labels.annotations],
        gsd=gsd,
        transform=None if labels.transform is None else labels.transform * Affine.scale(1 / sx, 1 / sy),
        attrs=dict(labels.attrs),
    )


def splat_centers(
    centers: np.ndarray,
    class_ids: np.ndarray,
    shape: tuple[int, int],
    sigma: float = 1.0,
    n_classes: int = len(CLASSES),
    chunk: int = 16384,
) -> np.ndarray:
    """Density maps from object centres (the array form of :func:`density_targets`).

    Each centre inside the map (``0 <= x < w``, ``0 <= y < h``; pixel ``i`` spans ``[i, i + 1)``)
    adds a Gaussian of std ``sigma`` pixels evaluated at pixel centres relative to the exact
    (sub-pixel) centre, truncated to +-ceil(4 sigma) pixels and to the map, and renormalised to
    unit mass. The Gaussian is separable, so truncating to a rectangle and renormalising each axis
    is exact. ``sigma <= 0`` puts each object's unit mass in the pixel containing it.

    Args:
        centers: ``(N, 2)`` x, y pixel coordinates.
        class_ids: ``(N,)`` class indices; ids outside ``[0, n_classes)`` are ignored.
        shape: ``(h, w)`` of the maps.
        sigma: Kernel standard deviation in pixels.
        n_classes: Number of maps.
        chunk: Objects processed at once (bounds memory to about ``chunk * (8 sigma + 1)^2`` floats).

    Returns:
        ``(n_classes, h, w)`` float32.
    """
    h, w = int(shape[0]), int(shape[1])
    c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    ids = np.asarray(class_ids, dtype=np.intp).reshape(-1)
    if len(c) != len(ids):
        raise ValueError(f"{len(c)} centres but {len(ids)} class ids")
    keep = (
        np.isfinite(c).all(axis=1) & (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h)
        & (ids >= 0) & (ids < n_classes)
    )
    c, ids = c[keep], ids[keep]
    acc = np.zeros(n_classes * h * w, dtype=np.float64)
    r = int(math.ceil(4 * sigma)) if sigma > 0 else 0
    offs = np.arange(-r, r + 1)

    def axis(coord: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.floor(coord).astype(np.intp)[:, None] + offs  # (n, K), containing pixel in the middle
        ok = (idx >= 0) & (idx < size)
        if sigma > 0:
            d2 = np.where(ok, (idx + 0.5 - coord[:, None]) ** 2, np.inf)
            d2 -= d2.min(axis=1, keepdims=True)  # largest weight is 1: no underflow for tiny sigma
            wgt = np.exp(-d2 / (2.0 * sigma * sigma))
        else:
            wgt = ok.astype(np.float64)
        wgt /= wgt.sum(axis=1, keepdims=True)  # the containing pixel is always in, so sum > 0
        return np.clip(idx, 0, size - 1), wgt

    for s in range(0, len(c), chunk):
        cc, ii = c[s:s + chunk], ids[s:s + chunk]
        ix, wx = axis(cc[:, 0], w)
        iy, wy = axis(cc[:, 1], h)
        flat = (ii[:, None, None] * h + iy[:, :, None]) * w + ix[:, None, :]
        acc += np.bincount(flat.ravel(), weights=(wy[:, :, None] * wx[:, None, :]).ravel(), minlength=acc.size)
    return acc.reshape(n_classes, h, w).astype(np.float32)


def density_targets(
    labels: ImageLabels,
    shape: tuple[int, int] | None = None,
    sigma: float = 1.0,
    classes: Sequence[str] = CLASSES,
) -> np.ndarray:
    """Per-class density maps of an image's objects (see the module notes for the ownership rule).

    Each map integrates to the number of objects of that class whose centre
    (:attr:`Annotation.center`, in this grid's pixels) lies inside the map.

    Args:
        labels: Objects in this grid's pixel coordinates (e.g. from :func:`degrade_labels`).
        shape: ``(h, w)`` of the maps; the labels' own size by default.
        sigma: Gaussian std in pixels of this grid.
        classes: Class names, one map each, in this order; other classes are ignored.

    Returns:
        ``(len(classes), h, w)`` float32.
    """
    shape = (labels.height, labels.width) if shape is None else shape
    index = {name: i for i, name in enumerate(classes)}
    anns = [a for a in labels.annotations if a.cls in index]
    centers = np.array([a.center for a in anns], dtype=np.float64).reshape(-1, 2)
    ids = np.array([index[a.cls] for a in anns], dtype=np.intp)
    return splat_centers(centers, ids, shape, sigma, len(classes))


def density_for_window(
    labels: ImageLabels,
    window: Window,
    sigma: float = 1.0,
    classes: Sequence[str] = CLASSES,
) -> np.ndarray:
    """Density maps of one window (tile, crop) of an image.

    The window's maps integrate to the number of centres inside the window, so targets of
    windows that partition an image (e.g. ``tile_windows(..., overlap=0)`` when the size divides
    the image) sum to the image's counts. Windows reaching past the image are fine.

    Args:
        labels: Objects in the image's pixel coordinates.
        window: Integer-offset pixel window of that image.
        sigma: Gaussian std in pixels.
        classes: Class names, one map each.

    Returns:
        ``(len(classes), window.height, window.width)`` float32.
    """
    x0, y0 = int(window.col_off), int(window.row_off)
    index = {name: i for i, name in enumerate(classes)}
    anns = [a for a in labels.annotations if a.cls in index]
    centers = np.array([a.center for a in anns], dtype=np.float64).reshape(-1, 2) - (x0, y0)
    ids = np.array([index[a.cls] for a in anns], dtype=np.intp)
    return splat_centers(centers, ids, (int(window.height), int(window.width)), sigma, len(classes))


def degrade_sample(
    image: np.ndarray,
    labels: ImageLabels,
    sensor: SensorModel,
    rng: np.random.Generator | None = None,
    sigma: float = 1.0,
    src_gsd: float | None = None,
) -> tuple[np.ndarray, ImageLabels, np.ndarray]:
    """One training sample: degraded image, its labels and density targets, consistently scaled.

    Args:
        image: High-resolution ``(H, W, 3)`` image; ``labels`` must be in its pixel grid.
        labels: Its objects.
        sensor: Sensor to simulate (e.g. :meth:`SensorModel.random`).
        rng: Random generator for the noise.
        sigma: Density kernel std in coarse pixels.
        src_gsd: Source GSD; ``labels.gsd`` by default.
    """
    src = labels.gsd if src_gsd is None else src_gsd
    if src is None:
        raise ValueError(f"{labels.file_name}: source GSD unknown; pass src_gsd")
    if image.shape[:2] != (labels.height, labels.width):
        raise ValueError(f"image is {image.shape[:2]} but labels are for {(labels.height, labels.width)}")
    coarse = degrade_image(image, src, sensor, rng)
    coarse_labels = degrade_labels(replace(labels, gsd=src), sensor.gsd, coarse.shape[:2])
    return coarse, coarse_labels, density_targets(coarse_labels, sigma=sigma)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def degrade_scene(
    scene_path: str | Path,
    labels: ImageLabels,
    gsd: float,
    out_dir: str | Path,
    sensor: SensorModel | None = None,
    seed: int = 0,
    sigma: float = 1.0,
    bands: tuple[int, int, int] | None = None,
) -> dict[str, Path]:
    """Degrade a labelled high-resolution scene to ``gsd`` and write image, density and labels.

    The coarse grid holds the whole target pixels inside the scene: ``w = floor(W * src / gsd)``,
    covering the first ``round(w * gsd / src)`` source columns (likewise rows); the remainder
    (less than one target pixel) is dropped, so the pixel size is exactly ``gsd`` when
    ``gsd / src`` is an integer and otherwise within half a source pixel over the scene. The scene
    is processed in blocks of about 4096 source pixels with a halo, aligned on target pixels, so
    any scene size works; the coarse outputs are held in memory, up to :data:`MAX_COARSE_PIXELS`.

    Writes ``out_dir/scene.tif`` (RGB uint8, the scene's CRS, ``ACQUISITION_TIME`` tag when known),
    ``out_dir/density.tif`` (float32, one band per class named after it, same grid) and
    ``out_dir/labels.json`` (COCO, objects whose centre is inside the coarse grid).

    Args:
        scene_path: High-resolution GeoTIFF (read through :class:`Scene`, so any band layout it
            supports, stretched to uint8).
        labels: The scene's objects in its pixel coordinates.
        gsd: Target GSD in metres (overrides ``sensor.gsd``).
        out_dir: Output folder.
        sensor: Sensor to simulate; ``SensorModel(gsd=gsd)`` by default.
        seed: Seed of the noise.
        sigma: Density kernel std in coarse pixels.
        bands: Band choice passed to :class:`Scene`.

    Returns:
        ``{"scene": ..., "density": ..., "labels": ...}`` paths.

    Raises:
        ValueError: unknown source GSD, labels for another image size, a target finer than the
            source, or a coarse grid larger than :data:`MAX_COARSE_PIXELS`.
    """
    out_dir = Path(out_dir)
    sensor = SensorModel(gsd=gsd) if sensor is None else replace(sensor, gsd=gsd)
    rng = np.random.default_rng(seed)
    with Scene(scene_path, bands=bands) as scene:
        info = scene.info
        if (labels.width, labels.height) != (info.width, info.height):
            raise ValueError(
                f"{scene_path}: labels are for {labels.width}x{labels.height} px, scene is {info.width}x{info.height}"
            )
        src = info.gsd if info.gsd is not None else labels.gsd
        if src is None:
            raise ValueError(f"{scene_path}: source GSD unknown (no CRS and labels.gsd is None)")
        if src > gsd * (1 + 1e-6):
            raise ValueError(f"{scene_path}: source GSD {src:.3f} m is coarser than the target {gsd} m")
        r = gsd / src  # source pixels per target pixel
        w = max(1, int(math.floor(info.width / r + 1e-9)))
        h = max(1, int(math.floor(info.height / r + 1e-9)))
        if w * h > MAX_COARSE_PIXELS:
            raise ValueError(
                f"{scene_path}: coarse grid {w}x{h} px exceeds {MAX_COARSE_PIXELS} px; split the scene first"
            )
        wc = min(info.width, max(1, _round_half_up(w * r)))
        hc = min(info.height, max(1, _round_half_up(h * r)))
        rx, ry = wc / w, hc / h

        out = np.zeros((h, w, 3), dtype=np.uint8)
        valid_out = np.ones((h, w), dtype=bool)
        block = max(1, int(_SOURCE_BLOCK // r))
        halo = int(math.ceil(4 * psf_sigma(sensor, src) / r)) + 2  # target pixels of context per side
        for ty0, ty1 in _blocks(h, block):
            for tx0, tx1 in _blocks(w, block):
                # Block plus halo, clipped to the grid: its source window maps to whole target pixels.
                ax0, ay0 = max(0, tx0 - halo), max(0, ty0 - halo)
                ax1, ay1 = min(w, tx1 + halo), min(h, ty1 + halo)
                sx0, sy0 = _round_half_up(ax0 * rx), _round_half_up(ay0 * ry)
                sx1, sy1 = _round_half_up(ax1 * rx), _round_half_up(ay1 * ry)
                rgb, mask = scene.read_rgb(Window(sx0, sy0, sx1 - sx0, sy1 - sy0))
                coarse = degrade_image(rgb, src, sensor, rng, valid=mask, out_shape=(ay1 - ay0, ax1 - ax0))
                sl = (slice(ty0 - ay0, ty1 - ay0), slice(tx0 - ax0, tx1 - ax0))
                out[ty0:ty1, tx0:tx1] = coarse[sl]
                if not mask.all():
                    valid_out[ty0:ty1, tx0:tx1] = coarse_valid(mask, (ay1 - ay0, ax1 - ax0))[sl]
        crs, transform, acquired = info.crs, info.transform * Affine.scale(rx, ry), info.acquired

    nodata = None
    if not valid_out.all():  # 0 marks nodata, so valid pixels must not be 0 in any band
        nodata = 0
        out[valid_out] = np.maximum(out[valid_out], 1)
        out[~valid_out] = 0
    acquired = acquired or labels.acquired
    tags = {"FREIGHTWATCH_SIMULATED_SENSOR": json.dumps(asdict(sensor)), "SOURCE_GSD": f"{src:.4f}"}
    if acquired is not None:
        tags["ACQUISITION_TIME"] = acquired.isoformat()
    paths = {
        "scene": write_geotiff(out_dir / "scene.tif", out.transpose(2, 0, 1), crs, transform, nodata=nodata,
                               tags=tags, photometric_rgb=True),
    }

    src_labels = replace(labels, width=wc, height=hc, gsd=src, transform=info.transform, crs=crs)
    coarse_labels = degrade_labels(src_labels, gsd, (h, w))
    coarse_labels = replace(
        coarse_labels,
        file_name="scene.tif",
        acquired=acquired,
        annotations=[a for a in coarse_labels.annotations if 0 <= a.center[0] < w and 0 <= a.center[1] < h],
        attrs={**coarse_labels.attrs, "source_file": labels.file_name},
    )
    density = density_targets(coarse_labels, sigma=sigma)
    dtags = {"SIGMA_PX": f"{sigma}", **{f"COUNT_{c.upper()}": f"{density[i].sum():.3f}" for i, c in enumerate(CLASSES)}}
    if acquired is not None:
        dtags["ACQUISITION_TIME"] = acquired.isoformat()
    paths["density"] = write_geotiff(out_dir / "density.tif", density, crs, transform, descriptions=CLASSES,
                                     tags=dtags)
    try:
        from freightwatch.datasets.formats.coco import write_coco
    except ImportError:  # written by another module; optional here
        return paths
    paths["labels"] = write_coco([coarse_labels], out_dir / "labels.json")
    return paths
