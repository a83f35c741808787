"""The CPU fast path of ``Detector.predict`` gives ultralytics' predictor's boxes."""

from __future__ import annotations

import numpy as np
import pytest

from freightwatch.datasets.synthetic import SiteConfig, generate_site
from freightwatch.models.detector import Detector


@pytest.fixture(scope="module")
def det_and_chips():
    det = Detector.load("bundled")
    site = generate_site(SiteConfig(size_m=400, gsd=0.5, seed=4242, activity=0.9))
    s = det.card.imgsz
    chips = [np.ascontiguousarray(site.image[r: r + s, c: c + s]) for r, c in ((0, 0), (200, 288), (288, 100))]
    return det, chips


def _ultralytics(det, chips, conf):
    bgr = [np.ascontiguousarray(c[..., ::-1]) for c in chips]
    res = det.yolo.predict(bgr, conf=conf, iou=0.5, imgsz=det.card.imgsz, max_det=2000, verbose=False,
                           device="cpu", batch=len(bgr))
    return [sorted((*map(float, b.xyxy[0]), float(b.conf[0]), int(b.cls[0])) for b in r.boxes) for r in res]


def test_direct_cpu_path_matches_the_ultralytics_predictor(det_and_chips):
    det, chips = det_and_chips
    ref = _ultralytics(det, chips, conf=0.2)
    got = det.predict(chips, conf=0.2, iou=0.5, device="cpu")
    assert sum(len(r) for r in ref) > 20  # a busy site: the comparison means something
    for r, g in zip(ref, got, strict=True):
        g = sorted((*a.bbox, a.score, ["truck", "railcar", "boat"].index(a.cls)) for a in g)
        assert len(g) == len(r)
        np.testing.assert_allclose(np.array(g), np.array(r), atol=1e-2)


def test_bf16_keeps_nearly_all_boxes_and_bad_precision_is_refused(det_and_chips):
    det, chips = det_and_chips
    fp32 = det.predict(chips, conf=0.3, device="cpu")
    bf16 = det.predict(chips, conf=0.3, device="cpu", precision="bf16")
    n32, n16 = sum(map(len, fp32)), sum(map(len, bf16))
    assert abs(n32 - n16) <= max(2, 0.1 * n32)
    with pytest.raises(ValueError, match="precision"):
        det.predict(chips, precision="int4")


def test_other_sizes_go_through_the_predictor(det_and_chips):
    det, chips = det_and_chips
    small = [c[:300, :200] for c in chips]
    got = det.predict(small, conf=0.2, device="cpu")
    assert len(got) == 3 and all(a.bbox[2] <= 200 + 1 and a.bbox[3] <= 300 + 1 for g in got for a in g)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_exported_runtimes_give_the_torch_boxes_at_fp32(det_and_chips, runtime):
    pytest.importorskip(runtime)
    pytest.importorskip("onnx")
    det, chips = det_and_chips
    ref = det.predict(chips, conf=0.2, device="cpu")
    got = det.predict(chips, conf=0.2, device="cpu", runtime=runtime)
    assert sum(map(len, ref)) > 20
    for r, g in zip(ref, got, strict=True):
        r = sorted((*a.bbox, a.score, a.cls) for a in r)
        g = sorted((*a.bbox, a.score, a.cls) for a in g)
        assert [x[-1] for x in g] == [x[-1] for x in r]
        np.testing.assert_allclose(np.array([x[:-1] for x in g]), np.array([x[:-1] for x in r]), atol=1e-2)
    # a batch of another size reuses the exported network (dynamic batch)
    one = det.predict(chips[:1], conf=0.2, device="cpu", runtime=runtime)
    assert len(one[0]) == len(ref[0])


def test_openvino_bf16_keeps_nearly_all_boxes(det_and_chips):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    det, chips = det_and_chips
    n32 = sum(map(len, det.predict(chips, conf=0.3, device="cpu")))
    n16 = sum(map(len, det.predict(chips, conf=0.3, device="cpu", runtime="openvino", precision="bf16")))
    assert abs(n32 - n16) <= max(2, 0.1 * n32)


def test_runtime_errors_say_what_is_wrong(det_and_chips, monkeypatch):
    import importlib.util

    from freightwatch.errors import FreightwatchError
    from freightwatch.models.runtimes import check_runtime

    det, chips = det_and_chips
    with pytest.raises(FreightwatchError, match="runtime must be one of"):
        det.predict(chips, runtime="tensorrt")
    with pytest.raises(FreightwatchError, match="onnxruntime supports precision fp32"):
        check_runtime("onnxruntime", "bf16")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(FreightwatchError, match=r"needs the openvino package: pip install 'freightwatch\[openvino\]'"):
        check_runtime("openvino")
    # torch's ONNX export needs onnx too: say so before a run starts, not half-way through it
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(FreightwatchError, match=r"runtime onnxruntime needs the onnx package"):
        check_runtime("onnxruntime")


def test_per_class_iou_is_class_wise_nms_at_each_threshold(det_and_chips):
    det, chips = det_and_chips
    at = {t: det.predict(chips, conf=0.1, iou=t, device="cpu") for t in (0.3, 0.6)}
    mixed = det.predict(chips, conf=0.1, iou={"truck": 0.3, "railcar": 0.6, "boat": 0.6}, device="cpu")

    def of(preds, classes):
        return [sorted((*a.bbox, a.score) for a in img if a.cls in classes) for img in preds]

    assert of(mixed, {"truck"}) == of(at[0.3], {"truck"})
    assert of(mixed, {"railcar", "boat"}) == of(at[0.6], {"railcar", "boat"})
    assert sum(map(len, at[0.6])) > sum(map(len, at[0.3]))  # the thresholds differ in effect here
    # the predictor path (other sizes) does the same
    small = [c[:320, :320] for c in chips]
    got = det.predict(small, conf=0.1, iou={"truck": 0.3}, device="cpu")
    ref = det.predict(small, conf=0.1, iou=0.3, device="cpu")
    assert of(got, {"truck"}) == of(ref, {"truck"})
    with pytest.raises(ValueError, match="unknown classes"):
        det.predict(chips, iou={"tank": 0.3})
