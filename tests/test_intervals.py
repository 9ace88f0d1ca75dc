"""Bootstrap intervals over identities against hand-computed cases and against explicit copies."""

import numpy as np
import pytest

from components.evaluation.intervals import (
    PairScores, draw_counts, pair_samples, percentile_interval, rate_interval, weighted_rate,
)
from components.evaluation.metrics import tmr_at_fmr


def test_weighted_rate_counts_an_identity_as_often_as_it_is_drawn():
    # Faces of identities 0, 0, 1, 2 with errors 1, 0, 1, 0; identity 0 drawn twice, 1 never, 2 once:
    # the faces (1, 0) twice and (0) once -> 2 errors in 5 faces.
    errors = np.array([1.0, 0.0, 1.0, 0.0])
    counts = np.array([2.0, 0.0, 1.0])
    assert weighted_rate(errors, counts[np.array([0, 0, 1, 2])]) == pytest.approx(2 / 5)


def test_rate_interval_matches_the_exact_bootstrap_distribution():
    # Four identities, one face each, one of them misclassified: a bootstrap rate is k/4 with k ~
    # Binomial(4, 1/4): P(k<=2) = 0.949, P(k<=3) = 0.996, so the 2.5th percentile is 0 and the
    # 97.5th is 3/4.
    interval = rate_interval(np.array([0.0, 0.0, 0.0, 1.0]), np.array([10, 11, 12, 13]), samples=20000, seed=3)
    assert interval == pytest.approx([0.0, 0.75])


def test_faces_of_one_identity_move_together():
    # 20 identities x 5 faces, half of the identities always wrong: resampling identities gives a
    # wide interval; resampling faces (every face its own identity) a narrower one.
    errors = np.repeat(np.arange(20) % 2, 5).astype(float)
    by_identity = rate_interval(errors, np.repeat(np.arange(20), 5), samples=4000, seed=0)
    by_face = rate_interval(errors, np.arange(100), samples=4000, seed=0)
    assert by_identity[0] < 0.35 and by_identity[1] > 0.65
    assert by_identity[1] - by_identity[0] > 1.8 * (by_face[1] - by_face[0])


def test_draw_counts_draw_k_identities_per_sample():
    counts = draw_counts(7, 50, seed=1)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()


def _scores(seed=0, identities=6, per_identity=3):
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(identities) * 10 + 5, per_identity)  # not 0..K-1 on purpose
    centres = rng.normal(size=(identities, 8))
    embeddings = np.repeat(centres, per_identity, axis=0) + 0.9 * rng.normal(size=(len(identity), 8))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings @ embeddings.T, identity


@pytest.mark.parametrize("fmr", [0.2, 0.05, 1e-2, 1e-3, 1.0])
def test_unit_weights_give_the_plain_tmr(fmr):
    scores, identity = _scores()
    same = identity[:, None] == identity[None, :]
    off = ~np.eye(len(identity), dtype=bool)
    assert PairScores(scores, identity).tmr_at_fmr(fmr) == pytest.approx(
        tmr_at_fmr(scores[same & off], scores[~same & off], fmr))


@pytest.mark.parametrize("counts", [[2, 0, 1, 1, 3, 0], [1, 1, 1, 1, 1, 1], [0, 4, 0, 0, 1, 1]])
def test_integer_weights_equal_the_data_set_with_identities_copied(counts):
    """Copy identity a c_a times as separate subjects: genuine pairs within a copy, impostor pairs
    between copies of different people (copies of one person are not paired)."""
    scores, identity = _scores(seed=2)
    unique = np.unique(identity)
    faces, subjects, people = [], [], []
    for person, copies in zip(unique, counts):
        for copy in range(copies):
            members = np.nonzero(identity == person)[0]
            faces += list(members)
            subjects += [f"{person}-{copy}"] * len(members)
            people += [person] * len(members)
    faces, subjects, people = np.array(faces), np.array(subjects), np.array(people)
    copied = scores[np.ix_(faces, faces)]
    same_subject = subjects[:, None] == subjects[None, :]
    same_person = people[:, None] == people[None, :]
    off = ~np.eye(len(faces), dtype=bool)
    genuine, impostor = copied[same_subject & off], copied[~same_person]
    pairs = PairScores(scores, identity)
    for fmr in (0.3, 0.1, 0.02):
        assert pairs.tmr_at_fmr(fmr, np.array(counts, dtype=float)) == pytest.approx(
            tmr_at_fmr(genuine, impostor, fmr))


def test_tmr_intervals_hold_the_point_value_and_are_reproducible():
    scores, identity = _scores(seed=4, identities=12)
    pairs = PairScores(scores, identity)
    intervals = pairs.tmr_intervals((0.1, 0.01), samples=300, seed=7)
    for fmr, (low, high) in intervals.items():
        assert 0.0 <= low <= pairs.tmr_at_fmr(fmr) <= high <= 1.0
    assert intervals == pairs.tmr_intervals((0.1, 0.01), samples=300, seed=7)


def test_percentile_interval_and_pair_budget():
    assert percentile_interval(np.arange(101) / 100) == pytest.approx([0.025, 0.975])
    assert pair_samples(100_000, 1000) == 1000 and pair_samples(25_000_000, 1000) == 100


@pytest.mark.parametrize("head_fmr", [0.001, 0.02, 0.3])
def test_walking_only_the_head_of_the_pairs_gives_the_same_tmr_as_walking_all(head_fmr):
    """The head shortcut (totals from per-identity pair counts, fallback past the head) is exact."""
    scores, identity = _scores(seed=5, identities=30, per_identity=4)
    full, head = PairScores(scores, identity, head_fmr=1.0), PairScores(scores, identity, head_fmr=head_fmr)
    fmrs = (1e-3, 1e-2, 0.05, 0.5)
    for counts in draw_counts(30, 40, seed=3):
        assert head.tmrs_at(fmrs, counts) == full.tmrs_at(fmrs, counts)
    assert head.tmrs_at(fmrs) == full.tmrs_at(fmrs)
