"""Training for any privacy policy (residual sanitizer): one target per suppressed attribute, terms
that hide or keep each attribute against frozen auxiliary classifiers, the export's targets."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import features, losses
from trainer.config import TrainingConfig
from trainer.export import hashed_targets
from trainer.gender_classifier import train_attribute_classifier, train_ensemble_members
from trainer.models import ResidualSanitizer, build_attribute_classifier, build_face_matcher, build_gender_classifier
from trainer.models import build_sanitizer
from trainer.policy import PrivacyPolicy
from trainer.san import LossSchedule, build_san_trainer

SIZE = 32
GENDER_AGE = PrivacyPolicy(("Male", "Young"), ("identity", "Smiling"))
AGE = PrivacyPolicy(("Young",), ("identity", "Male"))
DEIDENTIFY = PrivacyPolicy.from_arguments("deidentify")


def _batch():
    return {features.FACE_GRAY_KEY: tf.random.uniform((4, SIZE, SIZE, 1), seed=2),
            features.LABEL_KEY: tf.constant([0, 1, 1, 0], tf.int64),
            features.attribute_feature_name("Young"): tf.constant([1, 1, 0, 0], tf.int64),
            features.attribute_feature_name("Smiling"): tf.constant([0, 1, 0, 1], tf.int64),
            features.attribute_feature_name("Eyeglasses"): tf.constant([0, 0, 1, 0], tf.int64)}


def _trainer(policy: PrivacyPolicy):
    tf.keras.utils.set_random_seed(0)
    classifier = build_gender_classifier(SIZE)
    classifier.trainable = False
    matcher = build_face_matcher(SIZE, embedding_dim=16)
    matcher.trainable = False
    config = TrainingConfig(image_size=SIZE, policy=policy, classifier_epochs=1, pretrain_epochs=1)
    dataset = tf.data.Dataset.from_tensors(_batch())
    ensemble = train_ensemble_members(dataset, SIZE, seed=0) if "Male" in policy.suppress else {}
    attributes = train_attribute_classifier(dataset, config, policy.other_attributes)
    attribute_ensembles = {name: train_ensemble_members(dataset, SIZE, seed=0, members=("linear", "cnn"),
                                                        attribute=name) for name in policy.other_suppressed}
    trainer, terms = build_san_trainer(config, {}, classifier, lambda faces: matcher(faces, training=False),
                                       ensemble, attributes, attribute_ensembles=attribute_ensembles)
    members = [member for group in attribute_ensembles.values() for member in group.values()]
    return trainer, terms, config, dataset, [classifier, matcher, attributes, *ensemble.values(), *members]


def test_hashed_targets_give_one_independent_bit_per_attribute():
    faces = tf.random.uniform((400, SIZE, SIZE, 1), seed=1)
    one, three = hashed_targets(faces).numpy(), hashed_targets(faces, 3).numpy()
    assert one.shape == (400,) and three.shape == (400, 3)
    np.testing.assert_array_equal(three[:, 0], one)  # gender alone keeps the bit it always had
    np.testing.assert_array_equal(three, hashed_targets(faces, 3).numpy())  # reproducible per face
    assert all(0.4 < three[:, k].mean() < 0.6 for k in range(3))
    assert abs(np.corrcoef(three[:, 0], three[:, 1])[0, 1]) < 0.15  # the attributes' targets are unrelated
    with pytest.raises(ValueError, match="1 to 8 targets"):
        hashed_targets(faces, 9)


def test_the_sanitizer_gets_one_target_per_suppressed_attribute():
    san = build_sanitizer("residual", SIZE, suppress=GENDER_AGE.suppress)
    assert (san.targets, san.gender_column) == (2, 0)
    assert san.editor.input[1].shape[-1] == 2  # the editor's target input
    faces = tf.random.uniform((3, SIZE, SIZE, 1), seed=3)
    change = san.editor.get_layer("change")
    change.set_weights([np.full_like(w, 0.05) for w in change.get_weights()])
    targets = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    outputs = san.sanitizer_outputs(faces, tf.constant([0, 1, 1]), targets)
    # X'_SM moves the gender column to the true gender and keeps the age target: face 2 is male with
    # target (1, 1), so its SM output is its sanitized output.
    np.testing.assert_allclose(outputs["same"].numpy()[2], outputs["sanitized"].numpy()[2], atol=1e-6)
    assert np.abs(outputs["same"].numpy()[0] - outputs["sanitized"].numpy()[0]).max() > 1e-4
    age = build_sanitizer("residual", SIZE, suppress=AGE.suppress)
    assert (age.targets, age.gender_column) == (1, None)
    outputs = age.sanitizer_outputs(faces, tf.constant([0, 1, 1]), tf.constant([1.0, 0.0, 1.0]))
    assert all(outputs[name] is outputs["sanitized"] for name in ("same", "neutral", "opposite"))
    with pytest.raises(ValueError, match="hides gender only"):
        build_sanitizer("paper", SIZE, suppress=("Young",))


def test_attribute_classifier_has_one_head_per_attribute():
    model = build_attribute_classifier(SIZE, ("Young", "Smiling"))
    assert model.output_shape == (None, 2)
    assert build_attribute_classifier(SIZE, ("Young",)).output_shape == (None, 1)
    with pytest.raises(ValueError, match="at least one attribute"):
        build_attribute_classifier(SIZE, ())


@pytest.mark.parametrize("policy, names", [
    (GENDER_AGE, ["reconstruction", "gender_target", "gender_target_linear", "gender_target_mlp",
                  "gender_target_cnn", "attribute_target_Young", "attribute_keep_Smiling",
                  "ensemble_target_Young_linear", "ensemble_target_Young_cnn", "matcher"]),
    (AGE, ["reconstruction", "attribute_target_Young", "gender_keep", "ensemble_target_Young_linear",
           "ensemble_target_Young_cnn", "matcher"]),
])
def test_policy_terms_train_the_sanitizer_and_leave_every_auxiliary_network_frozen(policy, names):
    trainer, terms, config, dataset, frozen = _trainer(policy)
    assert [term.name for term in terms] == names
    before = [w.copy() for model in frozen for w in model.get_weights()]
    san_before = [w.copy() for w in trainer.san.get_weights()]
    history = trainer.fit(dataset, epochs=2, verbose=0, callbacks=[LossSchedule(terms, config)])
    for name in names[1:]:  # epoch 0 is reconstruction only; then every term is on
        assert history.history[name][0] == 0.0 and history.history[name][1] > 0, name
    for old, new in zip(before, [w for model in frozen for w in model.get_weights()]):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(old, new) for old, new in zip(san_before, trainer.san.get_weights()))


def test_keep_and_target_terms_are_the_cross_entropy_of_the_frozen_classifier():
    """attribute_keep_Smiling = BCE(classifier's Smiling head on X', true Smiling), by hand."""
    trainer, terms, config, dataset, frozen = _trainer(GENDER_AGE)
    keep = next(term for term in terms if term.name == "attribute_keep_Smiling")
    attributes = frozen[2]
    batch = _batch()
    sanitized = tf.random.uniform((4, SIZE, SIZE, 1), seed=9)
    probability = attributes(sanitized, training=False).numpy()[:, 1]  # heads: (Young, Smiling)
    label = batch[features.attribute_feature_name("Smiling")].numpy()
    expected = -np.mean(label * np.log(np.clip(probability, 1e-7, 1)) + (1 - label) * np.log(np.clip(1 - probability, 1e-7, 1)))
    value = keep.compute({"label/Smiling": batch[features.attribute_feature_name("Smiling")]}, {"sanitized": sanitized})
    assert float(value) == pytest.approx(expected, rel=1e-4)


def test_a_suppressed_attributes_own_ensemble_members_read_it_and_get_target_terms_at_the_ensemble_weight():
    """train_ensemble_members(attribute="Young") fits the Young labels, not gender; the term
    ensemble_target_Young_linear = BCE(member on X', drawn Young target), by hand, weighted like
    the gender members."""
    rng = np.random.default_rng(3)
    young = np.tile([0, 1], 24).astype(np.int64)
    faces = rng.uniform(0.3, 0.5, (48, SIZE, SIZE, 1)).astype(np.float32)
    faces[young == 1, :SIZE // 2] += 0.4  # the young faces are bright at the top
    male = rng.integers(0, 2, 48).astype(np.int64)  # gender unrelated to the cue
    dataset = tf.data.Dataset.from_tensor_slices({features.FACE_GRAY_KEY: faces, features.LABEL_KEY: male,
                                                  features.attribute_feature_name("Young"): young}).batch(16)
    member = train_ensemble_members(dataset, SIZE, seed=0, members=("linear",), attribute="Young")["linear"]
    assert not member.trainable
    assert ((member(faces).numpy()[:, 0] >= 0.5) == young).mean() >= 0.95
    trainer, terms, config, _, frozen = _trainer(GENDER_AGE)
    term = next(term for term in terms if term.name == "ensemble_target_Young_linear")
    linear = frozen[-2]  # (linear, cnn) of Young, after the gender members
    sanitized, target = tf.random.uniform((4, SIZE, SIZE, 1), seed=5), tf.constant([1.0, 0.0, 0.0, 1.0])
    probability = linear(sanitized, training=False).numpy()[:, 0]
    expected = -np.mean(target.numpy() * np.log(probability) + (1 - target.numpy()) * np.log(1 - probability))
    assert float(term.compute({"target/Young": target}, {"sanitized": sanitized})) == pytest.approx(expected, rel=1e-4)
    weights = LossSchedule(terms, config).weights_for_epoch(1)
    assert weights["ensemble_target_Young_cnn"] == weights["gender_target_cnn"] == config.ensemble_loss_weight


def test_a_policy_with_other_attributes_needs_their_classifier():
    config = TrainingConfig(image_size=SIZE, policy=GENDER_AGE)
    with pytest.raises(ValueError, match="needs the auxiliary attribute classifier of Young, Smiling"):
        build_san_trainer(config, {}, build_gender_classifier(SIZE), None, {}, None)


def test_deidentify_trains_against_the_identity_critic_with_a_perceptual_term():
    """--policy deidentify: no matcher-keeping term; the critic's hinge (on after pre-training) and
    the perceptual term (always on) equal their definitions on the frozen networks, by hand."""
    trainer, terms, config, dataset, frozen = _trainer(DEIDENTIFY)
    names = [term.name for term in terms]
    assert names == ["reconstruction", "attribute_keep_Smiling", "attribute_keep_Eyeglasses", "gender_keep",
                     "attribute_keep_Young", "identity_suppress", "perceptual"]
    classifier, matcher = frozen[0], frozen[1]
    batch, sanitized = _batch(), tf.random.uniform((4, SIZE, SIZE, 1), seed=9)
    face = batch[features.FACE_GRAY_KEY]
    critic = next(term for term in terms if term.name == "identity_suppress")
    a, b = matcher(sanitized, training=False).numpy(), matcher(face, training=False).numpy()
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert float(critic.compute({"face": face}, {"sanitized": sanitized})) == pytest.approx(
        np.mean(np.maximum(cosine - config.identity_margin, 0.0)), rel=1e-4)
    perceptual = next(term for term in terms if term.name == "perceptual")
    expected = np.mean([np.mean((keras.Model(classifier.inputs, classifier.get_layer(name).output)(sanitized).numpy()
                                 - keras.Model(classifier.inputs, classifier.get_layer(name).output)(face).numpy())
                                ** 2) for name in ("conv1", "conv2", "conv3")])
    assert float(perceptual.compute({"face": face}, {"sanitized": sanitized})) == pytest.approx(expected, rel=1e-4)
    weights = LossSchedule(terms, config).weights_for_epoch(0)  # pre-training: the critic is off
    assert weights["identity_suppress"] == 0.0 and weights["perceptual"] == config.perceptual_loss_weight
    assert LossSchedule(terms, config).weights_for_epoch(1)["identity_suppress"] == config.identity_suppress_weight
    before = [w.copy() for model in frozen for w in model.get_weights()]
    history = trainer.fit(dataset, epochs=2, verbose=0, callbacks=[LossSchedule(terms, config)])
    assert history.history["identity_suppress"][0] == 0.0 and history.history["identity_suppress"][1] > 0
    for old, new in zip(before, [w for model in frozen for w in model.get_weights()]):
        np.testing.assert_array_equal(old, new)


def test_deidentify_needs_the_identity_critic():
    config = TrainingConfig(image_size=SIZE, policy=DEIDENTIFY)
    attributes = build_attribute_classifier(SIZE, DEIDENTIFY.other_attributes)
    with pytest.raises(ValueError, match="suppresses identity: it needs the frozen identity critic.s. matcher"):
        build_san_trainer(config, {}, build_gender_classifier(SIZE), None, {}, attributes)
    with pytest.raises(ValueError, match="identity critics \\['faces'\\]: choose one or more of matcher, pixels"):
        TrainingConfig(identity_critics=("faces",))


def test_the_pixel_identity_critic_tells_people_apart_and_adds_its_own_hinge():
    """identity_critics=("matcher", "pixels"): the pooled-pixel critic, trained on identity_index,
    separates people whose faces differ in the pooled pixels; the sanitizer gets a hinge per critic."""
    from trainer.matcher import train_pixel_identity_critic

    rng = np.random.default_rng(0)
    people = rng.uniform(0.2, 0.8, (6, SIZE // 4, SIZE // 4, 1)).astype(np.float32)  # one coarse pattern each
    index = np.repeat(np.arange(6), 8)
    faces = np.kron(people[index], np.ones((1, 4, 4, 1), np.float32)) + rng.normal(0, 0.03, (48, SIZE, SIZE, 1))
    dataset = tf.data.Dataset.from_tensor_slices({features.FACE_GRAY_KEY: faces.astype(np.float32),
                                                  features.IDENTITY_INDEX_KEY: index.astype(np.int64)}).batch(16)
    critic = train_pixel_identity_critic(dataset, SIZE, 6, seed=0, epochs=15)
    assert not critic.trainable and critic.output_shape == (None, 64)
    embeddings = critic(faces.astype(np.float32)).numpy()
    nearest = np.argsort(-(embeddings @ embeddings.T), axis=1)[:, 1]  # each face's closest other face
    assert (index[nearest] == index).mean() >= 0.95
    frozen = _trainer(DEIDENTIFY)[-1]
    config = TrainingConfig(image_size=SIZE, policy=DEIDENTIFY, identity_critics=("matcher", "pixels"))
    _, terms = build_san_trainer(config, {}, frozen[0], lambda f: frozen[1](f, training=False), {}, frozen[2],
                                 {"pixels": critic})
    assert [term.name for term in terms][-3:] == ["identity_suppress", "identity_suppress_pixels", "perceptual"]
    assert LossSchedule(terms, config).weights_for_epoch(1)["identity_suppress_pixels"] == config.identity_suppress_weight


OBFUSCATE = PrivacyPolicy.from_arguments("obfuscate")


def test_obfuscate_trains_encryption_and_decryption_with_the_discriminator_on_their_shared_objective():
    """--policy obfuscate (DDM): the terms are |X_r - X| with X_e = G(X, encrypt), X_r = G(X_e,
    decrypt), and D's cross-entropy (-mean log D(X_r) - mean log(1 - D(X_e))) / 2, by hand; training
    moves the sanitizer AND the discriminator, and pulls the two kinds of image apart."""
    from trainer.models import EncryptingSanitizer

    tf.keras.utils.set_random_seed(0)
    config = TrainingConfig(image_size=SIZE, policy=OBFUSCATE)
    classifier = build_gender_classifier(SIZE)
    trainer, terms = build_san_trainer(config, {}, classifier, None)
    assert [term.name for term in terms] == ["reconstruction", "discrepancy"]
    assert isinstance(trainer.san, EncryptingSanitizer) and trainer.discriminator is not None
    batch = _batch()
    face = batch[features.FACE_GRAY_KEY]
    total, values, _, _ = trainer._forward(batch, training=False)
    encrypted = trainer.san.encrypt(face)
    reconstructed = trainer.san.decrypt(encrypted)
    assert np.abs(encrypted.numpy() - face.numpy()).max() > 1e-3  # the change layer starts random
    assert float(values["reconstruction"]) == pytest.approx(np.mean(np.abs(reconstructed.numpy() - face.numpy())),
                                                            rel=1e-5)
    p_r = trainer.discriminator(reconstructed).numpy()[:, 0].astype(np.float64)
    p_e = trainer.discriminator(encrypted).numpy()[:, 0].astype(np.float64)
    assert float(values["discrepancy"]) == pytest.approx((-np.log(p_r).mean() - np.log(1 - p_e).mean()) / 2, rel=1e-5)
    weights = LossSchedule(terms, config).weights_for_epoch(0)
    assert weights == {"reconstruction": config.reconstruction_loss_weight, "discrepancy": config.discrepancy_weight}
    san_before = [w.copy() for w in trainer.san.get_weights()]
    d_before = [w.copy() for w in trainer.discriminator.get_weights()]
    classifier_before = [w.copy() for w in classifier.get_weights()]
    dataset = tf.data.Dataset.from_tensors(batch).repeat(100)  # after a plateau at log 2, D and G part the images
    history = trainer.fit(dataset, epochs=2, verbose=0, callbacks=[LossSchedule(terms, config)])
    assert any(np.abs(a - b).max() > 0 for a, b in zip(san_before, trainer.san.get_weights()))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(d_before, trainer.discriminator.get_weights()))
    for old, new in zip(classifier_before, classifier.get_weights()):  # f_G is not part of DDM
        np.testing.assert_array_equal(old, new)
    # The collaboration pulls encrypted and reconstructed images apart: D tells them apart better than chance.
    assert history.history["discrepancy"][-1] < np.log(2) - 0.05


def test_the_encrypting_sanitizer_encrypts_whatever_target_it_is_given_and_decrypts_in_its_other_mode():
    from trainer.models import EncryptingSanitizer

    tf.keras.utils.set_random_seed(0)
    san = build_sanitizer("residual", SIZE, suppress=OBFUSCATE.suppress, encrypt=True)
    assert isinstance(san, EncryptingSanitizer) and san.targets == 1 and san.gender_column is None
    kernel, bias = san.editor.get_layer("change").get_weights()  # zero-initialised: make it change something
    san.editor.get_layer("change").set_weights([np.random.default_rng(0).normal(0, 0.3, kernel.shape), bias])
    faces = tf.random.uniform((3, SIZE, SIZE, 1), seed=4)
    encrypted = san.encrypt(faces).numpy()
    np.testing.assert_allclose(encrypted, san.edit(faces, tf.ones(3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(san.decrypt(faces).numpy(), san.edit(faces, tf.zeros(3)).numpy(), atol=1e-6)
    for target in (tf.zeros(3), tf.ones(3)):
        np.testing.assert_allclose(san.sanitized_only(faces, None, target).numpy(), encrypted, atol=1e-6)
        outputs = san.sanitizer_outputs(faces, tf.zeros(3, tf.int64), target)
        for name in ("same", "neutral", "opposite", "sanitized"):
            np.testing.assert_allclose(outputs[name].numpy(), encrypted, atol=1e-6)
    assert np.abs(encrypted - san.decrypt(faces).numpy()).max() > 1e-3  # two modes, two images
    with pytest.raises(ValueError, match="needs the residual sanitizer"):
        build_sanitizer("paper", SIZE, encrypt=True)
