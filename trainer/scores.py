"""Genuine and impostor pairs and the true match rate at a false match rate: the one definition,
used by the auxiliary matcher's report (trainer/matcher.py) and by the evaluator
(components/evaluation/metrics.py, intervals.py checks against it). NumPy only."""

from __future__ import annotations

import numpy as np


def genuine_impostor(scores: np.ndarray, identity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probe i against gallery image j != i (scores [N,N]): same identity (genuine) or not (impostor)."""
    identity = np.asarray(identity)
    same = identity[:, None] == identity[None, :]
    off_diagonal = ~np.eye(len(identity), dtype=bool)
    return scores[same & off_diagonal], scores[~same & off_diagonal]


def tmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> float:
    """The highest true match rate at a threshold whose false match rate is at most `fmr`.

    A pair matches when its score is at least the threshold. With I impostor pairs the FMR is
    resolved in steps of 1/I: at most k = floor(fmr * I) impostors may match, so the threshold must
    lie above the (k+1)-th highest impostor score v, and the best such threshold accepts every
    genuine pair scoring above v. A target below 1/I allows no impostor above the threshold.
    (The same value as the highest TPR at FPR <= fmr on scikit-learn's ROC curve; O(N), no sort.)
    """
    genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    if not genuine.size or not impostor.size:
        raise ValueError(f"TMR at FMR needs genuine and impostor pairs, got {genuine.size} and {impostor.size}")
    allowed = int(np.floor(fmr * impostor.size + 1e-12 * impostor.size))
    if allowed >= impostor.size:
        return 1.0
    position = impostor.size - 1 - allowed  # ascending order: the (allowed+1)-th highest
    highest_rejected = np.partition(impostor, position)[position]
    return float(np.mean(genuine > highest_rejected))
