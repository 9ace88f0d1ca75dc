"""The exported sanitizer is self-contained: bytes or tensors in, sanitized faces out."""

import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from trainer.export import SanitizerModule, save_sanitizer
from trainer.models import ResidualSanitizer, SemiAdversarialNetwork, build_gender_classifier

SIZE = 32


def _export(tmp_path):
    tf.keras.utils.set_random_seed(0)
    prototypes = {"male": tf.fill((SIZE, SIZE, 3), 0.9), "female": tf.fill((SIZE, SIZE, 3), 0.1),
                  "neutral": tf.fill((SIZE, SIZE, 3), 0.5)}
    module = SanitizerModule(SemiAdversarialNetwork(SIZE), build_gender_classifier(SIZE), prototypes, SIZE)
    path = str(tmp_path / "model")
    save_sanitizer(module, path, metadata={"training_config": {"image_size": SIZE}})
    return path


def test_exported_model_serves_bytes_and_tensors_and_records_itself(tmp_path):
    path = _export(tmp_path)
    model = tf.saved_model.load(path)
    assert set(model.signatures) == {"serving_default", "sanitize_faces", "sanitize_only", "sanitize_labelled_faces",
                                     "classify_gender"}
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 50, 3), dtype=np.uint8)).save(buffer, "JPEG")
    out = model.signatures["serving_default"](image_bytes=tf.constant([buffer.getvalue()] * 2))
    assert out["sanitized"].shape == (2, SIZE, SIZE, 1)  # any input size is resized to the model's
    png = tf.io.decode_png(out["sanitized_png"][0]).numpy()
    np.testing.assert_allclose(png[..., 0] / 255.0, out["sanitized"].numpy()[0, ..., 0], atol=1 / 255 + 1e-6)

    faces = tf.random.uniform((3, SIZE, SIZE, 1), seed=1)
    predicted = model.signatures["sanitize_faces"](faces=faces)
    male = tf.cast(predicted["male_probability"] >= 0.5, tf.int64)
    labelled_same = model.signatures["sanitize_labelled_faces"](faces=faces, male=male)
    np.testing.assert_allclose(labelled_same["sanitized"], predicted["sanitized"], atol=1e-6)
    flipped = model.signatures["sanitize_labelled_faces"](faces=faces, male=1 - male)
    # The given gender, not the prediction, picks the prototypes (encoder input and combiner).
    assert np.abs(flipped["sanitized"].numpy() - predicted["sanitized"].numpy()).max() > 1e-3

    recorded = json.loads(model.metadata_json.numpy().decode())
    assert recorded == json.loads(open(os.path.join(path, "sanitizer_metadata.json")).read())
    assert recorded["image_size"] == SIZE and recorded["training_config"] == {"image_size": SIZE}


def test_the_lean_serving_signature_gives_the_full_signatures_sanitized_output(tmp_path):
    """`sanitize_only` (the bulk job's) computes the paper SAN's OP with the combiner's 1x1
    convolution before the last upsampling, and the residual sanitizer's one edit: the same values."""
    faces = tf.random.uniform((5, SIZE, SIZE, 1), seed=3)
    for name, san in (("paper", SemiAdversarialNetwork(SIZE)), ("residual", ResidualSanitizer(SIZE)),
                      # policy gender-age: one target per suppressed attribute (hashed_targets(faces, 2))
                      ("residual, 2 targets", ResidualSanitizer(SIZE, targets=2, gender_column=0))):
        tf.keras.utils.set_random_seed(0)
        for layer in san.submodules:  # random weights everywhere, so every term of the sum matters
            if isinstance(getattr(layer, "kernel", None), tf.Variable):
                layer.kernel.assign(tf.random.normal(layer.kernel.shape, stddev=0.3, seed=4))
        randomised = [layer.name for layer in san.submodules if isinstance(getattr(layer, "kernel", None), tf.Variable)]
        assert "combiner_conv" in randomised or "change" in randomised, randomised
        prototypes = {"male": tf.random.uniform((SIZE, SIZE, 3), seed=5), "female": tf.random.uniform((SIZE, SIZE, 3), seed=6),
                      "neutral": tf.fill((SIZE, SIZE, 3), 0.5)}
        path = str(tmp_path / name)
        save_sanitizer(SanitizerModule(san, build_gender_classifier(SIZE), prototypes, SIZE), path,
                       metadata={"training_config": {"image_size": SIZE}})
        model = tf.saved_model.load(path)
        full = model.signatures["sanitize_faces"](faces=faces)
        lean = model.signatures["sanitize_only"](faces=faces)
        assert set(lean) == {"sanitized"}
        np.testing.assert_allclose(lean["sanitized"].numpy(), full["sanitized"].numpy(), atol=1e-5, err_msg=name)
        # not a constant: the outputs vary over the faces and the pixels
        assert full["sanitized"].numpy().std() > 1e-3, name


def test_reduced_precision_signatures_compute_the_same_networks_in_bfloat16(tmp_path):
    from trainer.models import build_sanitizer, reduced_precision_networks

    faces = tf.random.uniform((4, SIZE, SIZE, 1), seed=7)
    prototypes = {"male": tf.fill((SIZE, SIZE, 3), 0.9), "female": tf.fill((SIZE, SIZE, 3), 0.1),
                  "neutral": tf.fill((SIZE, SIZE, 3), 0.5)}
    for architecture in ("residual", "paper"):
        tf.keras.utils.set_random_seed(0)
        san, classifier = build_sanitizer(architecture, SIZE), build_gender_classifier(SIZE)
        if architecture == "residual":  # untrained, the editor returns its input: give it a change
            change = san.editor.get_layer("change")
            change.set_weights([np.random.default_rng(1).normal(0, 0.3, w.shape).astype("float32")
                                for w in change.get_weights()])
        reduced = reduced_precision_networks(lambda: build_sanitizer(architecture, SIZE), san, classifier, SIZE,
                                             ("bfloat16",))
        path = str(tmp_path / architecture)
        save_sanitizer(SanitizerModule(san, classifier, prototypes, SIZE, reduced), path,
                       metadata={"training_config": {"image_size": SIZE}})
        model = tf.saved_model.load(path)
        assert {"sanitize_only_bfloat16", "sanitize_faces_bfloat16"} <= set(model.signatures)
        assert json.loads(model.metadata_json.numpy().decode())["precisions"] == ["bfloat16", "float32"]
        full = model.signatures["sanitize_only"](faces=faces)["sanitized"].numpy()
        low = model.signatures["sanitize_only_bfloat16"](faces=faces)["sanitized"].numpy()
        low_full = model.signatures["sanitize_faces_bfloat16"](faces=faces)["sanitized"].numpy()
        assert low.dtype == np.float32
        difference = np.abs(low - full)
        assert 0 < difference.mean() < 0.01 and difference.max() < 0.06, (architecture, difference.max())
        np.testing.assert_allclose(low_full, low, atol=2e-2)


def test_an_obfuscating_sanitizer_exports_its_decryption(tmp_path):
    """Policy obfuscate: `sanitize_only` and `sanitize_faces` give the encrypted face, and the extra
    `decrypt_faces` signature the model's second mode; other sanitizers have no such signature."""
    from trainer.export import DECRYPT_SIGNATURE
    from trainer.models import build_sanitizer

    tf.keras.utils.set_random_seed(0)
    san = build_sanitizer("residual", SIZE, suppress=("identity",), encrypt=True)
    kernel, bias = san.editor.get_layer("change").get_weights()
    san.editor.get_layer("change").set_weights([np.random.default_rng(1).normal(0, 0.3, kernel.shape), bias])
    prototypes = {name: tf.fill((SIZE, SIZE, 3), 0.5) for name in ("male", "female", "neutral")}
    module = SanitizerModule(san, build_gender_classifier(SIZE), prototypes, SIZE)
    path = str(tmp_path / "obfuscating")
    save_sanitizer(module, path, metadata={})
    model = tf.saved_model.load(path)
    faces = tf.random.uniform((3, SIZE, SIZE, 1), seed=2)
    encrypted = model.signatures["sanitize_only"](faces=faces)["sanitized"]
    np.testing.assert_allclose(encrypted.numpy(), san.encrypt(faces).numpy(), atol=1e-5)
    np.testing.assert_allclose(model.signatures["sanitize_faces"](faces=faces)["sanitized"].numpy(), encrypted.numpy(),
                               atol=1e-5)
    decrypted = model.signatures[DECRYPT_SIGNATURE](faces=encrypted)["decrypted"]
    np.testing.assert_allclose(decrypted.numpy(), san.decrypt(encrypted).numpy(), atol=1e-5)
    assert DECRYPT_SIGNATURE not in tf.saved_model.load(_export(tmp_path)).signatures
