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

from trainer.scores import genuine_impostor, match_rates, tmr_at_fmr  # noqa: F401 (one definition, shared with the matcher report)

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


def matching_metrics(genuine: np.ndarray, impostor: np.ndarray, fmr_targets) -> dict:
    """TMR at each FMR target, pair counts, mean scores and the ROC (the paper's Figure 7), stored
    at MATCHING_ROC_FMRS; one pass of trainer.scores.match_rates gives both."""
    targets = list(fmr_targets)
    fmr, tmr = match_rates(genuine, impostor, np.concatenate([targets, MATCHING_ROC_FMRS]))
    points = sorted(set(zip(fmr[len(targets):].tolist(), tmr[len(targets):].tolist())))
    return {
        "tmr_at_fmr": {f"{target:g}": float(value) for target, value in zip(targets, tmr)},
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "genuine_mean": float(np.mean(genuine)),
        "impostor_mean": float(np.mean(impostor)),
        "roc": {"fpr": [round(float(x), 6) for x, _ in points], "tpr": [round(float(y), 6) for _, y in points]},
    }


def linkability(scores: np.ndarray, identity: np.ndarray, fmr: float) -> float:
    """Can two sanitized photos of one person still be linked to each other? The TMR at `fmr` of
    sanitized probes against the SANITIZED gallery: `scores` [N,N] between the sanitized faces'
    embeddings, each face against every other (a face against itself is left out). Identity
    suppression wants it low too: a matcher that cannot name the person may still link their photos."""
    genuine, impostor = genuine_impostor(np.asarray(scores), identity)
    return tmr_at_fmr(genuine, impostor, fmr)


def image_quality(original: tf.Tensor, perturbed: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-face SSIM and PSNR (dB) of perturbed faces [N,S,S,C] against the originals, both in [0,1].

    PSNR of an identical pair is infinite; callers average finite values.
    """
    return (tf.image.ssim(original, perturbed, max_val=1.0).numpy(),
            tf.image.psnr(original, perturbed, max_val=1.0).numpy())
