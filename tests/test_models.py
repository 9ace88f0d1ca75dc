import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import features, losses
from trainer.models import SemiAdversarialNetwork, build_gender_classifier, build_san_autoencoder
from trainer.san import SanTrainer, gender_loss_terms, prototypes_for_labels, reconstruction_term


@pytest.mark.parametrize("size", [32, 224])
def test_san_layer_shapes_follow_the_paper(size):
    autoencoder = build_san_autoencoder(size)
    shapes = {layer.name: tuple(layer.output_shape[1:]) for layer in autoencoder.layers}
    assert shapes["face_and_prototype"] == (size, size, 4)
    assert shapes["encoder_conv1"] == (size, size, 8)
    assert shapes["encoder_pool2"] == (size // 4, size // 4, 12)
    assert shapes["decoder_conv1"] == (size // 4, size // 4, 256)
    assert shapes["decoder_up2"] == (size, size, 128)
    san = SemiAdversarialNetwork(size)
    batch = {name: tf.zeros((2, size, size, 3)) for name in ("same", "neutral", "opposite")}
    outputs = san({"face": tf.zeros((2, size, size, 1)), **batch})
    assert {name: tuple(value.shape) for name, value in outputs.items()} == {
        name: (2, size, size, 1) for name in ("same", "neutral", "opposite")}
    combiner_kernel = san.combiner.get_layer("combiner_conv").kernel
    assert tuple(combiner_kernel.shape) == (1, 1, 131, 1)


@pytest.mark.parametrize("size", [32, 224])
def test_gender_classifier_shapes(size):
    model = build_gender_classifier(size)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.kernel_size, c.filters) for c in convs] == [
        ((5, 5), 32), ((3, 3), 64), ((3, 3), 128), ((3, 3), 256), ((3, 3), 256), ((3, 3), 512)]
    assert model.get_layer("conv6").output_shape[1:3] == (size // 32, size // 32)
    assert model.output_shape == (None, 2)


def test_prototype_choice_follows_labels():
    prototypes = {"male": tf.fill((2, 2, 3), 1.0), "female": tf.fill((2, 2, 3), 0.0), "neutral": tf.fill((2, 2, 3), 0.4)}
    chosen = prototypes_for_labels(tf.constant([1, 0]), prototypes)
    assert chosen["same"].numpy()[:, 0, 0, 0].tolist() == [1.0, 0.0]
    assert chosen["opposite"].numpy()[:, 0, 0, 0].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(chosen["neutral"].numpy()[:, 0, 0, 0], [0.4, 0.4])


def test_loss_terms_zero_and_positive_where_they_must_be():
    face = tf.random.uniform((3, 8, 8, 1), seed=1)
    assert float(losses.reconstruction_l1(face, face)) == 0.0
    assert float(losses.reconstruction_l1(face, 1.0 - face)) > 0.1
    # Cross-entropy is minimal (the entropy of X) at X' = X and larger elsewhere.
    assert float(losses.reconstruction_cross_entropy(face, face)) < float(
        losses.reconstruction_cross_entropy(face, tf.clip_by_value(face + 0.2, 0, 1)))
    assert float(losses.gender_cross_entropy(tf.constant([1.0, 0.0]), tf.constant([1, 0]))) < 1e-5
    assert float(losses.gender_cross_entropy(tf.constant([0.1, 0.9]), tf.constant([1, 0]))) > 2.0


def test_training_step_changes_san_but_not_the_frozen_classifier():
    size = 32
    tf.keras.utils.set_random_seed(0)
    classifier = build_gender_classifier(size, dropout=0.5)
    classifier.trainable = False
    before = [w.copy() for w in classifier.get_weights()]
    san = SemiAdversarialNetwork(size)
    prototypes = {"male": tf.fill((size, size, 3), 0.7), "female": tf.fill((size, size, 3), 0.3),
                  "neutral": tf.fill((size, size, 3), 0.5)}
    trainer = SanTrainer(san, prototypes, [reconstruction_term("l1", 1.0), *gender_loss_terms(classifier, 1.0)])
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = {features.FACE_GRAY_KEY: tf.random.uniform((4, size, size, 1), seed=2),
             features.LABEL_KEY: tf.constant([0, 1, 1, 0], tf.int64)}
    dataset = tf.data.Dataset.from_tensors(batch)
    san_before = [w.copy() for w in san.get_weights()]
    history = trainer.fit(dataset, epochs=2, verbose=0)
    assert set(history.history) >= {"loss", "reconstruction", "gender_same", "gender_opposite"}
    assert all(value > 0 for value in history.history["gender_opposite"])
    for old, new in zip(before, classifier.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(old, new) for old, new in zip(san_before, san.get_weights()))


def test_disabled_terms_are_skipped_and_weights_compose():
    terms = [
        losses.LossTerm("a", tf.Variable(2.0), lambda batch, outputs: tf.constant(3.0)),
        losses.LossTerm("nan_when_computed", tf.Variable(0.0), lambda batch, outputs: tf.constant(float("nan"))),
    ]
    total, values = losses.total_loss(terms, {}, {})
    assert float(total) == 6.0 and float(values["nan_when_computed"]) == 0.0
    terms[1].weight.assign(1.0)
    total, _ = losses.total_loss(terms, {}, {})
    assert np.isnan(float(total))
