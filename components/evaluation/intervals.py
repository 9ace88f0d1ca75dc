"""Bootstrap confidence intervals that resample identities, not faces.

Faces of one person are not independent (a judge that fails on someone tends to fail on all their
photos), so an interval that resampled faces would be too narrow. Each bootstrap sample draws the
split's identities with replacement; an identity drawn c times counts c times. That is computed
as weights instead of copies:

- a per-face rate (gender error): the mean over faces weighted by their identity's count;
- TMR at FMR over probe/gallery pairs: a genuine pair of identity a has weight c_a (its c_a copies
  each hold the pair; pairs across copies of one person are not formed), an impostor pair of
  identities a, b has weight c_a * c_b (every copy of a meets every copy of b).

With all weights 1 both are the plain metrics of metrics.py (tested), and with integer weights they
equal the metrics of the data set with the drawn identities copied (tested against that).
"""

from __future__ import annotations

import numpy as np

DEFAULT_SAMPLES = 1000
LEVEL = 0.95


def identity_index(identity: np.ndarray) -> tuple[np.ndarray, int]:
    """(index 0..K-1 of each face's identity [N], K distinct identities)."""
    unique, index = np.unique(np.asarray(identity), return_inverse=True)
    return index, len(unique)


def draw_counts(identities: int, samples: int, seed: int) -> np.ndarray:
    """[samples, K]: how often each of K identities is drawn in each bootstrap sample of K draws."""
    draws = np.random.default_rng(seed).integers(0, identities, size=(samples, identities))
    counts = np.zeros((samples, identities), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(samples), identities), draws.ravel()), 1.0)
    return counts


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail])
    return [float(low), float(high)]


def weighted_rate(values: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean of per-face values (e.g. 1 = misclassified)."""
    return float(np.dot(values, weights) / weights.sum())


def rate_interval(values: np.ndarray, identity: np.ndarray, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                  level: float = LEVEL) -> list[float]:
    """95% interval of the mean of per-face `values` (e.g. errors), identities resampled."""
    index, identities = identity_index(identity)
    weights = draw_counts(identities, samples, seed)[:, index]  # [samples, N]
    rates = weights @ np.asarray(values, dtype=np.float64) / weights.sum(axis=1)
    return percentile_interval(rates, level)


class PairScores:
    """Probe/gallery scores of one matcher on one split, ready for weighted TMR at FMR.

    scores [N, N]: probe i against gallery j; pairs i != j only; genuine = same identity. Sorted
    once (descending). A threshold at a low FMR lies among the highest-scoring pairs, so each
    weighting walks only the `head_fmr` best-scoring share of the impostor pairs (and the genuine
    pairs among them); the totals come from per-identity pair counts. When a weighted FMR target is
    not reached inside that head the whole list is walked instead, so the result is always exact.
    """

    def __init__(self, scores: np.ndarray, identity: np.ndarray, head_fmr: float = 0.05):
        scores = np.asarray(scores, dtype=np.float64)
        index, self.identities = identity_index(identity)
        n = len(index)
        if scores.shape != (n, n):
            raise ValueError(f"scores must be [N, N] for N = {n} faces, got {scores.shape}")
        off_diagonal = ~np.eye(n, dtype=bool)
        probe, gallery = np.nonzero(off_diagonal)
        values = scores[off_diagonal]
        order = np.argsort(-values, kind="stable")
        self.values = values[order]
        self.probe_identity = index[probe][order]
        self.gallery_identity = index[gallery][order]
        self.genuine = self.probe_identity == self.gallery_identity
        if not self.genuine.any() or self.genuine.all():
            raise ValueError("TMR at FMR needs genuine and impostor pairs (identities with two faces, and two "
                             "identities)")
        # Last position of each run of equal scores: a threshold accepts whole runs.
        self._run_ends = np.nonzero(np.append(self.values[1:] != self.values[:-1], True))[0]
        # Pairs per identity (genuine) and per identity pair (impostor): the weighted totals.
        k = self.identities
        self._genuine_pairs = np.bincount(self.probe_identity[self.genuine], minlength=k).astype(np.float64)
        impostor = ~self.genuine
        self._impostor_pairs = np.bincount(self.probe_identity[impostor] * k + self.gallery_identity[impostor],
                                           minlength=k * k).astype(np.float64).reshape(k, k)
        # The head: every run up to the one where head_fmr of the impostor pairs (unweighted) is passed.
        impostor_seen = np.cumsum(impostor)[self._run_ends]
        last = int(np.searchsorted(impostor_seen, head_fmr * impostor_seen[-1], side="right"))
        self._head_runs = self._run_ends[:min(last + 1, len(self._run_ends))]

    @property
    def pairs_walked(self) -> int:
        """Pairs one weighting walks (the head), what a draw costs."""
        return int(self._head_runs[-1]) + 1

    def tmr_at_fmr(self, fmr: float, counts: np.ndarray | None = None) -> float:
        """TMR at the lowest threshold whose (weighted) FMR is at most `fmr`; counts [K] per identity."""
        return self.tmrs_at((fmr,), counts)[0]

    def _walk(self, counts: np.ndarray, stop: int, run_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted cumulative genuine and impostor pair counts at the run ends, over pairs [0, stop)."""
        genuine = self.genuine[:stop]
        probe = counts[self.probe_identity[:stop]]
        weights = np.where(genuine, probe, probe * counts[self.gallery_identity[:stop]])
        return (np.cumsum(np.where(genuine, weights, 0.0))[run_ends],
                np.cumsum(np.where(genuine, 0.0, weights))[run_ends])

    def tmrs_at(self, fmrs, counts: np.ndarray | None = None) -> list[float]:
        """TMR at each FMR target, for one weighting (counts [K] per identity; None: all 1)."""
        counts = np.ones(self.identities) if counts is None else np.asarray(counts, dtype=np.float64)
        total_genuine = float(counts @ self._genuine_pairs)
        total_impostor = float(counts @ self._impostor_pairs @ counts)
        if total_genuine <= 0 or total_impostor <= 0:
            return [float("nan")] * len(fmrs)  # a draw without genuine or impostor pairs
        head = self._head_runs
        genuine, impostor = self._walk(counts, int(head[-1]) + 1, head)
        rate = impostor / total_impostor
        if rate[-1] <= max(fmrs) + 1e-12 and len(head) < len(self._run_ends):  # a target lies past the head
            genuine, impostor = self._walk(counts, len(self.values), self._run_ends)
            rate = impostor / total_impostor
        result = []
        for fmr in fmrs:
            accepted = rate <= fmr + 1e-12
            result.append(float(genuine[accepted].max() / total_genuine) if accepted.any() else 0.0)
        return result

    def tmr_intervals(self, fmrs, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                      level: float = LEVEL) -> dict[float, list[float]]:
        """95% interval of TMR at each FMR target, identities resampled."""
        values = np.array([self.tmrs_at(fmrs, draw) for draw in draw_counts(self.identities, samples, seed)])
        return {fmr: percentile_interval(column[~np.isnan(column)], level) for fmr, column in zip(fmrs, values.T)}


def pair_samples(pairs: int, samples: int, budget: float = 5e8) -> int:
    """Bootstrap draws for TMR intervals: `samples`, fewer when the pairs one draw walks are many
    (PairScores.pairs_walked; at most `budget` pair visits, and never under 100)."""
    return int(max(100, min(samples, budget // max(pairs, 1))))
