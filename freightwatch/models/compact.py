"""Compact weight storage: 8-bit and 4-bit codes for the large tensors of a state dict.

Bundled weights must stay under 10 MB; a YOLOv8s is 22 MB in float16. This stores each large
weight tensor (at least ``min_numel`` elements, two or more dimensions) as

- ``q8``: int8 codes with one float32 scale per output channel (``w = q * scale[c]``), or
- ``lut6`` / ``lut4``: 6- or 4-bit codes (bit-packed) into a 64- or 16-entry float16 lookup
  table of the tensor, times a float32 scale per output channel; the table is fitted by k-means
  (Lloyd) on the scaled weights. Non-uniform levels follow the bell-shaped weight distribution,
  so they lose less than a uniform grid of the same bits (relative error ~2.5-3 % at 6 bits,
  ~10 % at 4, against ~1.2 % for per-channel int8).

Everything else (biases, batch-norm statistics, small kernels) is stored as float16. Tensors are
all plain safetensors arrays; how to rebuild each one lives in the file's string metadata as JSON
(``compact`` key), so loading stays pickle-free. :func:`expand_state` returns float32 tensors:
the network runs exactly as it would from float weights that equal the decoded ones.

The storage budget picks the codes: every eligible tensor starts as ``q8`` and, while the estimate
exceeds ``max_bytes``, the ``q8`` tensor whose switch to ``lut6`` saves most bytes (the largest
ones: also the most redundant) is switched; ``lut4`` only when 6 bits everywhere they pay still
do not fit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

META_KEY = "compact"
"""safetensors metadata key holding the JSON decoding table."""

_SCALE, _LUT = ".__scale__", ".__lut__"
LUT_BITS = {"lut6": 6, "lut4": 4}
"""Lookup-table kinds in the order the budget tries them (fewer bits: more error)."""


def _q8(w2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = w2d.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w2d / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.float()


def _pack(idx: torch.Tensor, bits: int) -> torch.Tensor:
    """Rows of ``bits``-bit codes (values < 2**bits) packed into bytes, most significant bit first."""
    a = idx.numpy().astype(np.uint8)
    planes = (a[:, :, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)) & 1
    return torch.from_numpy(np.packbits(planes.reshape(a.shape[0], -1), axis=1))


def _unpack(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    planes = np.unpackbits(packed.numpy(), axis=1, count=n * bits).reshape(packed.shape[0], n, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return torch.from_numpy(planes.astype(np.int64) @ weights)


def _assign(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level of a sorted table (1-D: binary search on the midpoints)."""
    return torch.searchsorted(((lut[1:] + lut[:-1]) / 2).contiguous(), x.contiguous())


def _lut(w2d: torch.Tensor, bits: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``2**bits`` levels for a tensor: packed codes (uint8 rows), the float16 table, row scales.

    Rows (output channels) are divided by their spread, then one table is fitted by k-means on
    all of them: a table per row would cost 128 bytes a row at 6 bits, a fifth of the codes of a
    small convolution, for little less error (batch norm is not folded, so rows differ mostly in
    scale, which the row factor takes).
    """
    w2d = w2d.float()
    scale = w2d.std(dim=1).nan_to_num(0.0).clamp(min=1e-12)
    x = (w2d / scale[:, None]).reshape(-1)
    k = 1 << bits
    # Start from the levels optimal for a Gaussian (density of levels ~ p**(1/3): a normal of
    # sqrt(3) times the spread, clipped to the range); Lloyd from equal-mass quantiles crawls
    # towards the tails and stays ~1.5x worse after 20 steps at 6 bits.
    z = (torch.special.ndtri((torch.arange(k, dtype=torch.float32) + 0.5) / k) * math.sqrt(3.0)).numpy()
    # 1-D Lloyd on the sorted values: each cluster is a run, found by binary search of the level
    # midpoints, and its sum is a difference of prefix sums (no pass over the weights per step).
    xs = np.sort(x.numpy().astype(np.float64))
    prefix = np.concatenate([[0.0], np.cumsum(xs)])
    lut_np = np.clip(z.astype(np.float64), xs[0], xs[-1])
    for _ in range(iters):
        bounds = np.concatenate([[0], np.searchsorted(xs, (lut_np[1:] + lut_np[:-1]) / 2), [xs.size]])
        cnt = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        lut_np = np.sort(np.where(cnt > 0, sums / np.maximum(cnt, 1), lut_np))
    lut16 = torch.from_numpy(lut_np).half().sort().values
    idx = _assign(x, lut16.float()).reshape(w2d.shape)
    return _pack(idx, bits), lut16, scale


def _unlut(packed: torch.Tensor, lut: torch.Tensor, scale: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    return lut.float()[_unpack(packed, bits, n)] * scale.float()[:, None]


def _eligible(v: torch.Tensor, min_numel: int) -> bool:
    return v.is_floating_point() and v.ndim >= 2 and v.numel() >= min_numel


def _bytes(kind: str, v: torch.Tensor) -> int:
    if kind not in ("q8", *LUT_BITS):
        return v.numel() * (2 if v.is_floating_point() else v.element_size())
    rows, n = v.shape[0], math.prod(v.shape[1:])
    if kind == "q8":
        return rows * n + 4 * rows
    bits = LUT_BITS[kind]
    return rows * ((n * bits + 7) // 8) + 4 * rows + 2 * (1 << bits)


def plan(state: Mapping[str, torch.Tensor], max_bytes: int | None = None, min_numel: int = 4096,
         header_bytes: int = 150) -> dict[str, str]:
    """Storage kind of every tensor (``q8``, ``lut6``, ``lut4``, ``fp16`` or ``raw``) under a byte budget.

    ``header_bytes`` per stored array estimates the safetensors header (name, dtype, offsets).
    Raises ``ValueError`` when even 4-bit codes for every eligible tensor exceed ``max_bytes``.
    """
    kinds = {k: ("q8" if _eligible(v, min_numel) else ("fp16" if v.is_floating_point() else "raw"))
             for k, v in state.items()}
    if max_bytes is None:
        return kinds

    def cost(kind: str, v: torch.Tensor) -> int:  # data plus one header per stored array
        return _bytes(kind, v) + header_bytes * {"fp16": 1, "raw": 1, "q8": 2}.get(kind, 3)

    total = sum(cost(kinds[k], v) for k, v in state.items())
    eligible = [k for k in state if kinds[k] == "q8"]
    for kind in LUT_BITS:
        # the switches that save most first; a table larger than the codes it spares is skipped
        saving = {k: _bytes(kinds[k], state[k]) - _bytes(kind, state[k]) for k in eligible}
        for k in sorted((k for k in eligible if saving[k] > 0), key=lambda k: (-saving[k], k)):
            if total <= max_bytes:
                return kinds
            total += cost(kind, state[k]) - cost(kinds[k], state[k])
            kinds[k] = kind
    if total > max_bytes:
        raise ValueError(f"weights need {total / 1e6:.2f} MB even with 4-bit codes; budget {max_bytes / 1e6:.2f} MB")
    return kinds


def compress_state(state: Mapping[str, torch.Tensor], max_bytes: int | None = None,
                   min_numel: int = 4096) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Arrays to save with safetensors and the metadata entry that decodes them.

    Returns ``(tensors, metadata)``; pass both to ``safetensors.torch.save_file``.
    """
    kinds = plan(state, max_bytes, min_numel)
    out: dict[str, torch.Tensor] = {}
    table: dict[str, dict[str, Any]] = {}
    for k, v in state.items():
        v = v.detach().cpu()
        kind = kinds[k]
        if kind in ("q8", *LUT_BITS):
            w2d = v.float().reshape(v.shape[0], -1)
            if kind == "q8":
                out[k], out[k + _SCALE] = _q8(w2d)
            else:
                out[k], out[k + _LUT], out[k + _SCALE] = _lut(w2d, LUT_BITS[kind])
            table[k] = {"kind": kind, "shape": list(v.shape)}
        elif kind == "fp16":
            out[k] = v.half().contiguous()
            table[k] = {"kind": "fp16", "dtype": str(v.dtype).removeprefix("torch.")}
        else:
            out[k] = v.contiguous()
    return out, {META_KEY: json.dumps(table, separators=(",", ":"))}


def is_compact(metadata: Mapping[str, str] | None) -> bool:
    """Whether a safetensors file's metadata says it holds compact codes."""
    return bool(metadata) and META_KEY in metadata


def expand_state(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Float tensors from :func:`compress_state`'s arrays (``ValueError`` on an inconsistent file)."""
    try:
        table: dict[str, dict[str, Any]] = json.loads(metadata[META_KEY])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"compact metadata is missing or not JSON ({exc})") from exc
    state: dict[str, torch.Tensor] = {}
    try:
        for k, v in tensors.items():
            if k.endswith((_SCALE, _LUT)):
                continue
            entry = table.get(k)
            if entry is None:
                state[k] = v
            elif entry["kind"] == "fp16":
                state[k] = v.to(getattr(torch, entry.get("dtype", "float32")))
            elif entry["kind"] == "q8":
                shape = entry["shape"]
                state[k] = (v.float() * tensors[k + _SCALE][:, None]).reshape(shape)
            elif entry["kind"] in LUT_BITS:
                shape = entry["shape"]
                n = math.prod(shape[1:])
                state[k] = _unlut(v, tensors[k + _LUT], tensors[k + _SCALE], LUT_BITS[entry["kind"]],
                                  n).reshape(shape)
            else:
                raise ValueError(f"unknown storage kind {entry['kind']!r} for {k}")
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ValueError(f"compact weights are inconsistent with their metadata ({exc!r})") from exc
    return state


__all__ = ["META_KEY", "compress_state", "expand_state", "is_compact", "plan"]
