"""The evaluator's metric code against values computed by hand."""

import numpy as np
import pytest
import tensorflow as tf

from components.evaluation.metrics import gender_metrics, genuine_impostor, image_quality, matching_metrics, tmr_at_fmr

# 100 impostor scores 0.00 .. 0.99 and five genuine scores.
IMPOSTOR = np.arange(100) / 100
GENUINE = np.array([0.995, 0.985, 0.975, 0.5, 0.2])


@pytest.mark.parametrize("fmr,expected", [
    (0.01, 0.4),  # threshold 0.985 accepts 1 impostor (0.99) and 2 genuine (0.995, 0.985)
    (0.001, 0.2),  # below 1/100: no impostor may pass; threshold 0.995 keeps 1 genuine
    (0.05, 0.6),  # threshold 0.95 accepts 5 impostors (0.95..0.99) and 3 genuine
    (1.0, 1.0),
])
def test_tmr_at_fmr_on_a_small_score_set(fmr, expected):
    assert tmr_at_fmr(GENUINE, IMPOSTOR, fmr) == pytest.approx(expected)


def test_tmr_at_fmr_needs_both_kinds_of_pairs():
    with pytest.raises(ValueError, match="genuine and impostor pairs"):
        tmr_at_fmr(GENUINE, np.array([]), 0.01)


def test_matching_metrics_report_every_target_and_pair_counts():
    result = matching_metrics(GENUINE, IMPOSTOR, (1e-2, 1e-3))
    assert result["tmr_at_fmr"] == {"0.01": pytest.approx(0.4), "0.001": pytest.approx(0.2)}
    assert (result["genuine_pairs"], result["impostor_pairs"]) == (5, 100)
    assert result["genuine_mean"] == pytest.approx(GENUINE.mean())
    assert result["roc"]["fpr"][0] == 0 and result["roc"]["tpr"][-1] == 1


def test_gender_error_rate_and_roc_auc_by_hand():
    # Pairs (female, male): (0.1, 0.35) right, (0.1, 0.8) right, (0.4, 0.35) wrong, (0.4, 0.8) right -> AUC 3/4.
    # At 0.5 only the male at 0.35 is misclassified: error 1/4.
    result = gender_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert result["error_rate"] == pytest.approx(0.25)
    assert result["auc"] == pytest.approx(0.75)
    # A flipped judge: every prediction wrong, AUC 0.
    flipped = gender_metrics(np.array([0, 1]), np.array([0.9, 0.2]))
    assert flipped["error_rate"] == 1.0 and flipped["auc"] == 0.0


def test_gender_metrics_of_one_gender_have_no_auc_and_mismatched_inputs_are_refused():
    assert gender_metrics(np.array([1, 1]), np.array([0.9, 0.2]))["auc"] is None
    with pytest.raises(ValueError, match="equal-length"):
        gender_metrics(np.array([1, 0, 1]), np.array([0.9, 0.2]))


def test_genuine_and_impostor_pairs_exclude_the_probe_itself():
    identity = np.array([7, 7, 8])
    scores = np.arange(9, dtype=float).reshape(3, 3)
    genuine, impostor = genuine_impostor(scores, identity)
    assert sorted(genuine) == [1, 3]  # (0,1) and (1,0)
    assert sorted(impostor) == [2, 5, 6, 7]


def test_ssim_of_identical_faces_is_one_and_psnr_of_a_known_offset():
    rng = np.random.default_rng(0)
    faces = tf.constant(rng.random((2, 32, 32, 1)), tf.float32)
    ssim, _ = image_quality(faces, faces)
    np.testing.assert_allclose(ssim, 1.0, atol=1e-6)
    # Every pixel off by 0.1: MSE 0.01, PSNR = 10 log10(1 / 0.01) = 20 dB.
    zeros = tf.zeros((1, 16, 16, 1))
    _, psnr = image_quality(zeros, zeros + 0.1)
    np.testing.assert_allclose(psnr, 20.0, atol=1e-3)
    ssim, _ = image_quality(faces, tf.reverse(faces, axis=[1]))
    assert (ssim < 0.5).all()  # a different image is not "identical"


def test_matching_roc_points_lie_on_the_roc_curve_and_cover_low_false_match_rates():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    genuine, impostor = np.round(rng.normal(2, 1, 400), 2), np.round(rng.normal(0, 1, 200_000), 2)
    roc = matching_metrics(genuine, impostor, (1e-2,))["roc"]
    labels = np.concatenate([np.ones(genuine.size), np.zeros(impostor.size)])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([genuine, impostor]), drop_intermediate=False)
    curve = set(zip(np.round(fpr, 6).tolist(), np.round(tpr, 6).tolist()))
    assert all((x, y) in curve for x, y in zip(roc["fpr"], roc["tpr"]))  # exact points of the curve
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and roc["fpr"] == sorted(roc["fpr"])
    assert sum(1e-4 <= x <= 1e-2 for x in roc["fpr"]) >= 15  # the log-axis region is drawn, not 2 points
    for fmr in (1e-3, 1e-2):  # the curve passes through the reported TMRs
        assert tmr_at_fmr(genuine, impostor, fmr) in roc["tpr"]
