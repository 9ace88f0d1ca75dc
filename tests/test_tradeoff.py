"""The measured privacy/utility trade-off the evaluation report shows (components/evaluation/tradeoff.py)."""

import json

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from components.evaluation.config import GateConfig  # noqa: E402
from components.evaluation.tradeoff import (  # noqa: E402
    MEASURED_TRADEOFF_FILE, REQUIRED_FIELDS, draw_tradeoff, load_measured_tradeoff, meets, summarise_point,
    tradeoff_table)


def point(errors, tmr, ssim=0.92, adaptive=0.07, bound=0.075):
    return {"gender": {name: {"original": [0.05, [0.03, 0.07]], "sanitized": [value, [value - 0.03, value + 0.03]]}
                       for name, value in errors.items()},
            "identity_leakage": {"identity_leakage_logistic": [bound, [bound - 0.03, bound + 0.03]]},
            "adaptive": [adaptive, [adaptive - 0.02, adaptive + 0.02]],
            "matching": {name: {"original": before, "sanitized": after} for name, (before, after) in tmr.items()},
            "ssim": ssim, "samples": 1000}


TRADEOFF = {"measured_by": "python benchmarks/sanitizer_tradeoff.py --work-dir w --points a b", "date": "2026-11-26",
            "commit": "abc1234", "machine": "2-core test CPU", "data": "SYNTHETIC faces",
            "points": {"defaults": point({"logistic": 0.46, "svm": 0.33, "cnn": 0.25},
                                         {"fisher": (0.974, 0.916), "cnn_matcher": (0.929, 0.878)}),
                       "strong": point({"logistic": 0.49, "svm": 0.44, "cnn": 0.41},
                                       {"fisher": (0.974, 0.90), "cnn_matcher": (0.929, 0.85)}, ssim=0.85)}}
GATE = dict(vars(GateConfig()))


def test_summary_takes_the_weakest_judge_and_the_largest_drop():
    summary = summarise_point(TRADEOFF["points"]["defaults"])
    assert summary["weakest_judge"] == "cnn" and summary["min_gender_error"] == 0.25
    assert summary["min_gender_error_ci"] == [0.22, 0.28]
    assert summary["max_tmr_drop"] == pytest.approx(0.974 - 0.916)  # fisher's 5.8 > cnn_matcher's 5.1 points
    assert summary["adaptive_gap"] == pytest.approx(0.005) and summary["ssim"] == 0.92


def test_a_point_passes_only_when_every_gate_threshold_holds():
    assert not meets(summarise_point(TRADEOFF["points"]["defaults"]), GATE)  # cnn 25% < 38%
    assert meets(summarise_point(TRADEOFF["points"]["strong"]), GATE)  # 41% >= 38%, drop 7.9 <= 12, SSIM 0.85
    too_far = point({"a": 0.45}, {"m": (0.97, 0.84)})  # a 13-point drop
    assert not meets(summarise_point(too_far), GATE)
    leaky = point({"a": 0.45}, {"m": (0.97, 0.95)}, adaptive=0.01, bound=0.10)  # 9 points under the bound
    assert not meets(summarise_point(leaky), GATE)
    assert meets(summarise_point(leaky), {**GATE, "max_adaptive_gap": None})


def test_table_has_a_row_per_point_with_its_intervals_and_verdict():
    header, rows = tradeoff_table(TRADEOFF, GATE)
    assert header[:4] == ["point (settings over the defaults)", "logistic error", "svm error", "cnn error"]
    assert [row[0] for row in rows] == ["defaults", "strong"]
    assert rows[0][3] == "25.0% [22.0–28.0]" and rows[0][-1] == "no" and rows[1][-1] == "yes"
    assert "97.4% → 91.6%" in rows[0] and rows[0][-2] == "0.920"


def test_figure_draws_every_point():
    figure, axes = plt.subplots()
    draw_tradeoff(axes, TRADEOFF, GATE)
    assert len(axes.containers) == 2  # one error bar per point
    assert axes.get_ylim()[1] == 52
    plt.close(figure)


def test_load_refuses_a_file_without_its_provenance(tmp_path):
    assert load_measured_tradeoff(str(tmp_path / "absent.json")) is None
    path = tmp_path / "tradeoff.json"
    path.write_text(json.dumps({"points": TRADEOFF["points"]}))
    with pytest.raises(ValueError, match="lacks measured_by, date, commit, machine, data"):
        load_measured_tradeoff(str(path))
    path.write_text(json.dumps(TRADEOFF))
    assert load_measured_tradeoff(str(path))["commit"] == "abc1234"



def test_the_packaged_trade_off_is_complete():
    tradeoff = load_measured_tradeoff(MEASURED_TRADEOFF_FILE)
    assert tradeoff is not None and all(field in tradeoff for field in REQUIRED_FIELDS)
    assert "SYNTHETIC" in tradeoff["data"]  # measured on the synthetic data, and labelled so
    for values in tradeoff["points"].values():
        summarise_point(values)  # every point has what the report reads
