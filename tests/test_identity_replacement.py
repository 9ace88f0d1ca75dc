"""k-Same identity replacement (trainer/identity_replacement.py) and the sanitizer that uses it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import TrainingConfig
from trainer.identity_replacement import IdentityReplacement, fit_identity_replacement, group_index
from trainer.models import ReplacingSanitizer, build_attribute_classifier, build_gender_classifier, policy_copy
from trainer.policy import PrivacyPolicy
from trainer.san import sanitizer_of

DEIDENTIFY = PrivacyPolicy.from_arguments("deidentify")


def two_pixel_people():
    """2x2 faces of 6 people, 2 photos each: people differ in pixel 0 only (their value v), photos
    of one person in pixel 3 only (+-0.1); pixels 1 and 2 are constant. One attribute: v >= 0.5."""
    values = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    faces, people, labels = [], [], []
    for person, value in enumerate(values):
        for photo in (-0.1, 0.1):
            faces.append([[value, 0.5], [0.5, 0.5 + photo]])
            people.append(person)
            labels.append([int(value >= 0.5)])
    return np.array(faces, np.float32)[..., None], np.array(people), np.array(labels), values


def test_group_index_reads_the_labels_as_bits():
    assert group_index(np.array([[0, 0], [1, 0], [0, 1], [1, 1]])).tolist() == [0, 1, 2, 3]
    assert group_index(np.zeros((3, 0))).tolist() == [0, 0, 0]


def test_the_identity_subspace_is_the_people_direction_and_donors_are_means_of_k_people():
    faces, people, labels, values = two_pixel_people()
    statistics = fit_identity_replacement(faces, people, labels, components=2, k_same=3, donors_per_group=4, seed=0)
    mean = faces.reshape(len(faces), -1).mean(axis=0)
    np.testing.assert_allclose(statistics.mean, mean, atol=1e-6)
    # One direction separates the people: pixel 0 (sign free); the second is past their rank: zero.
    np.testing.assert_allclose(np.abs(statistics.basis[0]), [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(statistics.basis[1], 0, atol=1e-6)
    # Each group's prototype is its faces' mean; with 3 people a group, every donor is the mean of
    # all three (k_same=3): the group's mean value along pixel 0, minus the overall mean.
    for group, members in ((0, values[:3]), (1, values[3:])):
        np.testing.assert_allclose(statistics.prototypes[group],
                                   faces[labels[:, 0] == group].reshape(-1, 4).mean(axis=0), atol=1e-6)
        expected = (members.mean() - values.mean()) * statistics.basis[0, 0]
        np.testing.assert_allclose(statistics.donors[group, :, 0], expected, atol=1e-6)
    assert statistics.fallbacks == []


def test_replacement_swaps_the_identity_coordinate_and_keeps_the_photo():
    """shrink 1: pixel 0 becomes the donor group's mean value, pixel 3 (the photo) is kept as it was."""
    faces, people, labels, values = two_pixel_people()
    statistics = fit_identity_replacement(faces, people, labels, components=2, k_same=3, donors_per_group=4)
    layer = IdentityReplacement(2, components=2, attributes=1, donors_per_group=4, shrink=1.0)
    layer.install(statistics)
    out = layer(tf.constant(faces), tf.constant(labels[:, 0]), tf.zeros(len(faces), tf.int32)).numpy()
    group_mean = np.where(labels[:, 0] == 1, values[3:].mean(), values[:3].mean())
    np.testing.assert_allclose(out[:, 0, 0, 0], group_mean, atol=1e-6)
    np.testing.assert_allclose(out[:, 1, 1, 0], faces[:, 1, 1, 0], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1, 0], 0.5, atol=1e-6)
    # shrink 0: every face is its group's mean face.
    layer0 = IdentityReplacement(2, components=2, attributes=1, donors_per_group=4, shrink=0.0)
    layer0.install(statistics)
    out0 = layer0(tf.constant(faces), tf.constant(labels[:, 0]), tf.zeros(len(faces), tf.int32)).numpy()
    np.testing.assert_allclose(out0.reshape(len(faces), -1), statistics.prototypes[labels[:, 0]], atol=1e-6)
    # shrink 0.5 by hand for the first face: prototype + 0.5 (swapped - prototype).
    half = IdentityReplacement(2, components=2, attributes=1, donors_per_group=4, shrink=0.5)
    half.install(statistics)
    first = half(tf.constant(faces[:1]), tf.constant(labels[:1, 0]), tf.zeros(1, tf.int32)).numpy().ravel()
    prototype = statistics.prototypes[0]
    np.testing.assert_allclose(first, prototype + 0.5 * (out[0].ravel() - prototype), atol=1e-6)


def test_an_uninstalled_replacement_changes_nothing():
    layer = IdentityReplacement(4, components=3, attributes=2, donors_per_group=2, shrink=0.4)
    faces = tf.random.uniform([3, 4, 4, 1], seed=1)
    np.testing.assert_allclose(layer(faces, tf.constant([0, 1, 3])).numpy(), faces.numpy(), atol=1e-7)


def test_a_sparse_group_falls_back_to_the_overall_mean_and_everyone_as_donors():
    faces, people, labels, _ = two_pixel_people()
    labels = np.concatenate([labels, (people == 0)[:, None].astype(int)], axis=1)  # attribute 2: person 0 only
    statistics = fit_identity_replacement(faces, people, labels, components=2, k_same=3, donors_per_group=2)
    mean = faces.reshape(len(faces), -1).mean(axis=0)
    # group 0 (persons 1, 2), group 2 (attribute 2 alone: person 0) and group 3 (nobody) have fewer
    # than 3 people: they fall back; group 1 (persons 3, 4, 5) keeps its own mean face.
    assert [line.split(":")[0] for line in statistics.fallbacks] == ["group 0", "group 2", "group 3"]
    assert "group 2: faces of 1 people" in statistics.fallbacks[1]
    for group in (0, 2, 3):
        np.testing.assert_allclose(statistics.prototypes[group], mean, atol=1e-6)
    np.testing.assert_allclose(statistics.prototypes[1], faces[labels[:, 0] == 1].reshape(-1, 4).mean(axis=0),
                               atol=1e-6)


def test_k_same_below_two_and_too_few_people_are_refused():
    faces, people, labels, _ = two_pixel_people()
    with pytest.raises(ValueError, match="at least 2 people"):
        fit_identity_replacement(faces, people, labels, components=2, k_same=1, donors_per_group=2)
    with pytest.raises(ValueError, match="at least k_same=7 people, got 6"):
        fit_identity_replacement(faces, people, labels, components=2, k_same=7, donors_per_group=2)
    with pytest.raises(ValueError, match="shrink"):
        IdentityReplacement(2, components=2, attributes=1, donors_per_group=2, shrink=1.5)


def test_serving_donors_follow_the_face_training_donors_are_drawn():
    layer = IdentityReplacement(8, components=2, attributes=0, donors_per_group=64, shrink=1.0)
    faces = tf.random.uniform([32, 8, 8, 1], seed=3)
    served = layer.donor_choice(faces, training=None).numpy()
    np.testing.assert_array_equal(served, layer.donor_choice(faces, training=None).numpy())
    assert len(set(served.tolist())) > 8  # 32 faces spread over the 64 donors
    assert served.min() >= 0 and served.max() < 64
    drawn = [layer.donor_choice(faces, training=True).numpy() for _ in range(2)]
    assert (drawn[0] != drawn[1]).any()


def small_config(**changes) -> TrainingConfig:
    return dataclasses.replace(TrainingConfig(policy=DEIDENTIFY, replacement_components=8, replacement_donors=4),
                               **changes)


def test_the_configuration_says_when_identity_is_replaced():
    arguments = small_config().replacement_arguments()
    assert arguments == {"group_attributes": ("Smiling", "Eyeglasses", "Male", "Young"),
                         "reader_attributes": ("Smiling", "Eyeglasses", "Young"), "components": 8,
                         "donors_per_group": 4, "shrink": 0.4}
    assert small_config().output_is_replacement() and not small_config(replacement_editor=True).output_is_replacement()
    # A policy that also hides an attribute needs the editor's target terms: its editor is trained.
    both = small_config(policy=PrivacyPolicy(("identity", "Male"), ("Smiling",)))
    assert both.replacement_arguments()["group_attributes"] == ("Smiling",) and not both.output_is_replacement()
    assert small_config(identity_replacement="none").replacement_arguments() is None
    assert TrainingConfig().replacement_arguments() is None  # gender: identity kept
    assert TrainingConfig(policy=PrivacyPolicy.from_arguments("obfuscate")).replacement_arguments() is None
    assert not isinstance(sanitizer_of(small_config(identity_replacement="none")), ReplacingSanitizer)
    for bad, message in (({"identity_replacement": "swap"}, "unknown identity replacement 'swap'"),
                         ({"replacement_k": 1}, "at least 2 people"), ({"replacement_shrink": -0.1}, r"\[0, 1\]")):
        with pytest.raises(ValueError, match=message):
            small_config(**bad)
    many = PrivacyPolicy(("identity",), ("Smiling", "Eyeglasses", "Male", "Young", "Bangs", "Bald", "Goatee"))
    with pytest.raises(ValueError, match="at most 6"):
        TrainingConfig(policy=many)


def installed_sanitizer(config: TrainingConfig, seed: int = 0):
    san = sanitizer_of(config)
    arguments = config.replacement_arguments()
    rng = np.random.default_rng(seed)
    faces = rng.random((40, 64, 64, 1)).astype(np.float32)
    labels = rng.integers(0, 2, (40, len(arguments["group_attributes"])))
    statistics = fit_identity_replacement(faces, np.repeat(np.arange(10), 4), labels, 8, 2, 4, seed)
    tf.keras.utils.set_random_seed(seed)
    san.install(statistics, build_gender_classifier(64), build_attribute_classifier(64, arguments["reader_attributes"]))
    return san, faces


def test_the_replacing_sanitizer_trains_its_editor_only_and_copies_exactly():
    config = small_config()
    san, faces = installed_sanitizer(config)
    assert isinstance(san, ReplacingSanitizer)
    editor = {id(variable) for variable in san.editor.trainable_variables}
    assert editor and {id(variable) for variable in san.trainable_variables} == editor
    x, target = tf.constant(faces[:6]), tf.zeros([6, 1])
    out = san.sanitized_only(x, None, target).numpy()
    np.testing.assert_array_equal(out, san.sanitized_only(x, None, target).numpy())  # same face, same output
    assert np.abs(out - faces[:6]).mean() > 0.05  # the replacement changed the faces
    # The editor starts as the identity map: the output is the replaced face.
    np.testing.assert_allclose(out, san.replace(x).numpy(), atol=1e-6)
    # The float32 copy the trainer exports (policy_copy) holds the statistics and the readers.
    copy = policy_copy(lambda: sanitizer_of(config), san, "float32")
    np.testing.assert_allclose(copy.sanitized_only(x, None, target).numpy(), out, atol=1e-6)


def test_the_readers_must_be_given_and_match_the_groups():
    san = sanitizer_of(small_config())
    faces = np.random.default_rng(0).random((8, 64, 64, 1)).astype(np.float32)
    statistics = fit_identity_replacement(faces, np.repeat(np.arange(4), 2), np.zeros((8, 4), int), 8, 2, 4)
    with pytest.raises(ValueError, match="gender classifier"):
        san.install(statistics)
    with pytest.raises(ValueError, match="does not read"):
        ReplacingSanitizer(64, group_attributes=("Smiling",), reader_attributes=("Young",))
    with pytest.raises(ValueError, match="donors has shape"):
        sanitizer_of(small_config(replacement_donors=5)).install(statistics, build_gender_classifier(64),
                                                                 build_attribute_classifier(64, ("Smiling", "Eyeglasses", "Young")))


def test_the_bfloat16_copy_replaces_in_float32_and_agrees_with_the_float32_model():
    """The exported bfloat16 signatures (reduced_precision_copy): the replacement layer keeps float32
    (D-long dot products), the readers compute in bfloat16; a face whose group a reader reads on the
    other side of 0.5 may differ, the rest agree closely."""
    from trainer.models import reduced_precision_copy

    config = small_config()
    san, faces = installed_sanitizer(config)
    reduced = reduced_precision_copy(lambda: sanitizer_of(config), san, "bfloat16")
    assert reduced.replacement.compute_dtype == "float32" and reduced.gender_reader.compute_dtype == "bfloat16"
    x, target = tf.constant(faces[:16]), tf.zeros([16, 1])
    full = san.sanitized_only(x, None, target).numpy()
    low = tf.cast(reduced.sanitized_only(x, None, target), tf.float32).numpy()
    per_face = np.abs(full - low).reshape(16, -1).mean(axis=1)
    assert (per_face < 0.02).mean() >= 0.75, per_face


def test_the_statistics_do_not_depend_on_how_the_faces_are_batched_or_ordered():
    from trainer.identity_replacement import fit_identity_replacement_from_batches

    rng = np.random.default_rng(4)
    faces = rng.random((30, 4, 4, 1)).astype(np.float32)
    people, labels = np.repeat(np.arange(10) * 7, 3), rng.integers(0, 2, (30, 1))
    whole = fit_identity_replacement(faces, people, labels, components=6, k_same=3, donors_per_group=5, seed=2)
    shuffled = rng.permutation(30)
    parts = [(faces[rows], people[rows], labels[rows]) for rows in np.array_split(shuffled, 4)]
    streamed = fit_identity_replacement_from_batches(parts, components=6, k_same=3, donors_per_group=5, seed=2)
    for name in ("mean", "prototypes"):
        np.testing.assert_allclose(getattr(streamed, name), getattr(whole, name), atol=1e-5)
    # The subspace and the donors up to each direction's sign.
    np.testing.assert_allclose(np.abs(streamed.basis @ whole.basis.T), np.eye(6), atol=1e-4)
    signs = np.sign(np.diag(streamed.basis @ whole.basis.T))
    np.testing.assert_allclose(streamed.donors * signs, whole.donors, atol=1e-4)
    # Beyond max_people the subspace comes from a subset: fewer directions than people.
    subset = fit_identity_replacement(faces, people, labels, components=9, k_same=3, donors_per_group=2,
                                      max_people=4)
    assert np.linalg.matrix_rank(subset.basis, tol=1e-6) == 4


def test_a_replacing_sanitizer_without_its_statistics_is_not_exported():
    """Uninstalled, the replacement is the identity map: exporting it would serve faces unchanged
    under a policy that promises to hide the person."""
    from trainer.export import SanitizerModule

    config = small_config()
    prototypes = {name: tf.zeros((64, 64, 3)) for name in ("male", "female", "neutral")}
    with pytest.raises(ValueError, match="no statistics installed"):
        SanitizerModule(sanitizer_of(config), build_gender_classifier(64), prototypes, 64)
    san, _ = installed_sanitizer(config)
    SanitizerModule(san, san.gender_reader, prototypes, 64)  # installed: exported


def test_the_exported_module_holds_one_gender_classifier_the_sanitizers_reader():
    """The replacing sanitizer's frozen gender reader is the trained classifier: the export serves it
    as the model's classifier (one copy of the weights per precision, not two), and refuses a
    classifier that differs from it."""
    from trainer.export import SanitizerModule
    from trainer.models import reduced_precision_networks

    config = small_config()
    prototypes = {name: tf.zeros((64, 64, 3)) for name in ("male", "female", "neutral")}
    san, faces = installed_sanitizer(config)
    classifier = build_gender_classifier(64)
    classifier.set_weights(san.gender_reader.get_weights())
    expected = classifier(tf.constant(faces[:4]), training=False)[:, 1].numpy()
    reduced = reduced_precision_networks(lambda: sanitizer_of(config), san, classifier, 64, ("bfloat16",))
    module = SanitizerModule(san, classifier, prototypes, 64, reduced)
    assert module.classifier is san.gender_reader
    for precision, networks in module.networks.items():
        assert networks.classifier is networks.san.gender_reader, precision
    np.testing.assert_allclose(module.classify_gender(tf.constant(faces[:4]))["male_probability"].numpy(), expected,
                               atol=1e-6)
    other = build_gender_classifier(64)  # another initialisation: not the reader's weights
    with pytest.raises(ValueError, match="gender reader differs"):
        SanitizerModule(san, other, prototypes, 64)


def test_sanitize_faces_reads_gender_once_and_serves_what_sanitize_only_serves():
    """The replacing sanitizer groups faces by its gender reader, which is also the model's
    classifier: sanitize_faces reports the classifier's reading and hands it to the replacement,
    so its graph runs the reader's convolutions once (as many as sanitize_only's, which reads
    gender only inside the replacement), and the sanitized faces are sanitize_only's."""
    from trainer.export import SanitizerModule

    config = small_config()
    prototypes = {name: tf.zeros((64, 64, 3)) for name in ("male", "female", "neutral")}
    san, faces = installed_sanitizer(config)
    module = SanitizerModule(san, san.gender_reader, prototypes, 64)

    def convolutions(function):
        return sum(op.type == "Conv2D" for op in function.get_concrete_function().graph.get_operations())

    reader = convolutions(module.classify_gender)
    assert reader > 0
    assert convolutions(module.sanitize_faces) == convolutions(module.sanitize_only)
    assert convolutions(module.sanitize_labelled_faces) == convolutions(module.sanitize_only)
    batch = tf.constant(faces[:6])
    served = module.sanitize_faces(batch)
    np.testing.assert_allclose(served["sanitized"].numpy(), module.sanitize_only(batch)["sanitized"].numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(served["male_probability"].numpy(),
                               module.classify_gender(batch)["male_probability"].numpy(), atol=1e-6)
    for name in ("same", "neutral", "opposite"):  # gender is kept: no gender target to move
        np.testing.assert_array_equal(served[name].numpy(), served["sanitized"].numpy())
