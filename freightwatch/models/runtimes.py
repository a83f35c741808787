"""Inference runtimes for the detector's CPU fast path: PyTorch, ONNX Runtime or OpenVINO.

Sliced inference spends most of its time in the network's forward pass. On CPUs, ONNX Runtime
and OpenVINO run the same fused YOLO graph about 1.4-1.5x faster than PyTorch eager at float32
(same boxes to ~1e-3 px), and OpenVINO's bfloat16 about 3.5x faster where the CPU has AMX. Both
are optional installs (``pip install freightwatch[onnxruntime]`` or ``[openvino]``).

The network is exported to ONNX once per detector and the file kept, named by a digest of the
weights, under freightwatch's home folder (``$FREIGHTWATCH_HOME``, else a per-user temporary
folder; see :func:`onnx_export`), so later runs skip the export. Nothing is downloaded.
OpenVINO is handed the slices as they are read (uint8, height x width x RGB): the conversion to
float, the 1/255 scaling and the transpose to NCHW run inside its graph, which saves the copies
PyTorch would make on the way (about 2 ms a slice).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from freightwatch.errors import FreightwatchError

RUNTIMES = ("torch", "onnxruntime", "openvino")
"""Runtimes :meth:`freightwatch.models.detector.Detector.predict` accepts."""

_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
"""What each runtime imports: itself, and onnx for torch's ONNX export."""
log = logging.getLogger(__name__)

_OPSET = 17
_PRECISIONS = {"torch": ("fp32", "bf16"), "onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}


def check_runtime(runtime: str, precision: str = "fp32") -> None:
    """Fail early, with what to install, when ``runtime`` cannot run ``precision`` here.

    Raises:
        FreightwatchError: unknown runtime, a precision the runtime lacks, or a missing package.
    """
    if runtime not in RUNTIMES:
        raise FreightwatchError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if precision not in _PRECISIONS[runtime]:
        raise FreightwatchError(f"runtime {runtime} supports precision {', '.join(_PRECISIONS[runtime])}, "
                                f"not {precision!r}")
    if runtime != "torch":
        import importlib.util

        missing = [p for p in _PACKAGES[runtime] if importlib.util.find_spec(p) is None]
        if missing:
            raise FreightwatchError(f"runtime {runtime} needs the {' and '.join(missing)} package"
                                    f"{'s' if len(missing) > 1 else ''}: pip install 'freightwatch[{runtime}]'")


STEM_LAYERS = 1
"""Leading layers that stay float32 when a network runs in bfloat16 (see :func:`net_parts`)."""


def _needed(layers: list[Any], k: int) -> list[int]:
    """Indices of layer outputs before ``k`` that layers from ``k`` on read; ``k - 1`` last."""
    used: set[int] = set()
    for layer in layers[k:]:
        used |= {j for j in ([layer.f] if isinstance(layer.f, int) else layer.f) if j != -1 and j < k}
    return sorted(used - {k - 1}) + [k - 1]


def net_parts(net: Any, split: int = STEM_LAYERS) -> tuple[Any, Any]:
    """An ultralytics network cut in two at layer ``split``: ``head(*stem(x))`` equals ``net(x)[0]``.

    Under bfloat16 the stem stays float32: rounding the input pixels and the first convolution
    to bfloat16's 8-bit mantissa is where most of the difference from float32 comes from (on
    an 8000² scene, agreement with the float32 boxes 0.9897 with every layer in bf16, 0.9933
    with the first convolution in fp32, 0.9900 with the detection head in fp32 instead), while
    that convolution is a few percent of the work.
    """
    import torch

    layers = list(net.model)
    if not 0 < split < len(layers):
        raise ValueError(f"split must be inside the network's {len(layers)} layers, not {split}")
    saved = set(getattr(net, "save", ()))

    class _Part(torch.nn.Module):
        def __init__(self, start: int, stop: int) -> None:
            super().__init__()
            self.start, self.parts = start, torch.nn.ModuleList(layers[start:stop])
            self.inputs = _needed(layers, start) if start else []
            self.outputs = _needed(layers, stop) if stop < len(layers) else None
            self.keep = saved | set(self.outputs or [])

        def forward(self, *ins: torch.Tensor) -> Any:
            y = dict(zip(self.inputs, ins, strict=True)) if self.inputs else {}
            x = ins[-1]
            for layer in self.parts:
                if layer.f != -1:
                    x = y[layer.f] if isinstance(layer.f, int) else [x if j == -1 else y[j] for j in layer.f]
                x = layer(x)
                if layer.i in self.keep:
                    y[layer.i] = x
            if self.outputs is None:  # the detection head: raw predictions only, not its feature maps
                return x[0] if isinstance(x, (list, tuple)) else x
            return tuple(y[j] for j in self.outputs)

    return _Part(0, split).eval(), _Part(split, len(layers)).eval()


def _export_args(net: Any, imgsz: int, part: str) -> tuple[Any, tuple[Any, ...], list[str], list[str]]:
    """The module, example inputs and input/output names of one exported ``part``."""
    import torch

    x = torch.zeros(1, 3, imgsz, imgsz)
    if part == "all":
        return _preds_only(net), (x,), ["images"], ["preds"]
    stem, head = net_parts(net)
    if part == "stem":
        return stem, (x,), ["images"], [f"f{j}" for j in head.inputs]
    with torch.no_grad():
        mid = stem(x)
    return head, tuple(mid), [f"f{j}" for j in head.inputs], ["preds"]


def _preds_only(net: Any) -> Any:
    """The whole network returning its raw prediction tensor only (YOLO also returns feature maps)."""
    import torch

    class _Preds(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.m(x)
            return y[0] if isinstance(y, (list, tuple)) else y

    return _Preds(net).eval()


def _onnx_bytes(net: Any, imgsz: int, part: str = "all") -> bytes:
    """The fused network (``all``), or its float32 ``stem`` or the ``head`` after it, as ONNX
    (opset 17, dynamic batch, fixed ``imgsz`` square input)."""
    import warnings

    import torch

    module, args, names_in, names_out = _export_args(net, imgsz, part)
    buf = io.BytesIO()
    # the tracer warns about YOLO's shape checks; the input size is fixed, so they are constants
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, opset_version=_OPSET, input_names=names_in, output_names=names_out,
                          dynamic_axes={n: {0: "batch"} for n in names_in + names_out}, dynamo=False)
    return buf.getvalue()


def onnx_cache_dir() -> Path:
    """Where ONNX exports are kept: ``onnx/`` under :func:`~freightwatch.models.ultralytics_env.freightwatch_home`."""
    from freightwatch.models.ultralytics_env import freightwatch_home

    return freightwatch_home() / "onnx"


def _net_key(net: Any, imgsz: int, part: str) -> str:
    """A digest of everything the export depends on: weights, architecture, part, input size, exporter."""
    import torch

    h = hashlib.sha256(f"{torch.__version__}|opset{_OPSET}|{imgsz}|{part}|{STEM_LAYERS}|"
                       f"{getattr(net, 'yaml', '')}".encode())
    for name, t in net.state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _private_dir(path: Path) -> bool:
    """Whether ``path`` and its parent are (or can be made) folders of this user's that nobody else
    can write: a cached export is run as found, so one planted in a shared temporary folder must
    not be."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        stats = [path.stat(), path.parent.stat()]  # the parent too: whoever can write it can swap the folder
    except OSError:
        return False
    uid = os.getuid() if hasattr(os, "getuid") else None
    return all((uid is None or st.st_uid == uid) and not st.st_mode & 0o022 for st in stats)


def onnx_export(net: Any, imgsz: int, cache: bool = True, part: str = "all") -> Path:
    """The network (or one ``part`` of it: ``all``, ``stem``, ``head``) exported to ONNX, as a file.

    With ``cache``, the file is named by a digest of the weights, architecture, part, input
    size and torch version and kept for the next run: exporting costs about a second (most of
    it importing the exporter), a tenth of a run over an 8000² scene. Without it, a fresh
    temporary file the caller deletes. :class:`ExportedNet` exports again a cached file that
    cannot be read.
    """
    if part not in ("all", "stem", "head"):
        raise ValueError(f"part must be all, stem or head, not {part!r}")
    if cache and not _private_dir(onnx_cache_dir()):
        log.warning("%s is not a folder only this user can write: ONNX exports are not kept there",
                    onnx_cache_dir())
        cache = False
    if not cache:
        fd, tmp = tempfile.mkstemp(suffix=".onnx")
        with os.fdopen(fd, "wb") as f:
            f.write(_onnx_bytes(net, imgsz, part))
        return Path(tmp)
    path = onnx_cache_dir() / f"yolo-{imgsz}-{part}-{_net_key(net, imgsz, part)}.onnx"
    if path.is_file() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_onnx_bytes(net, imgsz, part))
        os.replace(tmp, path)  # atomic: a concurrent run never reads half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ExportedNet:
    """A YOLO network run by ONNX Runtime or OpenVINO, called like the PyTorch one.

    At ``bf16`` (OpenVINO) the network runs as two compiled graphs: its first
    :data:`STEM_LAYERS` layers in float32, the rest in bfloat16 (see :func:`net_parts`).

    Args:
        net: The fused PyTorch network (eval mode, CPU).
        imgsz: Square input size it will be called with.
        runtime: ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, or ``bf16`` (OpenVINO only).
        threads: CPU threads (``None``: torch's current setting).
        cache: Keep the ONNX export on disk for the next run (see :func:`onnx_export`).
    """

    def __init__(self, net: Any, imgsz: int, runtime: str, precision: str = "fp32", threads: int | None = None,
                 cache: bool = True):
        import torch

        check_runtime(runtime, precision)
        if runtime == "torch":
            raise FreightwatchError("ExportedNet runs onnxruntime or openvino; call the PyTorch network directly")
        self.runtime, self.precision, self.imgsz = runtime, precision, imgsz
        threads = threads or torch.get_num_threads()
        if runtime == "onnxruntime":
            session = self._load(net, imgsz, "all", cache, lambda path: _ort_session(path, threads))
            self._run = lambda x: session.run(None, {"images": x})[0]
            return
        import openvino as ov

        core = ov.Core()

        def compiled(part: str, hint: str) -> Any:
            def read(path: Path) -> Any:
                model = core.read_model(str(path))
                model = _uint8_nhwc_input(model) if part != "head" else model
                # the CPU plugin picks bf16 by itself on AMX machines: fp32 must be asked for
                return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                         "INFERENCE_NUM_THREADS": threads,
                                                         "PERFORMANCE_HINT": "LATENCY"})

            return self._load(net, imgsz, part, cache, read)

        if precision == "bf16":
            stem, head = compiled("stem", "f32"), compiled("head", "bf16")
            stem_req, head_req = stem.create_infer_request(), head.create_infer_request()
            out = head.output(0)

            def run_uint8(x: np.ndarray) -> Any:
                stem_req.infer({0: x})
                for i in range(len(stem.outputs)):  # handed over without a copy
                    head_req.set_input_tensor(i, stem_req.get_output_tensor(i))
                head_req.infer()
                return head_req.get_tensor(out).data

            self._run_uint8 = run_uint8
        else:
            whole = compiled("all", "f32")
            request, out = whole.create_infer_request(), whole.output(0)
            self._run_uint8 = lambda x: request.infer({0: x})[out]
        # a float NCHW batch in [0, 1] goes back to the uint8 the graph takes: exact for slices
        # that came from uint8, which is all the fast path sends
        self._run = lambda x: self._run_uint8(
            np.ascontiguousarray(np.rint(x * 255).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)))

    @staticmethod
    def _load(net: Any, imgsz: int, part: str, cache: bool, read: Any) -> Any:
        """``read(onnx path)`` of the exported ``part``; a cached export it cannot read is made again."""
        path = onnx_export(net, imgsz, cache=cache, part=part)
        try:
            return read(path)
        except Exception:  # noqa: BLE001 - a damaged cached file (each runtime raises its own types)
            if not cache:
                raise
            path.unlink(missing_ok=True)
            return read(onnx_export(net, imgsz, cache=cache, part=part))
        finally:
            if not cache:
                path.unlink(missing_ok=True)

    def __call__(self, x: Any) -> Any:
        """Raw predictions ``(batch, 4 + classes, anchors)`` for a ``(batch, 3, imgsz, imgsz)`` tensor in [0, 1]."""
        import torch

        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.array(self._run(arr), dtype=np.float32, copy=True))

    @property
    def takes_uint8(self) -> bool:
        """Whether :meth:`run_images` feeds uint8 slices straight to the runtime (OpenVINO)."""
        return hasattr(self, "_run_uint8")

    def run_images(self, images: np.ndarray) -> Any:
        """Raw predictions for a ``(batch, imgsz, imgsz, 3)`` uint8 RGB batch, as a float32 tensor."""
        import torch

        if not self.takes_uint8:
            x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
            return torch.from_numpy(np.array(self._run(x), dtype=np.float32, copy=True))
        batch = np.ascontiguousarray(images, dtype=np.uint8)
        return torch.from_numpy(np.array(self._run_uint8(batch), dtype=np.float32, copy=True))


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _uint8_nhwc_input(model: Any) -> Any:
    """The OpenVINO model taking ``(batch, H, W, 3)`` uint8 and doing ``float / 255`` to NCHW itself."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    inp.model().set_layout(ov.Layout("NCHW"))
    inp.preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    return ppp.build()
