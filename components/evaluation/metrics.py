"""Privacy and utility metrics of the evaluator (the SAN paper's Section 3 measures).

- gender: error rate of a judge at P(male) >= 0.5, ROC curve and AUC (scikit-learn);
- matching: genuine and impostor scores of perturbed probes against the ORIGINAL gallery of the
  other images, and the true match rate at a false match rate (trainer/scores.py);
- image quality: SSIM and PSNR of a perturbed face against its original (tf.image).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score, roc_curve

from trainer.scores import genuine_impostor, tmr_at_fmr  # noqa: F401 (the evaluator's and the matcher report's one definition)

ROC_POINTS = 101  # ROC curves are stored at this many points (enough to draw, small in JSON)
# Matching ROCs are stored at these false match rates: log-spaced, since they are read (and drawn)
# on a log axis at 1e-3 .. 1e-2, plus an even spread for the rest of the curve.
MATCHING_ROC_FMRS = np.unique(np.concatenate([[0.0], np.logspace(-6, 0, 61), np.linspace(0, 1, 41)]))


def _thin(x: np.ndarray, y: np.ndarray, points: int = ROC_POINTS) -> dict:
    """A curve kept at `points` evenly spaced indices (always with its ends)."""
    if len(x) > points:
        keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
        x, y = x[keep], y[keep]
    return {"fpr": [round(float(v), 6) for v in x], "tpr": [round(float(v), 6) for v in y]}


def gender_metrics(male: np.ndarray, male_probability: np.ndarray) -> dict:
    """Error rate, ROC and AUC of one gender judge on one set of faces (labels male 0/1).

    The ROC is the paper's Figure 6: "male classified as male" against "female classified as
    male" as the threshold moves. AUC is None when the faces are all of one gender.
    """
    male = np.asarray(male).astype(int)
    male_probability = np.asarray(male_probability, dtype=np.float64)
    if male.shape != male_probability.shape or male.ndim != 1:
        raise ValueError(f"labels {male.shape} and probabilities {male_probability.shape} must be equal-length vectors")
    result = {"error_rate": float(np.mean((male_probability >= 0.5).astype(int) != male)),
              "auc": None, "roc": None}
    if len(np.unique(male)) == 2:
        fpr, tpr, _ = roc_curve(male, male_probability)
        result.update(auc=float(roc_auc_score(male, male_probability)), roc=_thin(fpr, tpr))
    return result


def matching_roc(genuine: np.ndarray, impostor: np.ndarray, fmrs: np.ndarray = MATCHING_ROC_FMRS) -> dict:
    """The matching ROC at the thresholds trainer.scores.tmr_at_fmr picks for each FMR in `fmrs`:
    (achieved FMR, TMR) points, from two sorts (no sklearn: millions of pairs)."""
    genuine, impostor = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    allowed = np.floor(np.asarray(fmrs) * impostor.size + 1e-12 * impostor.size).astype(np.int64)
    below = np.clip(impostor.size - 1 - allowed, 0, impostor.size - 1)
    threshold = np.where(allowed >= impostor.size, -np.inf, impostor[below])  # highest impostor rejected
    fpr = (impostor.size - np.searchsorted(impostor, threshold, side="right")) / impostor.size
    tpr = (genuine.size - np.searchsorted(genuine, threshold, side="right")) / genuine.size
    points = sorted(set(zip(fpr.tolist(), tpr.tolist())))
    return {"fpr": [round(float(x), 6) for x, _ in points], "tpr": [round(float(y), 6) for _, y in points]}


def matching_metrics(genuine: np.ndarray, impostor: np.ndarray, fmr_targets) -> dict:
    """TMR at each FMR target, pair counts, mean scores and the ROC (the paper's Figure 7)."""
    return {
        "tmr_at_fmr": {f"{target:g}": tmr_at_fmr(genuine, impostor, target) for target in fmr_targets},
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "genuine_mean": float(np.mean(genuine)),
        "impostor_mean": float(np.mean(impostor)),
        "roc": matching_roc(genuine, impostor),
    }


def image_quality(original: tf.Tensor, perturbed: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-face SSIM and PSNR (dB) of perturbed faces [N,S,S,C] against the originals, both in [0,1].

    PSNR of an identical pair is infinite; callers average finite values.
    """
    return (tf.image.ssim(original, perturbed, max_val=1.0).numpy(),
            tf.image.psnr(original, perturbed, max_val=1.0).numpy())
