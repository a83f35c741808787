"""Weight selection: a narrow YOLO initialised from a wider checkpoint."""

from __future__ import annotations

import pytest
import torch

from freightwatch.errors import InputFileError
from freightwatch.training.weight_selection import select_weights


def test_select_takes_every_kth_index_and_keeps_equal_dims():
    src = {"a": torch.arange(8 * 4 * 9, dtype=torch.float32).reshape(8, 4, 3, 3), "b": torch.arange(6.0),
           "c": torch.ones(5), "n": torch.tensor(7)}
    dst = {"a": torch.zeros(4, 2, 3, 3), "b": torch.zeros(6), "c": torch.zeros(3), "d": torch.zeros(2),
           "n": torch.tensor(0)}
    out, rep = select_weights(src, dst)
    assert torch.equal(out["a"], src["a"][::2, ::2])
    assert torch.equal(out["b"], src["b"]) and int(out["n"]) == 7
    assert torch.equal(out["c"], dst["c"]) and "shape" in rep.skipped["c"]  # 5 -> 3: no uniform stride
    assert torch.equal(out["d"], dst["d"]) and rep.skipped["d"] == "not in the source"
    assert sorted(rep.selected) == ["a", "b", "n"] and rep.parameters == 4 * 2 * 9 + 6 + 1


def test_yolov8s_to_yolov8n_selection_loads_as_a_detector(tmp_path):
    from freightwatch.models import ultralytics_env
    from freightwatch.models.detector import Detector
    from freightwatch.training.weight_selection import select_detector

    yolo = ultralytics_env.yolo()("yolov8s.yaml", task="detect")  # random weights stand in for a checkpoint
    src_pt = tmp_path / "wide.pt"
    yolo.save(str(src_pt))
    path, rep = select_detector(src_pt, "yolov8n.yaml", tmp_path / "narrow.safetensors")
    # everything but the class convolutions (80 COCO classes vs our 3) comes from the wide network
    assert set(rep.skipped) == {f"model.22.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias")}
    det = Detector.load(path)
    src = ultralytics_env.yolo()(str(src_pt), task="detect").model.float().state_dict()  # as saved (fp16)
    got = det.yolo.model.state_dict()
    k = "model.2.cv1.conv.weight"  # C2f input conv: out and in channels both halved
    assert got[k].shape[0] * 2 == src[k].shape[0] and torch.equal(got[k], src[k][::2, ::2])
    assert det.card.arch == "yolov8n.yaml" and det.card.extra["weight_selection"]["from"] == "wide.pt"
    with pytest.raises(InputFileError, match="does not exist"):
        select_detector(tmp_path / "missing.pt")
