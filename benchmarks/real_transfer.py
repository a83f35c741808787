"""How the models do on real imagery they never saw (issue 8): prints and writes a table.

Real data (``../shared/data``, not part of the project):
- "Ships in Google Earth" ``valid`` split (159 tiles, 357 boats, 0.3-0.5 m): never trained or
  selected on (the real-transfer recipe holds out a dev split of *train* for that).
- dota8, all 8 tiles (Google Earth, ~0.1-0.3 m): never trained on. One harbour tile holds 105
  ships (moored small craft), the rest hold no ship and no large vehicle: the only real trucks
  here are none, so truck accuracy on real imagery cannot be measured (said in the table).
  Evaluated at native resolution and resampled as if 0.25 m (boats half the size in pixels).
- Two PlanetScope 3 m scenes (unlabeled): the density model's boat count against a hand count
  (``benchmarks/data/planetscope_hand_counts.json``: how it was made is written there).

For every detector given: boat AP50 and count error (``sum|pred - true| / sum true`` over tiles,
at the model card's boat counting threshold, not tuned on these tiles), total count error, and
false trucks/railcars per tile (real ship tiles hold none). Writes ``OUT/real_transfer.json``,
``OUT/real_transfer.md``, the benchmark folders (reports with FN/FP example PNGs) and
``OUT/planetscope_<scene>.png`` overlays (density map + hand-counted positions).

Usage::

    python benchmarks/real_transfer.py --detector NAME=PATH [--detector ...] [--density NAME=PATH] --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from freightwatch.evaluation.benchmark import BenchmarkConfig, benchmark
from freightwatch.models.detector import Detector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HAND = Path(__file__).resolve().parent / "data" / "planetscope_hand_counts.json"
NEAR_PX = 25
"""Density within this many pixels (75 m at 3 m) of a hand-counted ship is mass "on" that ship."""


def _named(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not path:
        return Path(name).parent.name or name, Path(name)
    return name, Path(path)


def boat_threshold(weights: Path) -> float:
    """The model card's boat counting threshold (0.25 when it states none)."""
    card = Detector.load(weights).card
    return float((card.count_conf or {}).get("boat", 0.25))


def detector_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures of one detector benchmark that go into the table."""
    boat = metrics["detection"]["coco"].get("boat", {})
    per = metrics["counting"]["per_image"]["detector_conf"]
    b = per["boat"]
    n = max(1, b["n"])
    return {
        "boat_AP50": boat.get("AP50"), "boat_AP": boat.get("AP"), "boats": int(b["true_total"]),
        "boat_count_rel_mae": b["rel_mae"],
        "boat_total_rel_error": (b["pred_total"] - b["true_total"]) / b["true_total"] if b["true_total"] else None,
        "false_trucks_per_tile": per["truck"]["pred_total"] / n if per["truck"]["true_total"] == 0 else None,
        "false_railcars_per_tile": per["railcar"]["pred_total"] / n if per["railcar"]["true_total"] == 0 else None,
        "tiles": b["n"],
    }


def run_detectors(detectors: list[tuple[str, Path]], out: Path, reuse: bool = False) -> dict[str, Any]:
    """Benchmark each detector on the real validation sets."""
    sets = [
        ("ships_valid", dict(data=DATA / "ships-google-earth" / "data.yaml", format="yolo", split="val"), None),
        # the dataset's stated GSD (0.3-0.5 m): tiles resampled to the detector's 0.5 m, as in training
        ("ships_valid_at_0.4m", dict(data=DATA / "ships-google-earth" / "data.yaml", format="yolo", split="val"),
         0.4),
        ("dota8_native", dict(data=DATA / "dota8" / "dota8.yaml", format="yolo", mapping="dota"), None),
        ("dota8_as_0.25m", dict(data=DATA / "dota8" / "dota8.yaml", format="yolo", mapping="dota"), 0.25),
    ]
    res: dict[str, Any] = {}
    for name, weights in detectors:
        thr = boat_threshold(weights)
        for set_name, kw, gsd in sets:
            t0 = time.time()
            folder = out / f"{name}__{set_name}"
            if reuse and (folder / "metrics.json").is_file():
                m = json.loads((folder / "metrics.json").read_text())
            else:
                cfg = BenchmarkConfig(conf=thr, gsd=gsd, examples=6, show_progress=False)
                m = benchmark(out_dir=folder, weights=weights, config=cfg, use_density=False, **kw).metrics
            row = detector_row(m) | {"boat_threshold": thr, "seconds": round(time.time() - t0, 1)}
            res.setdefault(name, {})[set_name] = row
            logging.info("%s on %s: %s", name, set_name, row)
    return res


def _load_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{path}: cannot read image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def run_density(models: list[tuple[str, Path | None]], out: Path, gsd: float = 3.0) -> dict[str, Any]:
    """Boat counts of each density model on the PlanetScope scenes, next to the hand counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from freightwatch.evaluation.predict import density_array
    from freightwatch.models.density import DensityModel

    hand = json.loads(HAND.read_text())
    res: dict[str, Any] = {}
    for name, path in models:
        model = DensityModel.load(path)
        for scene in ("sf-bay-3", "sf-bay-4"):
            rgb = _load_rgb(DATA / "planetscope-3m" / f"{scene}.jpg")
            t0 = time.time()
            dc = density_array(model, rgb, None, gsd, gsd, "real 3 m", coverage=0.9)
            maps = model.predict(rgb) if max(rgb.shape[:2]) <= 1024 else None
            h = hand[scene]
            n_open, n_moored = len(h["open_water"]), len(h["moored"])
            boat, lo, hi = dc.counts["boat"]
            row = {
                "boat_count": round(boat, 1), "boat_interval": [round(lo, 1), round(hi, 1)],
                "hand_open_water": n_open, "hand_moored": n_moored, "hand_total": n_open + n_moored,
                "rel_error_vs_hand_total": (boat - (n_open + n_moored)) / (n_open + n_moored),
                "truck_count": round(dc.counts["truck"][0], 1), "railcar_count": round(dc.counts["railcar"][0], 1),
                "seconds": round(time.time() - t0, 1),
            }
            res.setdefault(name, {})[scene] = row
            logging.info("%s on %s: %s", name, scene, row)
            if maps is None:
                maps = _tiled_predict(model, rgb)
            # Where the mass sits: near a hand-counted ship (ideally one per ship) or elsewhere (false).
            b = maps[model.config.classes.index("boat")]
            scale = model.corrected_count(1.0, "boat", gsd)
            pts = np.array(h["open_water"] + h["moored"], dtype=float)
            yy, xx = np.mgrid[0:b.shape[0], 0:b.shape[1]]
            near = np.zeros(b.shape, bool)
            for x, y in pts:
                near |= (xx - x) ** 2 + (yy - y) ** 2 <= NEAR_PX**2
            row["boat_mass_near_hand_ships"] = round(float(b[near].sum() * scale), 1)
            row["boat_mass_elsewhere"] = round(float(b[~near].sum() * scale), 1)
            # overlay: boat density over the scene, hand-counted ships as rings
            fig, ax = plt.subplots(figsize=(14, 14 * rgb.shape[0] / rgb.shape[1]))
            ax.imshow(rgb)
            ax.imshow(np.ma.masked_less(b, 0.002), cmap="autumn", alpha=0.6, vmin=0, vmax=max(0.02, float(b.max())))
            for key, color in (("open_water", "cyan"), ("moored", "yellow")):
                pts = np.array(h[key]) if h[key] else np.zeros((0, 2))
                ax.scatter(pts[:, 0], pts[:, 1], s=160, facecolors="none", edgecolors=color, linewidths=1.2,
                           label=f"hand count, {key.replace('_', ' ')} ({len(pts)})")
            ax.set_title(f"{scene}: {name} boat density sums to {boat:.1f} [{lo:.1f}, {hi:.1f}]; "
                         f"hand count {n_open + n_moored}")
            ax.legend(loc="lower right")
            ax.axis("off")
            fig.tight_layout()
            fig.savefig(out / f"planetscope_{scene}_{name}.png", dpi=80)
            plt.close(fig)
    return res


def _tiled_predict(model: Any, rgb: np.ndarray, step: int = 512, m: int = 48) -> np.ndarray:
    h, w = rgb.shape[:2]
    maps = np.zeros((len(model.config.classes), h, w), dtype=np.float32)
    for r0 in range(0, h, step):
        for c0 in range(0, w, step):
            y0, x0, y1, x1 = max(0, r0 - m), max(0, c0 - m), min(h, r0 + step + m), min(w, c0 + step + m)
            part = model.predict(rgb[y0:y1, x0:x1])
            ch, cw = min(step, h - r0), min(step, w - c0)
            maps[:, r0:r0 + ch, c0:c0 + cw] = part[:, r0 - y0:r0 - y0 + ch, c0 - x0:c0 - x0 + cw]
    return maps


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v: float | None, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def markdown(det: dict[str, Any], dens: dict[str, Any]) -> str:
    lines = ["## Detectors on real tiles", "",
             "| detector | data | tiles | boats | boat AP50 | boat count error | total boats error | "
             "false trucks / tile | false railcars / tile |", "|---|---|---|---|---|---|---|---|---|"]
    for name, sets in det.items():
        for s, r in sets.items():
            lines.append(f"| {name} | {s} | {r['tiles']} | {r['boats']} | {_num(r['boat_AP50'])} | "
                         f"{_pct(r['boat_count_rel_mae'])} | {_pct(r['boat_total_rel_error'])} | "
                         f"{_num(r['false_trucks_per_tile'], 2)} | {_num(r['false_railcars_per_tile'], 2)} |")
    lines += ["", "## Density model on real PlanetScope 3 m scenes", "",
              "| model | scene | boat count [90 % interval] | hand count (open water + moored) | error vs hand | "
              "mass within 75 m of hand-counted ships | mass elsewhere |",
              "|---|---|---|---|---|---|---|"]
    for name, scenes in dens.items():
        for s, r in scenes.items():
            lines.append(f"| {name} | {s} | {r['boat_count']} [{r['boat_interval'][0]}, {r['boat_interval'][1]}] | "
                         f"{r['hand_total']} ({r['hand_open_water']} + {r['hand_moored']}) | "
                         f"{_pct(r['rel_error_vs_hand_total'])} | {r.get('boat_mass_near_hand_ships', '-')} | "
                         f"{r.get('boat_mass_elsewhere', '-')} |")
    return "\n".join(lines) + "\n"


def write_accuracy(path: Path, name: str, weights: Path, real: dict[str, Any],
                   others: dict[str, Any] | None = None) -> None:
    """One detector's accuracy record: held-out synthetic sites and real validation tiles (plus,
    for comparison, the real figures of the ``others`` measured beside it)."""
    syn = weights.parent / "detector_accuracy.json"
    if not syn.is_file():
        raise SystemExit(f"{syn}: no synthetic accuracy beside {weights} (train_real_detector.py --evaluate-only)")
    record = {
        "what": f"{name}: held-out synthetic sites (benchmarks/train_real_detector.py) and real validation tiles "
                "never trained or tuned on (benchmarks/real_transfer.py)",
        "synthetic": json.loads(syn.read_text()),
        "real": real,
        **({"real_other_detectors": others} if others else {}),
    }
    path.write_text(json.dumps(record, indent=2))
    logging.info("wrote %s", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", default=[], help="NAME=PATH of a detector (repeatable)")
    ap.add_argument("--density", action="append", default=[], help="NAME=PATH of a density model (repeatable); "
                    "'bundled' for the bundled one")
    ap.add_argument("--out", type=Path, default=Path("runs/real/transfer"))
    ap.add_argument("--reuse", action="store_true", help="read benchmarks already in OUT instead of rerunning them")
    ap.add_argument("--accuracy-json", type=Path, default=None,
                    help="also write the first detector's accuracy file (held-out synthetic figures from the "
                    "detector_accuracy.json beside its weights, and the real figures measured here), as bundled")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: real data not found (this benchmark needs ../shared/data)")
    args.out.mkdir(parents=True, exist_ok=True)
    dets = [_named(d) for d in args.detector]
    dens = [(d, None) if d == "bundled" else _named(d) for d in args.density]
    det_res = run_detectors(dets, args.out, args.reuse) if dets else {}
    dens_res = run_density(dens, args.out) if dens else {}
    out_json = args.out / "real_transfer.json"
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    old.setdefault("detectors", {}).update(det_res)
    old.setdefault("density", {}).update(dens_res)
    out_json.write_text(json.dumps(old, indent=2))
    if args.accuracy_json is not None and dets:
        write_accuracy(args.accuracy_json, *dets[0], det_res[dets[0][0]],
                       {n: det_res[n] for n, _ in dets[1:]})
    md = markdown(old["detectors"], old["density"])
    (args.out / "real_transfer.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
