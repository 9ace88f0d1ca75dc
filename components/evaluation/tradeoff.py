"""The measured privacy/utility trade-off of the residual sanitizer, for the evaluation report.

Whether a sanitizer can hide more gender from unseen judges only by changing faces more (losing
matching and looks) is measured by retraining it at several settings and judging each with the
same judges: `benchmarks/sanitizer_tradeoff.py --out components/evaluation/measured_tradeoff.json`
writes the file this module reads (one entry per point: every unseen gender judge's error on the
sanitized test faces with its 95% interval, the adaptive attacker, the identity-leakage bound,
every matcher judge's TMR at FMR 1e-2 before and after, SSIM). The report shows it beside the
run's own figures, labelled with where and when it was measured: it is not the run's model.
"""

from __future__ import annotations

import io
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

MEASURED_TRADEOFF_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "measured_tradeoff.json")
REQUIRED_FIELDS = ("measured_by", "date", "commit", "machine", "data", "points")


def load_measured_tradeoff(path: str = MEASURED_TRADEOFF_FILE) -> dict | None:
    """The trade-off file, or None when there is none; a file without the fields the report needs
    is refused with a message naming it and what to do."""
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        tradeoff = json.load(handle)
    missing = [name for name in REQUIRED_FIELDS if name not in tradeoff]
    if missing:
        raise ValueError(f"{path}: measured trade-off lacks {', '.join(missing)}; re-create it with "
                         f"benchmarks/sanitizer_tradeoff.py --out {path}")
    return tradeoff


def summarise_point(point: dict) -> dict:
    """One point's worst cases: the lowest unseen gender judge error (the privacy the gate checks),
    the largest matcher TMR drop in points (the utility it checks), SSIM, and the adaptive attacker's
    gap to the identity-leakage bound."""
    errors = {name: values["sanitized"][0] for name, values in point["gender"].items()}
    drops = {name: values["original"] - values["sanitized"] for name, values in point["matching"].items()}
    weakest = min(errors, key=errors.get)
    bound = next(iter(point.get("identity_leakage", {}).values()), None)
    return {"min_gender_error": errors[weakest], "weakest_judge": weakest,
            "min_gender_error_ci": point["gender"][weakest]["sanitized"][1],
            "max_tmr_drop": max(drops.values()), "ssim": point["ssim"],
            "adaptive_error": point["adaptive"][0],
            "adaptive_gap": None if bound is None else bound[0] - point["adaptive"][0]}


def meets(summary: dict, gate: dict) -> bool:
    """Whether a point passes the gate's privacy and utility thresholds (the laptop gate: targets less 0.02)."""
    return (summary["min_gender_error"] >= gate["min_op_gender_error"]
            and summary["max_tmr_drop"] <= gate["max_tmr_drop_op"]
            and summary["ssim"] >= gate["min_ssim_op"]
            and (gate.get("max_adaptive_gap") is None or summary["adaptive_gap"] is None
                 or summary["adaptive_gap"] <= gate["max_adaptive_gap"]))


def tradeoff_table(tradeoff: dict, gate: dict) -> tuple[list[str], list[list[str]]]:
    """Rows: one per point, every judge's figure and whether the point passes the gate."""
    def pct(value):
        return f"{100 * value[0]:.1f}% [{100 * value[1][0]:.1f}–{100 * value[1][1]:.1f}]"

    points = tradeoff["points"]
    first = next(iter(points.values()))
    header = ["point (settings over the defaults)", *(f"{name} error" for name in first["gender"]),
              "ADAPTIVE attacker error", "identity-leakage bound",
              *(f"{name} TMR@1e-2 original → sanitized" for name in first["matching"]), "SSIM", "passes the gate"]
    rows = []
    for text, point in points.items():
        bound = next(iter(point.get("identity_leakage", {}).values()), None)
        rows.append([text or "defaults", *(pct(values["sanitized"]) for values in point["gender"].values()),
                     pct(point["adaptive"]), pct(bound) if bound else "–",
                     *(f"{100 * v['original']:.1f}% → {100 * v['sanitized']:.1f}%" for v in point["matching"].values()),
                     f"{point['ssim']:.3f}", "yes" if meets(summarise_point(point), gate) else "no"])
    return header, rows


def draw_tradeoff(axes, tradeoff: dict, gate: dict) -> None:
    """Privacy (the weakest unseen gender judge's error, with its interval) against utility (the
    largest matcher TMR drop) per point, with the gate's region shaded."""
    drop_limit, error_limit = 100 * gate["max_tmr_drop_op"], 100 * gate["min_op_gender_error"]
    summaries = {text or "defaults": summarise_point(point) for text, point in tradeoff["points"].items()}
    right = max(drop_limit, *(100 * s["max_tmr_drop"] for s in summaries.values())) + 3
    axes.axhspan(error_limit, 52, xmin=0, xmax=drop_limit / right, color="#d9f2d9", label="gate passes")
    axes.axhline(50, color="gray", linestyle=":", linewidth=1, label="chance (50%)")
    for index, (text, summary) in enumerate(summaries.items()):
        low, high = summary["min_gender_error_ci"]
        value = 100 * summary["min_gender_error"]
        axes.errorbar(100 * summary["max_tmr_drop"], value, yerr=[[value - 100 * low], [100 * high - value]],
                      fmt="o", capsize=3, color=f"C{index % 10}", label=f"{text} ({summary['weakest_judge']})")
    axes.set_xlim(0, right)
    axes.set_ylim(min(15.0, *(100 * s["min_gender_error_ci"][0] - 2 for s in summaries.values())), 52)
    axes.set_xlabel("largest matcher judge TMR drop at FMR 1e-2 (points: utility lost)")
    axes.set_ylabel("weakest unseen gender judge's error (%: privacy)")


def tradeoff_png(tradeoff: dict, gate: dict) -> bytes:
    """draw_tradeoff as a PNG, the legend (one entry per point) under the axes."""
    figure, axes = plt.subplots(figsize=(7.0, 5.6), dpi=100)
    draw_tradeoff(axes, tradeoff, gate)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
