"""Does the detector at 0.5 m agree with the density model at 3 m on the same site? (issue 4)

For each held-out synthetic site (seeds unused by every recipe: default 9100-9115) this runs the
demo pipeline (``freightwatch.demo.run_demo``: bundled detector on the 0.5 m scene, the scene
degraded to 3 m, bundled density model with its 90 % interval) and checks, per (zone, class) with
objects, whether the detector's count lies inside the density model's interval, and whether the
truth does.

Usage: python benchmarks/detector_vs_density.py [--seeds 9100:9116] [--work runs/bench/det_vs_density]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from freightwatch.demo import run_demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="9100:9116")
    ap.add_argument("--work", type=Path, default=Path("runs/bench/det_vs_density"))
    args = ap.parse_args()
    a, b = (int(v) for v in args.seeds.split(":"))
    rows = []
    for seed in range(a, b):
        res = run_demo(args.work / f"site_{seed}", seed=seed)
        for (zone, cls), true in res.true_counts.items():
            if zone == "outside" or (zone, cls) not in res.model_counts or not true:
                continue
            n, lo, hi = res.model_counts[(zone, cls)]
            det = res.detector_counts.get((zone, cls), 0)
            rows.append({"seed": seed, "zone": zone, "class": cls, "true": true, "detector": det,
                         "density": round(n, 1), "lower": round(lo, 1), "upper": round(hi, 1)})
        print(f"site {seed}: {sum(1 for r in rows if r['seed'] == seed)} zone counts", flush=True)
    by = defaultdict(list)
    for r in rows:
        kind = r["zone"].rstrip("0123456789_")
        by[(r["class"], kind)].append(r)
        by[("all", "all")].append(r)
    summary = {}
    print(f"\n{'class':<8} {'zone':<10} {'n':>4} {'detector in 90% interval':>25} {'truth in interval':>18} "
          f"{'|det - density| / det':>22}")
    for (c, k), rs in sorted(by.items()):
        det_in = sum(r["lower"] <= r["detector"] <= r["upper"] for r in rs) / len(rs)
        true_in = sum(r["lower"] <= r["true"] <= r["upper"] for r in rs) / len(rs)
        gap = sum(abs(r["detector"] - r["density"]) for r in rs) / max(1, sum(r["detector"] for r in rs))
        summary[f"{c}@{k}"] = {"n": len(rs), "detector_in_interval": round(det_in, 3),
                               "truth_in_interval": round(true_in, 3), "rel_gap": round(gap, 3)}
        print(f"{c:<8} {k:<10} {len(rs):>4} {det_in:>25.1%} {true_in:>18.1%} {gap:>22.1%}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
