"""The auxiliary matcher's training head, its figures on unseen identities, and how they reach ML Metadata."""

import numpy as np
import pytest
import tensorflow as tf

from components.training.reports import flatten
from trainer.config import TrainingConfig
from trainer.matcher import build_matcher_training_model, cosine_schedule
from trainer.scores import genuine_impostor, tmr_at_fmr
from trainer.models import CosFaceHead


def test_cosface_margin_lowers_the_true_class_logit_in_training_only():
    head = CosFaceHead(3, scale=10.0, margin=0.25)
    embedding = tf.math.l2_normalize(tf.constant([[1.0, 0.0], [0.0, 1.0]]), axis=1)
    label = tf.constant([2, 0], tf.int64)
    plain = head([embedding, label], training=False).numpy()
    margined = head([embedding, label], training=True).numpy()
    difference = plain - margined
    np.testing.assert_allclose(difference[0], [0.0, 0.0, 2.5], atol=1e-6)  # scale * margin on class 2
    np.testing.assert_allclose(difference[1], [2.5, 0.0, 0.0], atol=1e-6)
    assert np.abs(plain).max() <= 10.0 + 1e-5  # scaled cosines


def test_tmr_at_fmr_by_hand():
    impostor = np.arange(100) / 100.0  # threshold at FMR 0.01 = the 99th percentile, 0.9801
    genuine = np.array([0.5, 0.97, 0.985, 0.99, 1.0])
    assert tmr_at_fmr(genuine, impostor, 0.01) == pytest.approx(3 / 5)
    assert tmr_at_fmr(genuine, impostor, 0.001) == pytest.approx(1 / 5)  # no impostor may pass: above 0.99
    assert tmr_at_fmr(genuine, impostor, 1.0) == 1.0
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    genuine, impostor = genuine_impostor(embeddings @ embeddings.T, np.array([7, 7, 9]))
    assert genuine.tolist() == [1.0, 1.0] and sorted(impostor.tolist()) == [0.0, 0.0, 0.0, 0.0]


def test_tmr_at_fmr_equals_the_roc_curves_on_ties_and_random_scores():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    for genuine, impostor in ((rng.normal(1, 1, 300), rng.normal(0, 1, 5000)),
                              (np.round(rng.normal(1, 1, 300), 1), np.round(rng.normal(0, 1, 5000), 1))):
        labels = np.concatenate([np.ones(genuine.size), np.zeros(impostor.size)])
        fpr, tpr, _ = roc_curve(labels, np.concatenate([genuine, impostor]), drop_intermediate=False)
        for fmr in (1e-3, 1e-2, 0.1, 0.5):
            assert tmr_at_fmr(genuine, impostor, fmr) == pytest.approx(float(tpr[fpr <= fmr + 1e-12].max()))


def test_training_model_takes_the_class_and_exports_only_the_embedding():
    config = TrainingConfig(image_size=32, matcher_embedding_dim=8)
    matcher, model = build_matcher_training_model(config, num_identities=5)
    faces = tf.random.uniform((4, 32, 32, 1), seed=1)
    logits = model([faces, tf.constant([0, 1, 2, 3], tf.int64)], training=True)
    assert logits.shape == (4, 5)
    assert matcher(faces).shape == (4, 8)
    assert not any("identity_logits" in weight.name for weight in matcher.weights)


def test_cosine_schedule_decays_to_zero():
    schedule = cosine_schedule(2e-3, 10)
    assert schedule(0) == pytest.approx(2e-3) and schedule(5) == pytest.approx(1e-3) and schedule(10) == pytest.approx(0)


def test_training_report_numbers_become_flat_property_names():
    report = {"split": "eval", "genuine_pairs": 6, "tmr_at_fmr": {"0.01": 0.95, "0.001": 0.8}, "flag": True}
    assert flatten(report) == {"genuine_pairs": 6.0, "tmr_at_fmr/0.01": 0.95, "tmr_at_fmr/0.001": 0.8}
