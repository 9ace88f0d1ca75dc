"""The residual CNN gender judge (unseen judge and adaptive attacker): it works on originals, it is
not the auxiliary classifier, and the attacker trains only on the sanitizer's output of the train split."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from bulk_helpers import export_small_model
from components.evaluation.adaptive import sanitized_training_faces
from components.evaluation.cnn_judges import (
    CNN_JUDGE, KeepBest, KerasGenderJudge, build_residual_gender_cnn, train_gender_cnn)
from components.evaluation.cnn_matcher import (
    CNN_MATCHER, KerasMatcherJudge, build_residual_matcher_cnn, train_matcher_cnn)
from components.evaluation.metrics import genuine_impostor
from test_judges import SIZE, _faces
from trainer.models import build_face_matcher, build_gender_classifier


def test_cnn_judge_learns_gender_of_unseen_identities_and_round_trips(tmp_path):
    train = _faces(60, 4, seed=11)
    faces, male, _ = _faces(12, 4, seed=12)  # identities never seen in training
    model = train_gender_cnn((train[0] * 255).astype(np.uint8), train[1], SIZE, epochs=15, seed=5, batch_size=32)
    judge = KerasGenderJudge(CNN_JUDGE, "test", model)
    probability = judge.male_probability(faces)
    assert probability.shape == (len(faces),) and ((0 <= probability) & (probability <= 1)).all()
    assert np.mean((probability >= 0.5) == male) >= 0.7
    judge.save(str(tmp_path))
    loaded = KerasGenderJudge.load(str(tmp_path), CNN_JUDGE)
    np.testing.assert_allclose(loaded.male_probability(faces), probability, atol=1e-5)


def test_keep_best_restores_the_weights_of_the_best_epoch():
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    keep = KeepBest()
    keep.set_model(model)
    for epoch, accuracy in enumerate([0.6, 0.9, 0.7]):
        model.set_weights([np.full((2, 1), float(epoch), np.float32), np.zeros(1, np.float32)])
        keep.on_epoch_end(epoch, {"val_accuracy": accuracy})
    keep.on_train_end()
    assert keep.epoch == 1 and model.get_weights()[0][0, 0] == 1.0


def test_attacker_training_holds_out_identities():
    train = _faces(16, 3, seed=21)
    model = train_gender_cnn((train[0] * 255).astype(np.uint8), train[1], SIZE, epochs=2, seed=5, batch_size=16,
                             identity=train[2])
    assert model.predict(train[0][:2], verbose=0).shape == (2, 1)
    with pytest.raises(ValueError, match="too few identities"):
        train_gender_cnn(train[0][:3], np.array([0, 1, 0]), SIZE, epochs=1, seed=5, identity=np.array([1, 1, 1]))


def test_cnn_judge_is_not_the_auxiliary_classifier():
    judge = build_residual_gender_cnn(SIZE, seed=0)
    auxiliary = build_gender_classifier(SIZE)
    kinds = {type(layer).__name__ for layer in judge.layers}
    auxiliary_kinds = {type(layer).__name__ for layer in auxiliary.layers}
    assert {"BatchNormalization", "Add", "ReLU"} <= kinds  # residual, normalised
    assert not {"BatchNormalization", "Add"} & auxiliary_kinds and "MaxPooling2D" not in kinds
    judge_shapes = {w.shape for w in judge.get_weights() if w.ndim == 4}
    auxiliary_shapes = {w.shape for w in auxiliary.get_weights() if w.ndim == 4}
    assert not judge_shapes & auxiliary_shapes  # no convolution kernel of the same shape


def test_cnn_matcher_judge_tells_unseen_identities_apart_and_round_trips(tmp_path):
    train_faces, _, train_identity = _faces(40, 4, seed=13)
    faces, _, identity = _faces(10, 4, seed=14)  # identities never seen in training
    model = train_matcher_cnn((train_faces * 255).astype(np.uint8), train_identity, SIZE, epochs=20, seed=5,
                              batch_size=32)
    judge = KerasMatcherJudge(CNN_MATCHER, "test", model)
    embeddings = judge.embed(faces)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    genuine, impostor = genuine_impostor(judge.similarity(embeddings, embeddings), identity)
    assert genuine.mean() > impostor.mean() + 0.1  # it matches people it never saw
    judge.save(str(tmp_path))
    np.testing.assert_allclose(KerasMatcherJudge.load(str(tmp_path), CNN_MATCHER).embed(faces), embeddings, atol=1e-5)


def test_cnn_matcher_judge_is_not_the_auxiliary_matcher():
    judge = build_residual_matcher_cnn(SIZE, seed=0)
    auxiliary = build_face_matcher(SIZE)
    kinds = {type(layer).__name__ for layer in judge.layers}
    assert {"Add", "GlobalAveragePooling2D"} <= kinds and "MaxPooling2D" not in kinds
    assert "Add" not in {type(layer).__name__ for layer in auxiliary.layers}
    judge_shapes = {w.shape for w in judge.get_weights() if w.ndim >= 2}
    auxiliary_shapes = {w.shape for w in auxiliary.get_weights() if w.ndim >= 2}
    assert not judge_shapes & auxiliary_shapes  # no kernel of the same shape


def _write_examples(path, faces, male, identity):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for face, is_male, person in zip(faces, male, identity):
            png = tf.io.encode_png(tf.image.grayscale_to_rgb(tf.constant((face * 255).astype(np.uint8)))).numpy()
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                       "male": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(is_male)])),
                       "identity": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(person)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_adaptive_attacker_trains_on_the_sanitized_train_split_only(tmp_path):
    size = 32
    model_dir = export_small_model(tmp_path / "model" / "1", size=size)
    rng = np.random.default_rng(0)
    train = rng.random((10, size, size, 1)).astype(np.float32)
    test = rng.random((6, size, size, 1)).astype(np.float32)
    (tmp_path / "Split-train").mkdir()
    (tmp_path / "Split-test").mkdir()
    _write_examples(tmp_path / "Split-train" / "data.gz", train, [0, 1] * 5, range(10))
    _write_examples(tmp_path / "Split-test" / "data.gz", test, [1] * 6, range(100, 106))
    model = tf.saved_model.load(model_dir)
    faces, male, identity, labels = sanitized_training_faces(model, [str(tmp_path / "Split-train" / "*")], size,
                                                     max_faces=100)
    assert faces.shape == (10, size, size, 1) and faces.dtype == np.uint8 and labels == {}
    assert male.tolist() == [0, 1] * 5  # the train split's true genders, nothing of the test split
    assert identity.tolist() == list(range(10))
    decoded = (np.rint(train * 255) / 255).astype(np.float32)  # what the PNG round trip gives
    expected = model.signatures["sanitize_faces"](faces=tf.constant(decoded))["sanitized"].numpy()
    np.testing.assert_allclose(faces / 255.0, expected, atol=1 / 255 + 1e-6)  # the sanitizer's output...
    assert np.abs(faces / 255.0 - decoded).mean() > 0.02  # ...not the original faces


def test_a_matcher_fine_tuned_from_a_network_starts_from_its_weights_and_leaves_it_alone():
    """The adaptive matcher of de-identification is fine-tuned from the CNN matcher judge: after a
    few steps it is still near that network's weights, far from a network trained from scratch,
    and the judge's own network is not changed."""
    faces, _, identity = _faces(10, 4, seed=21)
    start = build_residual_matcher_cnn(SIZE, seed=9)
    before = [w.copy() for w in start.get_weights()]
    tuned = train_matcher_cnn(faces, identity, SIZE, epochs=1, seed=5, batch_size=32, start=start)
    scratch = train_matcher_cnn(faces, identity, SIZE, epochs=1, seed=5, batch_size=32)
    for kept, now in zip(before, start.get_weights()):
        np.testing.assert_array_equal(kept, now)

    def distance(model):
        return np.mean([np.abs(a - b).mean() for a, b in zip(model.get_weights(), before) if a.ndim == 4])

    assert distance(tuned) < 0.2 * distance(scratch)
