"""Compact weight storage: codes decode close to the weights, the budget holds, detectors round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from freightwatch.errors import InputFileError
from freightwatch.models import compact


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scales = torch.rand(128, 1, 1, 1, generator=g) + 0.1  # rows of different spread, as before batch norm
    return {
        "big.weight": torch.randn(128, 64, 3, 3, generator=g) * scales,
        "mid.weight": torch.randn(64, 96, 1, 1, generator=g),
        "small.weight": torch.randn(8, 3, 3, 3, generator=g),  # under min_numel: float16
        "bn.running_mean": torch.randn(128, generator=g),
        "bn.num_batches_tracked": torch.tensor(7),
    }


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("budget, want", [(None, {"big.weight": "q8", "mid.weight": "q8"}),
                                          (66_000, {"big.weight": "lut6", "mid.weight": "q8"}),
                                          (47_000, {"big.weight": "lut4", "mid.weight": "lut6"})])
def test_codes_decode_close_to_the_weights_within_the_budget(budget, want) -> None:
    state = _state()
    kinds = compact.plan(state, budget)
    for k, kind in want.items():
        assert kinds[k] == kind
    out, meta = compact.compress_state(state, budget)
    if budget is not None:
        assert sum(v.numel() * v.element_size() for v in out.values()) <= budget
    back = compact.expand_state(out, meta)
    assert set(back) == set(state)
    limits = {"q8": 0.01, "lut6": 0.04, "lut4": 0.13}
    for k, v in state.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype
        if kinds[k] in limits:
            assert _rel(back[k], v) < limits[kinds[k]], (k, kinds[k], _rel(back[k], v))
    assert torch.equal(back["small.weight"], state["small.weight"].half().float())
    assert int(back["bn.num_batches_tracked"]) == 7


def test_fewer_bits_cost_accuracy_and_an_impossible_budget_is_refused() -> None:
    state = _state(1)
    errs = []
    for budget in (None, 66_000, 47_000):
        out, meta = compact.compress_state(state, budget)
        errs.append(_rel(compact.expand_state(out, meta)["big.weight"], state["big.weight"]))
    assert errs[0] < errs[1] < errs[2]
    with pytest.raises(ValueError, match="4-bit"):
        compact.plan(state, 10_000)


def test_lookup_levels_beat_a_uniform_grid_of_the_same_bits() -> None:
    torch.manual_seed(2)
    w = torch.distributions.Laplace(0.0, 1.0).sample((64, 576))  # heavy-tailed, as trained kernels are
    packed, lut, scale = compact._lut(w, 6)
    err_lut = _rel(compact._unlut(packed, lut, scale, 6, w.shape[1]), w)
    amax = w.abs().amax(dim=1, keepdim=True)
    uniform = torch.round(w / amax * 31).clamp(-31, 31) * amax / 31
    assert err_lut < 0.9 * _rel(uniform, w)  # measured 0.80x


def test_bit_packing_round_trips_odd_lengths() -> None:
    rng = np.random.default_rng(3)
    for bits in (4, 6):
        idx = torch.from_numpy(rng.integers(0, 1 << bits, (5, 37)))
        packed = compact._pack(idx, bits)
        assert packed.shape == (5, (37 * bits + 7) // 8)
        assert torch.equal(compact._unpack(packed, bits, 37), idx)


@pytest.fixture(scope="module")
def detector():
    """An untrained YOLO11n detector (random weights: what matters is the decoded network)."""
    from ultralytics.nn.tasks import DetectionModel

    from freightwatch.models import ultralytics_env
    from freightwatch.models.detector import Detector, DetectorCard

    yolo = ultralytics_env.yolo()("yolo11n.yaml", task="detect")
    torch.manual_seed(0)
    net = DetectionModel(cfg="yolo11n.yaml", nc=3, verbose=False)
    net.names = {0: "truck", 1: "railcar", 2: "boat"}
    net.eval()
    yolo.model = net
    return Detector(yolo, DetectorCard(imgsz=64, gsd=0.5))


def test_a_compact_detector_fits_its_budget_loads_without_pickle_and_computes_alike(detector, tmp_path: Path) -> None:
    from freightwatch.models.detector import Detector

    det = detector
    ref = det.save(tmp_path / "ref.safetensors")  # float16
    budget = int(ref.stat().st_size * 0.45)  # below int8 (~0.5): some tensors need 6 bits
    small = det.save(tmp_path / "small.safetensors", max_bytes=budget)
    assert small.stat().st_size <= budget
    storage = json.loads(small.with_suffix(".json").read_text())["extra"]["storage"]
    assert storage["max_bytes"] == budget and storage["tensors"].get("lut6", 0) > 0
    a, b = Detector.load(ref), Detector.load(small)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ya, yb = a.yolo.model(x)[0], b.yolo.model(x)[0]
    assert ya.shape == yb.shape
    corr = np.corrcoef(ya.flatten().numpy(), yb.flatten().numpy())[0, 1]
    assert corr > 0.99, corr


def test_damaged_compact_metadata_is_reported_with_the_file(detector, tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from freightwatch.models.detector import Detector

    path = detector.save(tmp_path / "d.safetensors", max_bytes=3_000_000)
    state = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    victim = next(k for k in state if k.endswith(compact._SCALE))
    del state[victim]
    save_file(state, str(path), metadata=meta)
    with pytest.raises(InputFileError, match=r"d\.safetensors.*inconsistent"):
        Detector.load(path)


def test_compact_command_writes_a_file_under_the_budget_and_refuses_an_impossible_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    from freightwatch.models.detector import bundled_detector

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "freightwatch", "compact", *args], capture_output=True,
                              text=True, timeout=300)

    yolo11n = bundled_detector("bundled-synthetic")  # 5.3 MB in float16
    res = cli(str(yolo11n), "--out", str(tmp_path / "small.safetensors"), "--max-mb", "2.2")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "small.safetensors").stat().st_size <= 2_200_000
    assert (tmp_path / "small.json").is_file() and "small.safetensors" in res.stdout
    res = cli(str(yolo11n), "--out", str(tmp_path / "tiny.safetensors"), "--max-mb", "0.5")
    assert res.returncode == 2 and "detector_synthetic.safetensors" in res.stderr and "4-bit" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "tiny.safetensors").exists()


def test_a_file_over_budget_after_writing_is_removed(detector, tmp_path: Path, monkeypatch) -> None:
    real_plan = compact.plan
    monkeypatch.setattr(compact, "plan", lambda state, max_bytes, min_numel: real_plan(state, None, min_numel))
    with pytest.raises(ValueError, match="over the 1000000 asked"):
        detector.save(tmp_path / "big.safetensors", max_bytes=1_000_000)  # int8 everywhere: ~2.6 MB
    assert not (tmp_path / "big.safetensors").exists() and not (tmp_path / "big.json").exists()
