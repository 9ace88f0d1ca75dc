"""The "robust" ensemble member: a strided CNN trained on adversarial faces (trainer/gender_classifier.py)."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer import features
from trainer.config import TrainingConfig
from trainer.gender_classifier import l2_attack, train_ensemble_members
from trainer.models import build_strided_gender_cnn


def _toy_faces(count=512, size=32, seed=0):
    """Faces whose class shows twice: a diffuse brighter centre, and a faint pixel-exact
    checkerboard that a plainly trained CNN can lean on and a small L2 change can erase."""
    rng = np.random.default_rng(seed)
    faces = 0.5 + 0.1 * rng.standard_normal((count, size, size, 1))
    labels = (rng.uniform(size=count) < 0.5).astype("int64")
    quarter = size // 4
    faces[labels == 1, quarter:-quarter, quarter:-quarter] += 0.08
    checkerboard = ((np.indices((size, size)).sum(0) % 2) * 2 - 1)[..., None] * 0.02
    faces[labels == 1] += checkerboard
    return np.clip(faces, 0, 1).astype("float32"), labels


def test_the_l2_attack_stays_in_its_ball_and_in_range_and_raises_the_loss():
    keras.utils.set_random_seed(0)
    model = build_strided_gender_cnn(16, seed=1)
    faces = tf.random.uniform((6, 16, 16, 1), seed=3)
    labels = tf.constant([0, 1, 1, 0, 1, 0], tf.float32)
    adversarial = l2_attack(model, faces, labels, epsilon=0.5, steps=3)
    norms = tf.norm(tf.reshape(adversarial - faces, [6, -1]), axis=1).numpy()
    assert np.all(norms <= 0.5 + 1e-4) and np.all(norms > 0.1)
    assert float(tf.reduce_min(adversarial)) >= 0.0 and float(tf.reduce_max(adversarial)) <= 1.0

    def loss(images):
        return float(tf.reduce_mean(keras.losses.binary_crossentropy(tf.reshape(labels, [-1, 1]),
                                                                     model(images, training=False))))

    assert loss(adversarial) > loss(faces)


def test_the_robust_member_resists_the_attack_a_plain_cnn_falls_to():
    """Both members read the toy classes perfectly; an L2 change of 0.5 (a faint pattern) fools the
    plainly trained CNN on most faces and the adversarially trained one on far fewer."""
    faces, labels = _toy_faces()
    dataset = tf.data.Dataset.from_tensor_slices({features.FACE_GRAY_KEY: faces, features.LABEL_KEY: labels}).batch(64)
    members = train_ensemble_members(dataset, 32, seed=0, members=("cnn", "robust"), robust_epsilon=0.5)
    accuracy = {}
    for name, model in members.items():
        assert np.mean((model(faces, training=False).numpy()[:, 0] > 0.5) == labels) > 0.95, name
        attacked = l2_attack(model, tf.constant(faces), tf.constant(labels, tf.float32), epsilon=0.5, steps=7)
        accuracy[name] = np.mean((model(attacked, training=False).numpy()[:, 0] > 0.5) == labels)
    # Measured here (2-core Intel Xeon, 2026-11-27): 0.74 against 0.45 with these seeds; 0.70 / 0.48
    # and 0.62 / 0.50 with the data and training seeds 1 and 2.
    assert accuracy["robust"] > accuracy["cnn"] + 0.1, accuracy


def test_the_robust_radius_is_a_training_setting():
    assert TrainingConfig().robust_member_epsilon == 1.0
    config = TrainingConfig.from_custom_config(dict(TrainingConfig(ensemble_members=("robust",),
                                                                   robust_member_epsilon=2.0).to_custom_config()))
    assert config.ensemble_members == ("robust",) and config.robust_member_epsilon == 2.0
