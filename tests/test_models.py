import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import features, losses
from pipelines.config import TrainingConfig
from trainer.models import (
    ResidualSanitizer, SemiAdversarialNetwork, build_face_matcher, build_gender_classifier, build_san_autoencoder,
    prototypes_for_labels,
)
from trainer.export import hashed_targets
from trainer.gender_classifier import train_ensemble_members
from trainer.san import LossSchedule, build_san_trainer


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


def _tiny_trainer(size=32, with_matcher=True, architecture="paper"):
    tf.keras.utils.set_random_seed(0)
    classifier = build_gender_classifier(size, dropout=0.5)
    classifier.trainable = False
    matcher = build_face_matcher(size, embedding_dim=16)
    matcher.trainable = False
    prototypes = {"male": tf.fill((size, size, 3), 0.7), "female": tf.fill((size, size, 3), 0.3),
                  "neutral": tf.fill((size, size, 3), 0.5)}
    config = TrainingConfig(architecture=architecture, image_size=size, pretrain_epochs=1, matcher_start_epoch=1)
    batch = {features.FACE_GRAY_KEY: tf.random.uniform((4, size, size, 1), seed=2),
             features.LABEL_KEY: tf.constant([0, 1, 1, 0], tf.int64)}
    dataset = tf.data.Dataset.from_tensors(batch)
    ensemble = train_ensemble_members(dataset, size, seed=0) if architecture == "residual" else None
    trainer, terms = build_san_trainer(
        config, prototypes, classifier, (lambda faces: matcher(faces, training=False)) if with_matcher else None,
        ensemble)
    return trainer, terms, classifier, matcher, config, dataset


def test_training_step_changes_san_but_not_the_frozen_networks():
    trainer, terms, classifier, matcher, config, dataset = _tiny_trainer()
    frozen_before = [w.copy() for w in classifier.get_weights() + matcher.get_weights()]
    san_before = [w.copy() for w in trainer.san.get_weights()]
    history = trainer.fit(dataset, epochs=2, verbose=0, callbacks=[LossSchedule(terms, config)])
    assert set(history.history) >= {"loss", "reconstruction", "gender_same", "gender_opposite", "matcher"}
    # Epoch 0 is pre-training (adversarial terms off), epoch 1 adds J_G and J_M.
    assert history.history["gender_opposite"][0] == 0.0 and history.history["gender_opposite"][1] > 0
    assert history.history["matcher"][0] == 0.0 and history.history["matcher"][1] > 0
    for old, new in zip(frozen_before, classifier.get_weights() + matcher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(old, new) for old, new in zip(san_before, trainer.san.get_weights()))


def test_residual_training_step_draws_targets_and_keeps_every_auxiliary_network_frozen():
    trainer, terms, classifier, matcher, config, dataset = _tiny_trainer(architecture="residual")
    assert isinstance(trainer.san, ResidualSanitizer)
    assert [term.name for term in terms] == ["reconstruction", "gender_target", "gender_target_linear",
                                             "gender_target_mlp", "gender_target_cnn", "matcher"]
    members = [term for term in terms if term.name.startswith("gender_target_")]
    frozen = classifier.get_weights() + matcher.get_weights()
    frozen_before = [w.copy() for w in frozen]
    san_before = [w.copy() for w in trainer.san.get_weights()]
    history = trainer.fit(dataset, epochs=2, verbose=0, callbacks=[LossSchedule(terms, config)])
    assert history.history["gender_target"][0] == 0.0 and history.history["gender_target"][1] > 0  # pre-training
    assert all(history.history[term.name][1] > 0 for term in members)
    for old, new in zip(frozen_before, classifier.get_weights() + matcher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(old, new) for old, new in zip(san_before, trainer.san.get_weights()))


def test_untrained_residual_sanitizer_returns_the_face_and_outputs_follow_the_target():
    tf.keras.utils.set_random_seed(0)
    san = ResidualSanitizer(32)
    faces = tf.random.uniform((2, 32, 32, 1), seed=5)
    outputs = san.sanitizer_outputs(faces, tf.constant([0, 1]), tf.constant([1.0, 0.0]))
    assert set(outputs) == {"same", "neutral", "opposite", "sanitized"}
    for value in outputs.values():  # the change layer starts at zero
        np.testing.assert_array_equal(value.numpy(), faces.numpy())
    change = san.editor.get_layer("change")
    change.set_weights([np.full_like(w, 0.05) for w in change.get_weights()])
    outputs = san.sanitizer_outputs(faces, tf.constant([0, 1]), tf.constant([1.0, 0.0]))
    # sanitized = the output for the given target: face 0 wants male (= its opposite), face 1 female.
    np.testing.assert_allclose(outputs["sanitized"].numpy(), outputs["opposite"].numpy(), atol=1e-6)
    assert np.abs(outputs["same"].numpy() - outputs["opposite"].numpy()).max() > 1e-3
    assert float(tf.reduce_max(tf.abs(outputs["sanitized"] - faces))) <= san.max_change + 1e-6


def test_hashed_targets_are_reproducible_balanced_and_blind_to_the_gender():
    rng = np.random.default_rng(0)
    # Faces whose brightness carries the "gender": a target that read appearance would follow it.
    male = rng.integers(0, 2, 600)
    faces = np.clip(rng.normal(0.35 + 0.3 * male[:, None, None, None], 0.15, (600, 32, 32, 1)), 0, 1).astype("float32")
    targets = hashed_targets(tf.constant(faces)).numpy()
    np.testing.assert_array_equal(targets, hashed_targets(tf.constant(faces)).numpy())
    assert set(np.unique(targets)) == {0.0, 1.0}
    assert 0.42 < targets.mean() < 0.58
    for gender in (0, 1):  # about half of each gender gets each target
        assert 0.38 < targets[male == gender].mean() < 0.62


def test_loss_schedule_follows_the_config():
    trainer, terms, *_ = _tiny_trainer()
    schedule = LossSchedule(terms, TrainingConfig(pretrain_epochs=2, matcher_start_epoch=4,
                                                  gender_loss_weight=1.0, matcher_loss_weight=8.0,
                                                  reconstruction_loss_weight=10.0))
    assert schedule.weights_for_epoch(0) == {"reconstruction": 10.0, "gender_same": 0.0, "gender_opposite": 0.0,
                                             "matcher": 0.0}
    assert schedule.weights_for_epoch(2)["gender_opposite"] == 1.0 and schedule.weights_for_epoch(3)["matcher"] == 0.0
    assert schedule.weights_for_epoch(4)["matcher"] == 8.0


def test_matcher_embeddings_are_unit_length():
    matcher = build_face_matcher(32, embedding_dim=16)
    embedding = matcher(tf.random.uniform((3, 32, 32, 1), seed=3)).numpy()
    assert embedding.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    assert float(losses.embedding_distance(embedding, embedding)) == 0.0
    assert float(losses.embedding_distance(embedding, -embedding)) == pytest.approx(4.0, abs=1e-4)


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


class _Preempted(Exception):
    pass


def test_preempted_san_training_resumes_from_its_checkpoint(tmp_path):
    from types import SimpleNamespace

    from trainer.san import checkpoint_dir

    config = TrainingConfig(image_size=32)
    fn_args = SimpleNamespace(custom_config={"checkpoint_root": str(tmp_path)}, train_files=["a/*"],
                              transform_output="t", base_model="c", model_run_dir=str(tmp_path / "run1"))
    backup = checkpoint_dir(fn_args, config, "m")
    assert backup == checkpoint_dir(SimpleNamespace(**{**vars(fn_args), "model_run_dir": "run2"}), config, "m")
    assert backup != checkpoint_dir(fn_args, TrainingConfig(image_size=32, san_epochs=9), "m")
    assert backup != checkpoint_dir(fn_args, config, "another matcher")

    class PreemptAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _Preempted()

    trainer, terms, _, _, config, dataset = _tiny_trainer()
    with pytest.raises(_Preempted):
        trainer.fit(dataset, epochs=4, verbose=0,
                    callbacks=[LossSchedule(terms, config), keras.callbacks.BackupAndRestore(backup),
                               PreemptAfterEpoch()])
    trainer, terms, _, _, config, dataset = _tiny_trainer()
    epochs_run = []
    trainer.fit(dataset, epochs=4, verbose=0,
                callbacks=[keras.callbacks.BackupAndRestore(backup), LossSchedule(terms, config),
                           keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs_run.append(epoch))])
    assert epochs_run == [2, 3]


def test_an_imported_matcher_savedmodel_is_used_through_its_serving_signature(tmp_path):
    from trainer.san import load_frozen_matcher

    class MeanPoolMatcher(tf.Module):
        """Not Keras: a plain SavedModel mapping gray faces to a 4-d embedding, as a user might bring."""

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32)])
        def embed(self, faces):
            pooled = tf.nn.avg_pool2d(faces, 16, 16, "VALID")
            return {"embedding": tf.reshape(pooled, [-1, 4])}

    module = MeanPoolMatcher()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.embed})
    matcher = load_frozen_matcher(str(tmp_path))
    faces = tf.random.uniform((2, 32, 32, 1), seed=4)
    expected = faces.numpy().reshape(2, 2, 16, 2, 16).mean(axis=(2, 4)).reshape(2, 4)
    np.testing.assert_allclose(matcher(faces).numpy(), expected, atol=1e-6)


def test_residual_sanitizer_trains_in_bfloat16_against_frozen_copies_and_exports_in_float32(tmp_path):
    """trainer.san under training_precision mixed_bfloat16: the frozen networks compute in bfloat16
    through copies (their weights untouched), the sanitizer's variables stay float32, and the float32
    copy that is exported holds exactly the trained weights."""
    from trainer.models import build_sanitizer, computing_in, keras_policy, policy_copy
    from trainer.san import load_frozen_matcher

    size = 32
    tf.keras.utils.set_random_seed(0)
    classifier = build_gender_classifier(size)
    classifier.trainable = False
    matcher = build_face_matcher(size, embedding_dim=16)
    matcher.save(str(tmp_path / "matcher"), save_format="tf", include_optimizer=False)
    batch = {features.FACE_GRAY_KEY: tf.random.uniform((4, size, size, 1), seed=2),
             features.LABEL_KEY: tf.constant([0, 1, 1, 0], tf.int64)}
    dataset = tf.data.Dataset.from_tensors(batch)
    ensemble = train_ensemble_members(dataset, size, seed=0)
    frozen_before = [w.copy() for w in classifier.get_weights()]
    config = TrainingConfig(image_size=size, training_precision="mixed_bfloat16")
    loaded_matcher = load_frozen_matcher(str(tmp_path / "matcher"), "mixed_bfloat16")
    assert loaded_matcher(batch[features.FACE_GRAY_KEY]).dtype == tf.float32
    with keras_policy("mixed_bfloat16"):
        trainer, terms = build_san_trainer(config, {}, computing_in(classifier, "mixed_bfloat16"), loaded_matcher,
                                           {name: computing_in(m, "mixed_bfloat16") for name, m in ensemble.items()})
    assert keras.mixed_precision.global_policy().name == "float32"
    assert trainer.san.editor.layers[-2].dtype_policy.name == "mixed_bfloat16"
    history = trainer.fit(dataset, epochs=2, verbose=0, callbacks=[LossSchedule(terms, config)])
    # The untrained editor returns the face (matcher distance 0); after one step it changes it.
    assert np.isfinite(history.history["loss"]).all() and history.history["matcher"][-1] > 0
    assert all(np.array_equal(a, b) for a, b in zip(frozen_before, classifier.get_weights()))
    assert all(weight.dtype == tf.float32 for weight in trainer.san.weights)

    exported = policy_copy(lambda: build_sanitizer("residual", size), trainer.san, "float32")
    assert {layer.dtype_policy.name for layer in exported.editor.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(trainer.san.get_weights(), exported.get_weights()))
    faces, target = batch[features.FACE_GRAY_KEY], tf.constant([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(exported.edit(faces, target).numpy(),
                               tf.cast(trainer.san.edit(faces, target), tf.float32).numpy(), atol=0.03)


def test_ensemble_cnn_member_learns_gender_and_trains_the_sanitizer_through_a_shifted_view():
    """The strided-CNN ensemble member (TrainingConfig.ensemble_members): trained on the originals
    and frozen, it reads a cue the data carries; the sanitizer gets a loss term through it with the
    ensemble weight."""
    size, rng = 32, np.random.default_rng(0)
    male = np.tile([0, 1], 48)
    faces = rng.uniform(0.2, 0.4, (96, size, size, 1)).astype(np.float32)
    faces[male == 1, : size // 2] += 0.4  # male faces: bright upper half (flip- and shift-proof)
    dataset = tf.data.Dataset.from_tensor_slices({features.FACE_GRAY_KEY: faces, features.LABEL_KEY: male}).batch(16)
    ensemble = train_ensemble_members(dataset, size, seed=0, members=("linear", "cnn"))
    assert list(ensemble) == ["linear", "cnn"] and not ensemble["cnn"].trainable
    assert ensemble["cnn"].name == "strided_cnn_gender"
    read = ensemble["cnn"](faces, training=False).numpy()[:, 0]
    assert read.shape == (96,) and ((read >= 0.5) == male).mean() >= 0.9
    config = TrainingConfig(image_size=size, ensemble_members=("linear", "cnn"), ensemble_loss_weight=2.0)
    classifier = build_gender_classifier(size)
    classifier.trainable = False
    trainer, terms = build_san_trainer(config, {}, classifier, None, ensemble)
    weights = LossSchedule(terms, config).weights_for_epoch(0)
    assert weights["gender_target_cnn"] == 2.0 and weights["gender_target_linear"] == 2.0
    history = trainer.fit(dataset, epochs=1, verbose=0, callbacks=[LossSchedule(terms, config)])
    assert history.history["gender_target_cnn"][-1] > 0
    with pytest.raises(ValueError, match="unknown ensemble member.*'resnet'.*linear, mlp, cnn"):
        train_ensemble_members(dataset, size, seed=0, members=("linear", "resnet"))


def test_ensemble_members_survive_the_custom_config_round_trip():
    import json
    config = TrainingConfig(ensemble_members=("linear", "mlp", "cnn"), attribute_ensemble_members=("cnn",))
    again = TrainingConfig.from_custom_config(json.loads(json.dumps(config.to_custom_config())))
    assert again.ensemble_members == ("linear", "mlp", "cnn") and again.attribute_ensemble_members == ("cnn",)
    assert again == config
    # An unknown member is refused when the configuration is made, before any training.
    with pytest.raises(ValueError, match="'resnet' in TrainingConfig.attribute_ensemble_members: choose from linear"):
        TrainingConfig(attribute_ensemble_members=("linear", "resnet"))
    with pytest.raises(ValueError, match="'svm' in TrainingConfig.ensemble_members"):
        TrainingConfig(ensemble_members=("svm",))
