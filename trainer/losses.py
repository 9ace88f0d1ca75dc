"""SAN loss terms as plain functions of tensors, composed by weight.

Each term is a separate function so further privacy objectives (identity suppression as in
FaDeNet, keeping named attributes while suppressing others) can be added as new terms without
restructuring the training step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

_EPSILON = 1e-7


def reconstruction_l1(original: tf.Tensor, reconstructed: tf.Tensor) -> tf.Tensor:
    """Mean absolute pixel difference (the public code's reconstruction term)."""
    return tf.reduce_mean(tf.abs(original - reconstructed))


def reconstruction_cross_entropy(original: tf.Tensor, reconstructed: tf.Tensor) -> tf.Tensor:
    """Pixel-wise binary cross-entropy between X and X' (the paper's pre-training loss)."""
    reconstructed = tf.clip_by_value(reconstructed, _EPSILON, 1.0 - _EPSILON)
    return -tf.reduce_mean(original * tf.math.log(reconstructed) + (1.0 - original) * tf.math.log(1.0 - reconstructed))


def gender_cross_entropy(male_probability: tf.Tensor, target_male: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of a classifier's male probability [N] against 0/1 targets [N]."""
    target = tf.cast(target_male, tf.float32)
    probability = tf.clip_by_value(male_probability, _EPSILON, 1.0 - _EPSILON)
    return -tf.reduce_mean(target * tf.math.log(probability) + (1.0 - target) * tf.math.log(1.0 - probability))


def embedding_distance(perturbed: tf.Tensor, original: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of the squared L2 distance between embeddings [N, D] (J_M)."""
    difference = tf.cast(perturbed, tf.float32) - tf.cast(original, tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.square(difference), axis=-1))


def identity_similarity_hinge(perturbed: tf.Tensor, original: tf.Tensor, margin: float = 0.0) -> tf.Tensor:
    """Identity suppression (FaDeNet's identity critic): mean over the batch of
    max(0, cos(R(x'), R(x)) - margin) for identity embeddings [N, D]. Zero once the critic no
    longer sees the same person (cosine at or below `margin`), so the sanitizer stops changing the
    face there instead of pushing it ever further."""
    perturbed = tf.math.l2_normalize(tf.cast(perturbed, tf.float32), axis=-1)
    original = tf.math.l2_normalize(tf.cast(original, tf.float32), axis=-1)
    return tf.reduce_mean(tf.nn.relu(tf.reduce_sum(perturbed * original, axis=-1) - margin))


def feature_distance(perturbed: list, original: list) -> tf.Tensor:
    """Perceptual term: the mean over layers of the mean squared difference between the feature
    maps of x' and of x (lists of tensors, one per layer, of a network other than the identity
    critic), so the output keeps the look a classifier sees while the critic loses the person."""
    if len(perturbed) != len(original) or not perturbed:
        raise ValueError(f"feature_distance needs the same non-zero number of layers, got {len(perturbed)} "
                         f"and {len(original)}")
    return tf.add_n([tf.reduce_mean(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))
                     for a, b in zip(perturbed, original)]) / len(perturbed)


def discrepancy_objective(reconstructed_probability: tf.Tensor, encrypted_probability: tf.Tensor) -> tf.Tensor:
    """Distribution discrepancy maximisation (DDM): the objective the discriminator D and the
    encryption model G_e share. D gives P(reconstructed) [N] for reconstructed images (label 1) and
    for encrypted ones (label 0); both minimise D's cross-entropy, so G_e makes the two kinds of
    image as easy to tell apart as it can (their distributions as far apart as D can see)."""
    return 0.5 * (gender_cross_entropy(reconstructed_probability, tf.ones_like(reconstructed_probability))
                  + gender_cross_entropy(encrypted_probability, tf.zeros_like(encrypted_probability)))


def random_shift_and_noise(images: tf.Tensor, max_shift: int = 2, noise: float = 0.02) -> tf.Tensor:
    """The same random shift (up to max_shift pixels, wrapping) for the batch, plus Gaussian noise:
    what a gender term sees of the output, so the sanitizer cannot rely on pixel-exact patterns that
    only the auxiliary classifier reads (expectation over transformations)."""
    shift = tf.random.uniform([2], -max_shift, max_shift + 1, dtype=tf.int32)
    shifted = tf.roll(images, shift, axis=[1, 2])
    return shifted + tf.random.normal(tf.shape(images), stddev=noise, dtype=images.dtype)


RECONSTRUCTION_LOSSES = {"l1": reconstruction_l1, "cross_entropy": reconstruction_cross_entropy}


@dataclass
class LossTerm:
    """One weighted objective. `compute(batch, outputs)` returns a scalar.

    batch: dict with at least 'face' [N,S,S,1], 'male' [N] and, for the residual sanitizer, the
    drawn 'target' [N]; outputs: the paper SAN's dict of 'same', 'neutral', 'opposite' faces, or
    the residual sanitizer's {'sanitized'}. The weight is a tf.Variable so a schedule (pre-training,
    a term that starts at a later epoch) changes it without retracing the training step.
    """

    name: str
    weight: tf.Variable
    compute: Callable[[dict, dict], tf.Tensor]


def total_loss(terms: list[LossTerm], batch: dict, outputs: dict) -> tuple[tf.Tensor, dict]:
    """Weighted sum of the terms; a term whose weight is 0 is not computed (and reads 0)."""
    values = {
        term.name: tf.cond(
            term.weight > 0.0,
            lambda term=term: tf.cast(term.compute(batch, outputs), tf.float32),
            lambda: tf.constant(0.0),
        )
        for term in terms
    }
    total = tf.add_n([term.weight * values[term.name] for term in terms])
    return total, values
