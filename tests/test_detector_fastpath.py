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


def test_slice_nms_is_ultralytics_nms():
    """OpenCV-run NMS keeps exactly the boxes ultralytics' non_max_suppression keeps."""
    import torch
    from ultralytics.utils import nms

    from freightwatch.models.detector import slice_nms

    rng = np.random.default_rng(0)
    n = 600  # clustered boxes, so that suppression happens within and not across classes
    centres = rng.uniform(0, 512, (40, 2))[rng.integers(0, 40, n)] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(8, 40, (n, 2))
    scores = rng.uniform(0, 1, (n, 3)).astype(np.float32) ** 3
    preds = np.concatenate([centres.T, wh.T, scores.T]).astype(np.float32)
    for conf, iou, classes in [(0.25, 0.5, None), (0.1, 0.3, [1]), (0.05, 0.7, [0, 2])]:
        ref = nms.non_max_suppression(torch.from_numpy(preds)[None], conf, iou, classes, False, max_det=2000,
                                      nc=0)[0].numpy()
        xyxy, s, c = slice_nms(preds, conf, iou, classes)
        assert 20 < len(ref) < n  # some boxes suppressed, some kept
        np.testing.assert_allclose(xyxy, ref[:, :4], atol=1e-4)
        np.testing.assert_array_equal(s, ref[:, 4])
        np.testing.assert_array_equal(c, ref[:, 5])
    xyxy, s, c = slice_nms(preds, 0.25, 0.5, max_det=7)
    assert len(xyxy) == 7 and (np.diff(s) <= 0).all()
    empty = slice_nms(preds, 1.0, 0.5)
    assert empty[0].shape == (0, 4)


def test_onnx_export_is_cached_by_weights(det_and_chips, monkeypatch, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from freightwatch.models import runtimes

    monkeypatch.setenv("FREIGHTWATCH_HOME", str(tmp_path))
    det, chips = det_and_chips
    net = det._fused_cpu_net()
    first = runtimes.onnx_export(net, 64)
    assert first.parent == tmp_path / "onnx" and first.stat().st_size > 100_000

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtimes, "_onnx_bytes", no_export)
    assert runtimes.onnx_export(net, 64) == first  # same weights, same size: the file is reused
    ex = runtimes.ExportedNet(net, 64, "openvino")
    assert ex.run_images(np.zeros((2, 64, 64, 3), np.uint8)).shape[0] == 2
    # other weights are another file
    monkeypatch.undo()
    monkeypatch.setenv("FREIGHTWATCH_HOME", str(tmp_path))
    import copy

    import torch

    other = copy.deepcopy(net)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert runtimes.onnx_export(other, 64) != first
    # a damaged cached file is exported again, not an error
    first.write_bytes(b"not onnx")
    ex = runtimes.ExportedNet(net, 64, "openvino")
    assert first.stat().st_size > 100_000
    assert ex.run_images(np.zeros((1, 64, 64, 3), np.uint8)).shape[0] == 1
    # without the cache nothing is left behind
    before = set((tmp_path / "onnx").iterdir())
    runtimes.ExportedNet(net, 96, "onnxruntime", cache=False)
    assert set((tmp_path / "onnx").iterdir()) == before


def test_net_parts_compose_to_the_network(det_and_chips):
    import torch

    from freightwatch.models.runtimes import net_parts

    det, chips = det_and_chips
    net = det._fused_cpu_net()
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        whole = net(x)[0]
        for split in (1, 5, len(net.model) - 1):
            stem, head = net_parts(net, split)
            torch.testing.assert_close(head(*stem(x)), whole, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="split"):
        net_parts(net, 0)


def test_onnx_exports_are_not_kept_in_a_folder_others_can_write(det_and_chips, monkeypatch, tmp_path, caplog):
    pytest.importorskip("onnx")
    from freightwatch.models import runtimes

    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.setenv("FREIGHTWATCH_HOME", str(home))
    det, _ = det_and_chips
    path = runtimes.onnx_export(det._fused_cpu_net(), 64)
    assert home not in path.parents  # a temporary file, not the shared folder
    path.unlink()
    assert not list((home / "onnx").iterdir())
    assert "not a folder only this user can write" in caplog.text
