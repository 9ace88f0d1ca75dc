"""The identity-policy building blocks ([identity policies]) on tiny tensors against hand-computed
values: FaDeNet's identity-critic hinge, the perceptual feature distance, DDM's shared objective,
and the linkability metric."""

import math

import numpy as np
import pytest
import tensorflow as tf

from components.evaluation.metrics import linkability
from trainer import losses


def test_identity_hinge_by_hand():
    original = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    # cos = 1 (same direction, other length) and cos = 0.6 ([0.8, 0.6] against [0, 1]).
    perturbed = tf.constant([[3.0, 0.0], [0.8, 0.6]])
    assert float(losses.identity_similarity_hinge(perturbed, original)) == pytest.approx((1.0 + 0.6) / 2)
    # margin 0.7: only the first face is still "the same person" to the critic: (1 - 0.7 + 0) / 2.
    assert float(losses.identity_similarity_hinge(perturbed, original, margin=0.7)) == pytest.approx(0.15)
    # Opposite embeddings (cos -1) cost nothing; the gradient pushes the cosine down.
    assert float(losses.identity_similarity_hinge(-original, original)) == 0.0
    variable = tf.Variable([[1.0, 0.2]])
    with tf.GradientTape() as tape:
        loss = losses.identity_similarity_hinge(variable, tf.constant([[1.0, 0.0]]))
    step = variable - 0.1 * tape.gradient(loss, variable)
    assert float(losses.identity_similarity_hinge(step, tf.constant([[1.0, 0.0]]))) < float(loss)


def test_feature_distance_by_hand():
    a = [tf.constant([[1.0, 2.0]]), tf.constant([[[0.0], [4.0]]])]
    b = [tf.constant([[1.0, 0.0]]), tf.constant([[[1.0], [4.0]]])]
    # layer 1: (0 + 4) / 2 = 2; layer 2: (1 + 0) / 2 = 0.5; mean over layers 1.25.
    assert float(losses.feature_distance(a, b)) == pytest.approx(1.25)
    assert float(losses.feature_distance(b, b)) == 0.0
    with pytest.raises(ValueError, match="same non-zero number of layers"):
        losses.feature_distance(a, b[:1])


def test_discrepancy_objective_by_hand():
    reconstructed = tf.constant([0.9, 0.5])  # D's P(reconstructed) for reconstructed images (label 1)
    encrypted = tf.constant([0.2, 0.5])  # and for encrypted ones (label 0)
    expected = 0.5 * (-(math.log(0.9) + math.log(0.5)) / 2 - (math.log(0.8) + math.log(0.5)) / 2)
    assert float(losses.discrepancy_objective(reconstructed, encrypted)) == pytest.approx(expected, rel=1e-6)
    # A D that tells them apart perfectly: near 0; one that cannot (0.5 everywhere): log 2.
    assert float(losses.discrepancy_objective(tf.ones(3), tf.zeros(3))) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.discrepancy_objective(tf.fill([3], 0.5), tf.fill([3], 0.5))) == pytest.approx(math.log(2))


def test_linkability_by_hand():
    # Four sanitized faces of two people (A A B B); scores between them, symmetric.
    identity = np.array([0, 0, 1, 1])
    scores = np.array([[1.0, 0.9, 0.3, 0.2],
                       [0.9, 1.0, 0.8, 0.1],
                       [0.3, 0.8, 1.0, 0.4],
                       [0.2, 0.1, 0.4, 1.0]])
    # Genuine pairs (both directions): 0.9, 0.9, 0.4, 0.4. Impostors: 0.3, 0.2, 0.8, 0.1, 0.3, 0.8, 0.2, 0.1.
    # FMR 0 (no impostor accepted): the threshold must lie above 0.8 -> genuine 0.9, 0.9 -> TMR 0.5.
    assert linkability(scores, identity, 0.0) == 0.5
    # FMR 0.25 (2 of 8 impostors may match): above 0.3 -> 0.9, 0.9, 0.4, 0.4 all match -> 1.0.
    assert linkability(scores, identity, 0.25) == 1.0
    # The diagonal (each face against itself, score 1.0) never counts as a genuine pair.
    unlinkable = np.where(np.eye(4, dtype=bool), 1.0, 0.5)
    assert linkability(unlinkable, identity, 0.0) == 0.0
