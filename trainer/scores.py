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


def match_rates(genuine: np.ndarray, impostor: np.ndarray, fmrs) -> tuple[np.ndarray, np.ndarray]:
    """(achieved FMR, TMR) at the threshold chosen for each target FMR in `fmrs`.

    A pair matches when its score is at least the threshold. With I impostor pairs the FMR is
    resolved in steps of 1/I: at most k = floor(fmr * I) impostors may match, so the threshold must
    lie above the (k+1)-th highest impostor score v, and the best such threshold accepts every
    genuine pair scoring above v. A target below 1/I allows no impostor above the threshold.
    (The highest TPR at FPR <= fmr on scikit-learn's ROC curve; two sorts for any number of targets.)
    """
    genuine, impostor = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    if not genuine.size or not impostor.size:
        raise ValueError(f"TMR at FMR needs genuine and impostor pairs, got {genuine.size} and {impostor.size}")
    allowed = np.floor(np.asarray(fmrs, np.float64) * impostor.size + 1e-12 * impostor.size).astype(np.int64)
    below = np.clip(impostor.size - 1 - allowed, 0, impostor.size - 1)
    threshold = np.where(allowed >= impostor.size, -np.inf, impostor[below])  # the highest impostor rejected
    fmr = (impostor.size - np.searchsorted(impostor, threshold, side="right")) / impostor.size
    tmr = (genuine.size - np.searchsorted(genuine, threshold, side="right")) / genuine.size
    return fmr, tmr


def tmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> float:
    """The highest true match rate at a threshold whose false match rate is at most `fmr` (match_rates)."""
    return float(match_rates(genuine, impostor, [fmr])[1][0])
