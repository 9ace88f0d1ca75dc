"""The exported sanitizer is self-contained: bytes or tensors in, sanitized faces out."""

import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from trainer.export import SanitizerModule, save_sanitizer
from trainer.models import SemiAdversarialNetwork, build_gender_classifier

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
    assert set(model.signatures) == {"serving_default", "sanitize_faces", "sanitize_labelled_faces",
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
