"""The benchmark's human-readable outputs: ``report.md`` and its PNGs (matplotlib, no pyplot state).

* ``pr_curves.png``: precision against recall per class, with the best-F1 point and the user
  threshold marked and iso-F1 lines for reference.
* ``count_scatter.png`` (and ``count_scatter_zones.png``): predicted against true counts per
  image (zone), per class, with the identity line and the +-10 % band.
* ``examples.png`` and ``examples/*.png``: the images with the most detection errors at the
  best-F1 thresholds, ground truth missed (red), false detections (orange), correct detections
  (green).
* ``gsd_sweep.png``: relative count error against GSD per class, detector and density model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from rasterio.windows import Window

from freightwatch.datasets.raster import Scene
from freightwatch.datasets.tiling import tile_windows
from freightwatch.evaluation.counting import fmt_num, fmt_pct
from freightwatch.taxonomy import CLASSES
from freightwatch.viz import save_png

METHOD_LABELS: dict[str, str] = {
    "detector_best_f1": "detector (best-F1 threshold)",
    "detector_conf": "detector (user threshold)",
    "density": "density model",
}
METHOD_COLOURS: dict[str, str] = {"detector_best_f1": "#1f77b4", "detector_conf": "#7fb2e5", "density": "#e6780f"}
TP_COLOUR, FP_COLOUR, FN_COLOUR = (40, 200, 60), (255, 150, 0), (230, 30, 30)
"""RGB colours of correct detections, false detections and missed objects in the examples."""
EXAMPLE_SIDE = 640
"""Examples of larger images show the 640 px window with the most errors."""


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# -- precision-recall -------------------------------------------------------------------------------
def plot_pr_curves(curves: dict[str, Any], detection: dict[str, Any], path: Path) -> Path:
    """Precision-recall curve per class, best-F1 point and user threshold marked."""
    fig = Figure(figsize=(4.2 * len(CLASSES), 4.0))
    axes = fig.subplots(1, len(CLASSES), squeeze=False)[0]
    f_grid = np.linspace(0.01, 1, 200)
    for ax, c in zip(axes, CLASSES, strict=True):
        curve = curves[c][0]
        info = detection["pr"][c]
        ap50 = detection["coco"][c].get("AP50")
        for f in (0.2, 0.4, 0.6, 0.8):  # iso-F1 lines
            r = f_grid[f_grid > f / 2]
            ax.plot(r, f * r / (2 * r - f), color="0.85", lw=0.8, zorder=0)
            ax.text(0.98, f / (2 - f) + 0.01, f"F1={f}", color="0.6", fontsize=7, ha="right")
        if curve.n_gt == 0:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes, color="0.4")
        elif len(curve.recall):
            ax.step(np.r_[0, curve.recall], np.r_[curve.precision[0], curve.precision], where="post",
                    color="#1f77b4", lw=1.8, label="PR curve")
            b, u = info["best_f1"], info["at_conf"]
            if b["precision"] is not None and b["recall"] is not None:
                ax.plot(b["recall"], b["precision"], marker="*", ms=13, color="#d62728", ls="none",
                        label=f"best F1 {b['f1']:.2f} @ {b['threshold']:.2f}")
            if u["precision"] is not None and u["recall"] is not None:
                ax.plot(u["recall"], u["precision"], marker="o", ms=7, mfc="none", mew=1.8, color="k", ls="none",
                        label=f"user {u['threshold']:.2f}: F1 {u['f1']:.2f}")
            ax.legend(loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ap_txt = "-" if ap50 is None or (isinstance(ap50, float) and math.isnan(ap50)) else f"{ap50:.3f}"
        ax.set_title(f"{c}: AP50 {ap_txt} ({curve.n_gt} objects)", fontsize=10)
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision")
    fig.suptitle(f"Precision-recall at IoU {detection['iou_match']:g}", fontsize=11)
    return _save(fig, path)


# -- count scatter ----------------------------------------------------------------------------------
def plot_count_scatter(rows: pd.DataFrame, methods: Sequence[str], path: Path, unit: str = "image") -> Path:
    """Predicted against true count per unit and class, one panel per class."""
    fig = Figure(figsize=(4.2 * len(CLASSES), 4.2))
    axes = fig.subplots(1, len(CLASSES), squeeze=False)[0]
    shown = [m for m in ("detector_best_f1", "density") if m in methods]
    for ax, c in zip(axes, CLASSES, strict=True):
        part = rows[rows["class"] == c] if len(rows) else rows
        top = 1.0
        for m in shown:
            p = part[part[m].notna()]
            if not len(p):
                continue
            top = max(top, float(p["true"].max()), float(p[m].max()))
            if m == "density" and len(p) <= 300:
                err = np.vstack([(p[m] - p["density_lower"]).clip(lower=0), (p["density_upper"] - p[m]).clip(lower=0)])
                ax.errorbar(p["true"], p[m], yerr=np.nan_to_num(err.astype(float)), fmt="s", ms=4, alpha=0.6,
                            color=METHOD_COLOURS[m], ecolor=METHOD_COLOURS[m], elinewidth=0.7, capsize=0,
                            label=f"{METHOD_LABELS[m]} (interval)")
            else:
                ax.plot(p["true"], p[m], "o" if m != "density" else "s", ms=4, alpha=0.55, color=METHOD_COLOURS[m],
                        label=METHOD_LABELS[m])
        top *= 1.08
        xs = np.linspace(0, top, 50)
        ax.fill_between(xs, xs - np.maximum(0.1 * xs, 0.5), xs + np.maximum(0.1 * xs, 0.5), color="0.9", zorder=0,
                        label="within ±10 %")
        ax.plot([0, top], [0, top], color="0.4", lw=1, ls="--", zorder=1)
        ax.set_xlim(-0.03 * top, top)  # a little room so points at 0 are not hidden by the axes
        ax.set_ylim(-0.03 * top, top)
        ax.set_aspect("equal")
        ax.set_title(f"{c} ({len(part)} {unit}s)", fontsize=10)
        ax.set_xlabel(f"true count per {unit}")
        ax.grid(alpha=0.3)
        if shown:
            ax.legend(loc="upper left", fontsize=7)
    axes[0].set_ylabel(f"predicted count per {unit}")
    fig.suptitle(f"Predicted vs true counts per {unit}", fontsize=11)
    return _save(fig, path)


# -- examples -------------------------------------------------------------------------------------
def _errors(rec: Any, thresholds: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of correct detections, false detections (over the pred boxes) and missed objects (gt)."""
    thr = np.array([thresholds[CLASSES[k]] for k in rec.pred.classes]) if len(rec.pred) else np.zeros(0)
    kept = rec.pred.scores >= thr
    tp = kept & rec.match.pred_tp
    fp = kept & ~rec.match.pred_tp
    gthr = np.array([thresholds[CLASSES[k]] for k in rec.gt.classes]) if len(rec.gt) else np.zeros(0)
    fn = ~((rec.match.gt_score >= gthr) & (rec.match.gt_score > 0))
    return tp, fp, fn


def _best_window(rec: Any, boxes: np.ndarray) -> Window:
    """The ``EXAMPLE_SIDE`` window holding the most of ``boxes`` (error boxes)."""
    if max(rec.width, rec.height) <= EXAMPLE_SIDE or not len(boxes):
        return Window(0, 0, min(rec.width, EXAMPLE_SIDE), min(rec.height, EXAMPLE_SIDE))
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    best, n_best = None, -1
    for w in tile_windows(rec.width, rec.height, EXAMPLE_SIDE, EXAMPLE_SIDE // 2):
        inside = (cx >= w.col_off) & (cx < w.col_off + w.width) & (cy >= w.row_off) & (cy < w.row_off + w.height)
        n = int(inside.sum())
        if n > n_best:
            best, n_best = w, n
    return best


def _draw(img: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int], thick: int, off: tuple[int, int]) -> None:
    for x0, y0, x1, y1 in boxes.tolist():
        p0 = (int(round(x0 - off[0])), int(round(y0 - off[1])))
        p1 = (int(round(x1 - off[0])), int(round(y1 - off[1])))
        cv2.rectangle(img, p0, p1, colour, thick, cv2.LINE_AA)


def draw_examples(
    records: Sequence[Any],
    thresholds: dict[str, float],
    out_dir: Path,
    n: int,
    bands: tuple[int, int, int] | None = None,
    max_pixels: int = 6000 * 6000,
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Draw the ``n`` images with the most errors (missed + false) at the given thresholds.

    Returns:
        One dict per example (image, TP/FP/FN counts, file) and the files written.
    """
    scored = []
    for i, r in enumerate(records):
        if r.pred is None:
            continue
        tp, fp, fn = _errors(r, thresholds)
        scored.append((int(fp.sum() + fn.sum()), i, tp, fp, fn))
    scored.sort(key=lambda s: (-s[0], s[1]))
    chosen = scored[:n]
    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    examples: list[dict[str, Any]] = []
    panels = []
    for rank, (_, i, tp, fp, fn) in enumerate(chosen, start=1):
        r = records[i]
        err_boxes = np.vstack([r.pred.boxes[fp], r.gt.boxes[fn]])
        win = _best_window(r, err_boxes)
        with Scene(r.image, bands=bands) as scene:
            img, _ = scene.read_rgb(win)
        off = (int(win.col_off), int(win.row_off))
        # Small tiles are enlarged so thin boxes stay visible.
        f = max(1, int(EXAMPLE_SIDE // max(img.shape[:2])))
        if f > 1:
            img = cv2.resize(img, (img.shape[1] * f, img.shape[0] * f), interpolation=cv2.INTER_NEAREST)
        img = np.ascontiguousarray(img)

        shift = np.array([off[0], off[1], off[0], off[1]], dtype=np.float64)
        _draw(img, (r.pred.boxes[tp] - shift) * f, TP_COLOUR, 1, (0, 0))
        _draw(img, (r.pred.boxes[fp] - shift) * f, FP_COLOUR, 2, (0, 0))
        _draw(img, (r.gt.boxes[fn] - shift) * f, FN_COLOUR, 2, (0, 0))
        base = Path(r.name).with_suffix("").as_posix()
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in base)[-60:]
        p = save_png(out_dir / "examples" / f"{rank:02d}_{stem}.png", img)
        files[f"example_{rank:02d}"] = p
        info = {"image": r.name, "window": [off[0], off[1], int(win.width), int(win.height)], "tp": int(tp.sum()),
                "fp": int(fp.sum()), "fn": int(fn.sum()), "file": p.relative_to(out_dir).as_posix(),
                "whole_image": bool(win.width >= r.width and win.height >= r.height)}
        examples.append(info)
        panels.append((img, info))
    if panels:
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(4.6 * cols, 4.6 * rows + 0.4))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (img, info) in zip(axes.ravel(), panels, strict=False):
            ax.imshow(img)
            name = info["image"] if len(info["image"]) <= 40 else "..." + info["image"][-37:]
            where = "" if info["whole_image"] else f" (window at x {info['window'][0]}, y {info['window'][1]})"
            ax.set_title(f"{name}{where}\n{info['tp']} correct, {info['fp']} false, {info['fn']} missed "
                         "in the whole image", fontsize=8)
        handles = [Line2D([], [], color=np.array(c) / 255, lw=w, label=lab) for c, w, lab in
                   ((TP_COLOUR, 1.5, "correct detection"), (FP_COLOUR, 2.5, "false detection"),
                    (FN_COLOUR, 2.5, "missed object"))]
        fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
        fig.suptitle("Images with the most errors (detector at its best-F1 thresholds)", fontsize=11)
        files["examples"] = _save(fig, out_dir / "examples.png")
    return examples, files


# -- GSD sweep ------------------------------------------------------------------------------------
def plot_sweep(result: Any, path: Path) -> Path:
    """Relative count error per image against GSD, one panel per class, detector and density."""
    df = pd.DataFrame(result.rows)
    classes = [c for c in CLASSES if ((df["class"] == c) & df["rel_mae"].notna()).any()] or list(CLASSES)
    fig = Figure(figsize=(4.4 * len(classes), 4.0))
    axes = fig.subplots(1, len(classes), squeeze=False)[0]
    top = 1.0
    lo_x, hi_x = min(result.gsds) / 1.2, max(result.gsds) * 1.2
    for ax, c in zip(axes, classes, strict=True):
        if result.data_gsd is not None and result.data_gsd[0] > lo_x * 1.2:
            ax.axvspan(lo_x, result.data_gsd[0], facecolor="none", edgecolor="0.75", hatch="//", lw=0,
                       label="finer than the data (not simulated)")
        if result.density_range is not None:
            ax.axvspan(*result.density_range, color="#e6780f", alpha=0.08, label="density trained range")
        if result.detector_gsd:
            ax.axvline(result.detector_gsd, color="#1f77b4", ls=":", lw=1, label="detector training GSD")
        for m in ("detector_best_f1", "detector_conf", "density"):
            p = df[(df["class"] == c) & (df["method"] == m) & df["rel_mae"].notna()].sort_values("gsd")
            if not len(p):
                continue
            y = 100 * p["rel_mae"].to_numpy(dtype=float)
            top = max(top, float(np.nanmax(y)))
            ls = "--" if m == "detector_conf" else "-"
            ax.plot(p["gsd"], y, ls, color=METHOD_COLOURS[m], lw=1.8, label=METHOD_LABELS[m])
            if m == "density" and "in_range" in p:
                inside = p["in_range"].fillna(True).astype(bool).to_numpy()
                ax.plot(p["gsd"][inside], y[inside], "o", color=METHOD_COLOURS[m], ms=6)
                ax.plot(p["gsd"][~inside], y[~inside], "o", mfc="white", color=METHOD_COLOURS[m], ms=6,
                        label="density outside trained range" if (~inside).any() else None)
            else:
                ax.plot(p["gsd"], y, "o", color=METHOD_COLOURS[m], ms=5)
        ax.set_xscale("log")
        ax.set_xlim(lo_x, hi_x)
        ax.set_xticks(list(result.gsds))
        ax.set_xticklabels([f"{g:g}" for g in result.gsds])
        ax.minorticks_off()
        ax.set_xlabel("GSD (m)")
        ax.set_title(c, fontsize=10)
        ax.grid(alpha=0.3)
    cap = min(top * 1.1, 300.0)
    for ax, c in zip(axes, classes, strict=True):
        ax.set_ylim(0, cap)
        # Errors beyond the axis are shown at its top with their value, not silently cut.
        for m in ("detector_best_f1", "detector_conf", "density"):
            p = df[(df["class"] == c) & (df["method"] == m) & df["rel_mae"].notna()]
            for g, v in zip(p["gsd"], 100 * p["rel_mae"].to_numpy(dtype=float), strict=True):
                if v > cap:
                    ax.plot(g, cap * 0.985, "^", color=METHOD_COLOURS[m], ms=7, clip_on=False)
                    ax.annotate(f"{v:.0f} %", (g, cap * 0.985), textcoords="offset points", xytext=(7, -12),
                                fontsize=7, color=METHOD_COLOURS[m])
    axes[0].set_ylabel("relative count error (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Count error against GSD (sum |pred - true| / sum true over images): where detection breaks down "
                 "and density takes over", fontsize=10)
    return _save(fig, path)


# -- report.md ------------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _count_table(per: dict[str, dict[str, dict[str, Any]]], methods: Sequence[str]) -> str:
    rows = []
    for m in methods:
        for c, v in per.get(m, {}).items():
            if not v["n"]:
                continue
            rows.append([METHOD_LABELS.get(m, m), c, v["n"], fmt_num(v["true_total"], 0), fmt_num(v["pred_total"], 1),
                         fmt_num(v["mae"]), fmt_num(v["rmse"]), fmt_pct(v["rel_mae"]), fmt_num(v["bias"], 2),
                         fmt_pct(v["within_10pct"], 0), fmt_pct(v["coverage"], 0)])
    return _table(["method", "class", "units", "true", "predicted", "MAE", "RMSE", "rel. MAE", "bias", "within ±10 %",
                   "interval coverage"], rows, "ll" + "r" * 9)


def write_report(m: dict[str, Any], path: Path) -> Path:
    """Write ``report.md`` from the content of ``metrics.json``."""
    d, files = m["data"], m["files"]
    s = m["settings"]
    out: list[str] = ["# freightwatch benchmark", ""]
    out.append(f"{m['created']}, freightwatch {m['versions'].get('freightwatch')} "
               f"(commit {str(m['versions'].get('commit') or '-')[:10]}); all figures below are in `metrics.json`.")
    if m.get("command"):
        out += ["", "```", " ".join(m["command"]), "```"]

    out += ["", "## Data", ""]
    gsd = d["gsd_m"]
    rows = [
        ["labels", f"`{d['path']}` ({d['format']}, mapping {d['mapping']})"],
        ["images evaluated", f"{d['images_evaluated']} of {d['images']} ({d['images_left_out']} left out)"],
        ["objects", ", ".join(f"{d['objects'][c]} {c}" for c in CLASSES)],
        ["GSD (m)", "unknown" if gsd["median"] is None else
         f"{_span(gsd, '.3g')} (median {gsd['median']:.3g}); from " +
         ", ".join(f"{k}: {v}" for k, v in d["gsd_source"].items())],
        ["image size (px)", f"{_span(d['width_px'])} x {_span(d['height_px'])}"],
        ["zones", f"{d['zones']} in {d['images_with_zones']} images"],
    ]
    if d["dropped_unmapped"]:
        rows.append(["unmapped (dropped)", ", ".join(f"{k}: {v}" for k, v in list(d["dropped_unmapped"].items())[:8])])
    if d["skipped_records"]:
        rows.append(["malformed records skipped", str(d["skipped_records"])])
    out.append(_table(["", ""], rows, "ll"))
    if d["left_out"]:
        out += ["", "Left out: " + "; ".join(f"`{x['image']}`: {x['reason']}" for x in d["left_out"][:5])
                + (" ..." if d["images_left_out"] > 5 else "")]

    out += ["", "## Models", ""]
    det, den = m["models"]["detector"], m["models"]["density"]
    rows = []
    if det:
        c = det["card"]
        rows.append(["detector", f"`{det['weights']}`", f"{c.get('arch')}, {c.get('gsd')} m, {c.get('imgsz')} px, "
                     f"{c.get('epochs')} epochs, created {c.get('created')}"])
    if den:
        c = den["config"]
        rows.append(["density", f"`{den['weights']}`", f"{c['arch'].get('name')}, trained at "
                     f"{c['gsd_range'][0]:g}-{c['gsd_range'][1]:g} m, intervals "
                     f"{((c.get('interval') or {}).get('method') or 'uncalibrated').split(':')[0]}, "
                     f"created {c.get('created')}"])
    out.append(_table(["model", "weights", "card"], rows, "lll"))

    det_m = m["detection"]
    if det_m:
        out += ["", "## Detection (pycocotools)", ""]
        b = det_m["size_buckets_px2"]
        out.append("Box IoU; AP averages IoU 0.50:0.95; AR at up to "
                   f"{det_m['max_dets']} detections per image; detections scored below {det_m['min_score']:g} dropped. "
                   "Size buckets (axis-aligned ground-truth box area, image pixels): " +
                   ", ".join(f"{k} {_bucket(v)}" for k, v in b.items()) + ".")
        out.append("")
        keys = ["AP", "AP50", "AP75", "AR", *[f"AP_{k}" for k in b]]
        rows = []
        for c in ["overall", *CLASSES]:
            v = det_m["coco"][c]
            rows.append([c, v["n_gt"], *(fmt_num(v.get(k), 3) for k in keys)])
        out.append(_table(["class", "objects", *keys], rows))
        out += ["", f"Thresholds (greedy matching at IoU {det_m['iou_match']:g}). The best-F1 threshold is chosen on "
                "this data: counts at it are optimistic; the user threshold (`--conf`, else the detector card's "
                "per-class counting thresholds, calibrated on other sites) is not tuned on it.", ""]
        rows = []
        for c in CLASSES:
            p = det_m["pr"][c]
            bf, uc = p["best_f1"], p["at_conf"]
            rows.append([c, p["n_gt"], fmt_num(bf["threshold"], 3), fmt_num(bf["precision"], 3),
                         fmt_num(bf["recall"], 3), fmt_num(bf["f1"], 3), fmt_num(uc["threshold"], 2),
                         fmt_num(uc["precision"], 3), fmt_num(uc["recall"], 3), fmt_num(uc["f1"], 3),
                         p["note"] or ""])
        out.append(_table(["class", "objects", "best-F1 thr.", "P", "R", "F1", "user thr.", "P", "R", "F1", "note"],
                          rows, "l" + "r" * 9 + "l"))
        if "pr_curves" in files:
            out += ["", f"![precision-recall curves]({files['pr_curves']})"]

    cnt = m["counting"]
    out += ["", "## Counting", ""]
    out.append("Per unit (image or zone) and class: MAE and RMSE in objects; rel. MAE = sum |pred - true| / sum true; "
               "bias = mean (pred - true), positive = overcount; within ±10 % = share of units with "
               "|pred - true| <= max(10 % of true, 0.5); interval coverage = share of units whose true count lies in "
               f"the density model's {100 * s['coverage']:.0f} % interval.")
    out += ["", "### Per image", "", _count_table(cnt["per_image"], cnt["methods"])]
    if "count_scatter" in files:
        out += ["", f"![predicted vs true counts per image]({files['count_scatter']})"]
    out += ["", "### Per zone", ""]
    if cnt["per_zone"]:
        out.append(_count_table(cnt["per_zone"], cnt["methods"]))
        if "count_scatter_zones" in files:
            out += ["", f"![predicted vs true counts per zone]({files['count_scatter_zones']})"]
    else:
        out.append(cnt.get("per_zone_note") or "no zones")

    den_m = m["density"]
    if den_m:
        g = den_m["gsd_m"]
        out += ["", "### Density model input", ""]
        out.append(f"{den_m['images']} images counted at "
                   + ("-" if g["median"] is None else f"{_span(g, '.3g')} m")
                   + " (" + ", ".join(f"{k}: {v}" for k, v in den_m["modes"].items()) + "; `native`: the image as "
                   "it is, `degraded`: finer imagery degraded by the coarse-sensor simulation, "
                   f"{den_m['sensor']}; `outside`: coarser than the trained range, run anyway); "
                   f"{den_m['in_range']} inside the trained GSD range.")

    sw = m["sweep"]
    if sw:
        out += ["", "## GSD sweep", ""]
        out.append(f"Each image degraded to {', '.join(f'{g:g}' for g in sw['gsds'])} m ({sw['sensor']}). The detector "
                   "sees the degraded image resampled back to its training GSD"
                   + (f" ({sw['detector_gsd_m']:g} m)" if sw["detector_gsd_m"] else "")
                   + " and counts at the best-F1 thresholds found at full resolution; the density model sees the "
                     "degraded image itself" + (f" (trained range, with tolerance, {sw['density_range_m'][0]:.2f}-"
                                                 f"{sw['density_range_m'][1]:.2f} m; outside it, marked *)"
                                                 if sw["density_range_m"] else "")
                   + f". Errors per image. {sw['n_skipped']} image/GSD pairs skipped (GSD finer than the image, "
                     "or unknown).")
        out += ["", _sweep_table(sw["rows"])]
        if "gsd_sweep" in files:
            out += ["", f"![count error vs GSD]({files['gsd_sweep']})"]

    if m["examples"]:
        out += ["", "## Examples", "", "Images with the most errors at the best-F1 thresholds: missed objects red, "
                "false detections orange, correct detections green (a detection of the wrong class, or one "
                "overlapping its object by less than the matching IoU, is both false and missed). Larger images "
                "show the 640 px window with the most errors.", ""]
        out.append(_table(["image", "correct", "false", "missed", "window shown (x, y, w, h)", "file"],
                          [[f"`{e['image']}`", e["tp"], e["fp"], e["fn"],
                            "whole image" if e["whole_image"] else ", ".join(map(str, e["window"])),
                            f"[{e['file']}]({e['file']})"] for e in m["examples"]], "lrrrll"))
        if "examples" in files:
            out += ["", f"![examples]({files['examples']})"]

    if m["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in m["warnings"]]
    out += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), ""]
    path.write_text("\n".join(out), encoding="utf-8")
    return path


def _span(s: dict[str, float | None], spec: str = ".0f") -> str:
    if s["min"] is None:
        return "-"
    return f"{s['min']:{spec}}" if s["min"] == s["max"] else f"{s['min']:{spec}}-{s['max']:{spec}}"


def _bucket(v: Sequence[float]) -> str:
    lo, hi = v

    def side(a: float) -> str:
        return f"{math.sqrt(a):g}^2"

    if lo <= 0:
        return f"< {side(hi)} px²"
    if hi >= 1e9:
        return f">= {side(lo)} px²"
    return f"{side(lo)}-{side(hi)} px²"


def _sweep_table(rows: list[dict[str, Any]]) -> str:
    df = pd.DataFrame(rows)
    if not len(df):
        return "no results"
    out = []
    for (g, c), part in df.groupby(["gsd", "class"], sort=False):
        by = {r["method"]: r for r in part.to_dict("records")}
        n = max(int(r["n"]) for r in by.values())
        cells = [f"{g:g}", c, n, fmt_num(by[next(iter(by))]["true_total"], 0)]
        for mth in ("detector_best_f1", "detector_conf"):
            r = by.get(mth)
            cells += [fmt_pct(r["rel_mae"]) if r else "-", fmt_num(r["bias"], 1) if r else "-",
                      fmt_pct(r["within_10pct"], 0) if r else "-"] if mth == "detector_best_f1" else \
                [fmt_pct(r["rel_mae"]) if r else "-"]
        r = by.get("density")
        star = "" if not r or r.get("in_range") in (True, None) else "*"
        cells += [(fmt_pct(r["rel_mae"]) + star) if r else "-", fmt_num(r["bias"], 1) if r else "-",
                  fmt_pct(r["within_10pct"], 0) if r else "-", fmt_pct(r["coverage"], 0) if r else "-"]
        out.append(cells)
    order = {c: i for i, c in enumerate([*CLASSES, "all"])}
    out.sort(key=lambda r: (order.get(r[1], 9), float(r[0])))
    return _table(["GSD (m)", "class", "images", "true", "detector rel. MAE", "detector bias", "detector ±10 %",
                   "detector (user thr.) rel. MAE", "density rel. MAE", "density bias", "density ±10 %",
                   "density coverage"], out, "ll" + "r" * 10)
