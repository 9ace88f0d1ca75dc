"""Privacy and utility metrics of the evaluator (the SAN paper's Section 3 measures).

- gender: error rate of a judge at P(male) >= 0.5, ROC curve and AUC (scikit-learn);
- matching: genuine and impostor scores of perturbed probes against the ORIGINAL gallery of the
  other images, and the true match rate at a false match rate (from scikit-learn's ROC);
- image quality: SSIM and PSNR of a perturbed face against its original (tf.image).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score, roc_curve

ROC_POINTS = 101  # ROC curves are stored at this many points (enough to draw, small in JSON)


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


def genuine_impostor(scores: np.ndarray, identity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probe i against gallery image j != i (scores [N,N]): same identity (genuine) or not (impostor)."""
    identity = np.asarray(identity)
    same = identity[:, None] == identity[None, :]
    off_diagonal = ~np.eye(len(identity), dtype=bool)
    return scores[same & off_diagonal], scores[~same & off_diagonal]


def tmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> float:
    """The highest true match rate at a threshold whose false match rate is at most `fmr`.

    A pair matches when its score is at least the threshold. With I impostor pairs the FMR is
    resolved in steps of 1/I; a target below 1/I allows no impostor above the threshold.
    """
    genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    if not genuine.size or not impostor.size:
        raise ValueError(f"TMR at FMR needs genuine and impostor pairs, got {genuine.size} and {impostor.size}")
    labels = np.concatenate([np.ones(genuine.size), np.zeros(impostor.size)])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([genuine, impostor]), drop_intermediate=False)
    return float(tpr[fpr <= fmr + 1e-12].max())


def matching_metrics(genuine: np.ndarray, impostor: np.ndarray, fmr_targets) -> dict:
    """TMR at each FMR target, pair counts, mean scores and a thinned ROC (the paper's Figure 7)."""
    labels = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([genuine, impostor]))
    return {
        "tmr_at_fmr": {f"{target:g}": tmr_at_fmr(genuine, impostor, target) for target in fmr_targets},
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "genuine_mean": float(np.mean(genuine)),
        "impostor_mean": float(np.mean(impostor)),
        "roc": _thin(fpr, tpr),
    }


def image_quality(original: tf.Tensor, perturbed: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-face SSIM and PSNR (dB) of perturbed faces [N,S,S,C] against the originals, both in [0,1].

    PSNR of an identical pair is infinite; callers average finite values.
    """
    return (tf.image.ssim(original, perturbed, max_val=1.0).numpy(),
            tf.image.psnr(original, perturbed, max_val=1.0).numpy())
