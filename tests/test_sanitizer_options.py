"""Options of the residual sanitizer for attribute policies: constant targets
(TrainingConfig.constant_targets: a suppressed attribute every output shows the same way, in
training, in the exported signatures and in the configuration's checks) and the fine editor
(TrainingConfig.residual_fine)."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import features, losses
from trainer.config import TrainingConfig
from trainer.export import SanitizerModule, hashed_targets
from trainer.models import build_gender_classifier
from trainer.policy import PrivacyPolicy
from trainer.san import LossSchedule, build_san_trainer, sanitizer_of

SIZE = 32
GENDER_AGE = PrivacyPolicy.from_arguments("gender-age")


def _config(**kwargs):
    return TrainingConfig(image_size=SIZE, policy=GENDER_AGE, **kwargs)


def _moving(san):
    """The editor's last layer set away from zero, so that the target changes the output."""
    change = san.editor.get_layer("change")
    change.set_weights([np.full_like(w, 0.05) for w in change.get_weights()])
    return san


@pytest.mark.parametrize("items, message", [
    (("Smiling:1",), "Smiling is not an attribute the policy"),
    (("identity:0",), "not an attribute the policy"),
    (("Young:2",), "write Attribute:0 or Attribute:1"),
    (("Young",), "write Attribute:0 or Attribute:1"),
])
def test_a_malformed_constant_target_or_one_the_policy_keeps_is_refused_when_configured(items, message):
    with pytest.raises(ValueError, match=message):
        _config(constant_targets=items)


def test_constant_targets_survive_the_trainers_custom_config():
    config = _config(constant_targets=("Young:0",))
    assert config.constant_target_values() == {"Young": 0.0}
    again = TrainingConfig.from_custom_config(config.to_custom_config())
    assert again.constant_targets == ("Young:0",) and again.constant_target_values() == {"Young": 0.0}


def test_the_served_output_shows_the_constant_whatever_target_the_face_hashes_to():
    san = _moving(sanitizer_of(_config(constant_targets=("Young:0",))))
    assert san.constants == (None, 0.0)
    faces = tf.random.uniform((6, SIZE, SIZE, 1), seed=5)
    drawn = tf.constant([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(san.fix_targets(drawn).numpy()[:, 1], 0.0)
    np.testing.assert_array_equal(san.fix_targets(drawn).numpy()[:, 0], drawn.numpy()[:, 0])
    served = san.sanitized_only(faces, None, drawn).numpy()
    np.testing.assert_allclose(served, san.edit(faces, [[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]]).numpy())
    assert np.abs(served - san.edit(faces, drawn).numpy()).max() > 1e-4  # the drawn Young target is not used
    # X'_SM / X'_NT / X'_OP move the gender column only: the constant stays.
    same = san.sanitizer_outputs(faces, tf.constant([1, 0, 1, 0, 1, 0]), drawn)["same"].numpy()
    np.testing.assert_allclose(same, san.edit(faces, [[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]]).numpy())
    prototypes = {name: tf.zeros((SIZE, SIZE, 3)) for name in ("male", "female", "neutral")}
    module = SanitizerModule(san, build_gender_classifier(SIZE), prototypes, SIZE)  # what the export serves
    exported = module.sanitize_only(faces)["sanitized"].numpy()
    np.testing.assert_allclose(exported, san.edit(faces, san.fix_targets(hashed_targets(faces, 2))).numpy(),
                               atol=1e-6)


def test_training_draws_the_constant_for_every_face():
    config = _config(constant_targets=("Young:0",))
    seen = []

    def record(batch, outputs):
        seen.append((batch["target/Young"], batch["target"]))
        return tf.reduce_mean(outputs["sanitized"])

    trainer, _ = build_san_trainer(config, {}, build_gender_classifier(SIZE), None, {},
                                   attribute_classifier=lambda faces, training=False: tf.zeros([tf.shape(faces)[0], 2]))
    trainer.terms = [losses.LossTerm("record", tf.Variable(1.0, trainable=False), record)]
    batch = {features.FACE_GRAY_KEY: tf.random.uniform((64, SIZE, SIZE, 1), seed=2),
             features.LABEL_KEY: tf.zeros([64], tf.int64),
             features.attribute_feature_name("Young"): tf.ones([64], tf.int64),
             features.attribute_feature_name("Smiling"): tf.ones([64], tf.int64)}
    trainer._forward(batch, training=False)
    young, male = (value.numpy() for value in seen[0])
    np.testing.assert_array_equal(young, 0.0)
    assert 0 < male.mean() < 1  # gender keeps its coin


def test_the_fine_editor_makes_its_change_at_full_resolution_and_starts_as_the_identity():
    from trainer.models import build_residual_editor

    coarse, fine = build_residual_editor(SIZE, 8), build_residual_editor(SIZE, 8, fine=True)
    names = {layer.name for layer in fine.layers}
    assert "decoder_conv_fine" in names and "change_up" not in names
    assert "change_up" in {layer.name for layer in coarse.layers}
    assert fine.output_shape == coarse.output_shape == (None, SIZE, SIZE, 1)
    config = _config(residual_fine=True)
    san = sanitizer_of(config)
    faces = tf.random.uniform((2, SIZE, SIZE, 1), seed=7)
    np.testing.assert_allclose(san.edit(faces, [[1, 0], [0, 1]]).numpy(), faces.numpy())  # untrained: unchanged
    assert "decoder_conv_fine" in {layer.name for layer in san.editor.layers}


def test_the_fine_editor_needs_the_residual_sanitizer():
    from trainer.models import build_sanitizer

    with pytest.raises(ValueError, match="--residual-fine.*'paper'"):
        build_sanitizer("paper", SIZE, fine=True)
    encrypting = build_sanitizer("residual", SIZE, suppress=("identity",), encrypt=True, fine=True)
    assert "decoder_conv_fine" in {layer.name for layer in encrypting.editor.layers}


def test_the_online_adversary_is_refused_where_it_has_nothing_to_read():
    with pytest.raises(ValueError, match="needs the residual sanitizer"):
        TrainingConfig(image_size=SIZE, architecture="paper", adversary_weight=1.0)
    with pytest.raises(ValueError, match="suppresses an attribute other than identity"):
        TrainingConfig(image_size=SIZE, policy=PrivacyPolicy.from_arguments("deidentify"), adversary_weight=1.0)
    with pytest.raises(ValueError, match="adversary_weight=-1"):
        _config(adversary_weight=-1.0)
    assert _config(adversary_weight=1.0).policy.suppressed_attributes == ("Male", "Young")


def _adversary_batch(count=16):
    rng = np.random.default_rng(4)
    return {features.FACE_GRAY_KEY: tf.constant(rng.uniform(0, 1, (count, SIZE, SIZE, 1)), tf.float32),
            features.LABEL_KEY: tf.constant(rng.integers(0, 2, count)),
            features.attribute_feature_name("Young"): tf.constant(rng.integers(0, 2, count)),
            features.attribute_feature_name("Smiling"): tf.constant(rng.integers(0, 2, count))}


def test_the_online_adversarys_terms_against_hand_computed_cross_entropies():
    """adversary_target: the sanitizer wants the adversary to read the drawn targets (mean
    cross-entropy over Male and Young); adversary_loss: the adversary wants the true values."""
    from trainer.san import adversary_loss, adversary_target_term

    config = _config(adversary_weight=2.0)
    heads = lambda faces, training=False: tf.zeros([tf.shape(faces)[0], 2])  # noqa: E731
    trainer, terms = build_san_trainer(config, {}, build_gender_classifier(SIZE), None, {}, attribute_classifier=heads)
    assert "adversary_target" in [term.name for term in terms]
    read = np.array([[0.9, 0.2], [0.3, 0.6]], np.float32)
    batch = {"target/Male": tf.constant([1.0, 0.0]), "target/Young": tf.constant([0.0, 0.0]),
             "label/Male": tf.constant([0, 1]), "label/Young": tf.constant([1, 1])}

    def cross_entropy(p, y):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    fixed = adversary_target_term(lambda faces, training=False: tf.constant(read), ("Male", "Young"), 2.0)
    expected = (cross_entropy(read[:, 0], np.array([1, 0])) + cross_entropy(read[:, 1], np.array([0, 0]))) / 2
    assert float(fixed.compute(batch, {"sanitized": tf.zeros((2, SIZE, SIZE, 1))})) == pytest.approx(expected, rel=1e-5)
    learnt = adversary_loss(lambda faces, training=False: tf.constant(read), ("Male", "Young"), batch,
                            tf.zeros((2, SIZE, SIZE, 1)))
    truth = (cross_entropy(read[:, 0], np.array([0, 1])) + cross_entropy(read[:, 1], np.array([1, 1]))) / 2
    assert float(learnt) == pytest.approx(truth, rel=1e-5)
    assert float(next(term for term in terms if term.name == "adversary_target").weight) == 2.0
    weights = LossSchedule(terms, config)
    assert weights.weights_for_epoch(0)["adversary_target"] == 2.0
    assert LossSchedule(terms, _config(adversary_weight=2.0, pretrain_epochs=1)).weights_for_epoch(0)[
        "adversary_target"] == 0.0


def test_a_training_step_moves_the_sanitizer_and_the_adversary_and_not_the_frozen_networks():
    """Each step: the sanitizer learns from the terms, the adversary from the true values on the
    outputs, the classifier stays frozen. With the sanitizer held still (a negligible learning rate)
    the adversary's loss falls on a batch it sees again: it learns from the true values."""
    tf.keras.utils.set_random_seed(1)
    classifier = build_gender_classifier(SIZE)
    heads = lambda faces, training=False: tf.zeros([tf.shape(faces)[0], 2])  # noqa: E731
    batch = _adversary_batch()
    trainer, _ = build_san_trainer(_config(adversary_weight=1.0), {}, classifier, None, {},
                                   attribute_classifier=heads)
    san_before = [w.copy() for w in trainer.san.get_weights()]
    adversary_before = [w.copy() for w in trainer.adversary.get_weights()]
    classifier_before = [w.copy() for w in classifier.get_weights()]
    trainer.train_step(batch)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(san_before, trainer.san.get_weights()))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(adversary_before, trainer.adversary.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(classifier_before, classifier.get_weights()))
    assert "adversary" in trainer.test_step(batch)

    held, _ = build_san_trainer(_config(adversary_weight=1.0, san_learning_rate=1e-12), {}, classifier, None, {},
                                attribute_classifier=heads)
    first = held.train_step(batch)
    for _ in range(40):
        last = held.train_step(batch)
    assert float(last["adversary"]) < float(first["adversary"]) - 0.1
