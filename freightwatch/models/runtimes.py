"""Inference runtimes for the detector's CPU fast path: PyTorch, ONNX Runtime or OpenVINO.

Sliced inference spends most of its time in the network's forward pass. On CPUs, ONNX Runtime
and OpenVINO run the same fused YOLO graph about 1.4-1.5x faster than PyTorch eager at float32
(same boxes to ~1e-3 px), and OpenVINO's bfloat16 about 3.5x faster where the CPU has AMX. Both
are optional installs (``pip install freightwatch[onnxruntime]`` or ``[openvino]``).

The network is exported to ONNX in memory once per detector (a few seconds); nothing is written
to disk or downloaded.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import numpy as np

from freightwatch.errors import FreightwatchError

RUNTIMES = ("torch", "onnxruntime", "openvino")
"""Runtimes :meth:`freightwatch.models.detector.Detector.predict` accepts."""

_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
"""What each runtime imports: itself, and onnx for torch's ONNX export."""
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


def _onnx_bytes(net: Any, imgsz: int) -> bytes:
    """The fused network as ONNX (opset 17, dynamic batch, fixed ``imgsz`` square input)."""
    import torch

    class _Preds(torch.nn.Module):  # the raw prediction tensor only (YOLO also returns feature maps)
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.m(x)
            return y[0] if isinstance(y, (list, tuple)) else y

    import warnings

    buf = io.BytesIO()
    x = torch.zeros(1, 3, imgsz, imgsz)
    # the tracer warns about YOLO's shape checks; the input size is fixed, so they are constants
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Preds(net).eval(), (x,), buf, opset_version=17, input_names=["images"],
                          output_names=["preds"], dynamic_axes={"images": {0: "batch"}, "preds": {0: "batch"}},
                          dynamo=False)
    return buf.getvalue()


class ExportedNet:
    """A YOLO network run by ONNX Runtime or OpenVINO, called like the PyTorch one.

    Args:
        net: The fused PyTorch network (eval mode, CPU).
        imgsz: Square input size it will be called with.
        runtime: ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, or ``bf16`` (OpenVINO only).
        threads: CPU threads (``None``: torch's current setting).
    """

    def __init__(self, net: Any, imgsz: int, runtime: str, precision: str = "fp32", threads: int | None = None):
        import torch

        check_runtime(runtime, precision)
        if runtime == "torch":
            raise FreightwatchError("ExportedNet runs onnxruntime or openvino; call the PyTorch network directly")
        self.runtime, self.precision, self.imgsz = runtime, precision, imgsz
        threads = threads or torch.get_num_threads()
        model = _onnx_bytes(net, imgsz)
        if runtime == "onnxruntime":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
            self._run = lambda x: self._session.run(None, {"images": x})[0]
        else:
            import openvino as ov

            core = ov.Core()
            # OpenVINO reads ONNX from a path; the file lives only while it is read
            fd, path = tempfile.mkstemp(suffix=".onnx")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(model)
                ov_model = core.read_model(path)
            finally:
                os.unlink(path)
            # the CPU plugin picks bf16 by itself on AMX machines: fp32 must be asked for
            compiled = core.compile_model(ov_model, "CPU", {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
            })
            request = compiled.create_infer_request()
            out = compiled.output(0)
            self._run = lambda x: request.infer({0: x})[out]

    def __call__(self, x: Any) -> Any:
        """Raw predictions ``(batch, 4 + classes, anchors)`` for a ``(batch, 3, imgsz, imgsz)`` tensor."""
        import torch

        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.array(self._run(arr), dtype=np.float32, copy=True))
