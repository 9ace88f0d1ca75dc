"""What the bulk job writes is what the evaluator judged: the same signature, the same per-face
targets, whether faces arrive one photo at a time (the bulk job) or in evaluation batches."""

import numpy as np
import tensorflow as tf

from components.evaluation.outputs import sanitized_batches
from components.faces.imaging import to_gray_float
from pipelines.sanitize.model import SanitizerModelHandler
from trainer import features
from trainer.export import SanitizerModule, hashed_targets, save_sanitizer
from trainer.models import ResidualSanitizer, build_gender_classifier

SIZE = 32


def _residual_model(path) -> str:
    tf.keras.utils.set_random_seed(0)
    san = ResidualSanitizer(SIZE, name="san")
    change = san.editor.get_layer("change")  # untrained it returns the face; give the target a visible effect
    change.set_weights([np.random.default_rng(1).normal(0, 0.3, w.shape).astype("float32")
                        for w in change.get_weights()])
    prototypes = {name: tf.fill((SIZE, SIZE, 3), 0.5) for name in ("male", "female", "neutral")}
    save_sanitizer(SanitizerModule(san, build_gender_classifier(SIZE), prototypes, SIZE), str(path),
                   metadata={"training_config": {"image_size": SIZE}, "note": "tests"})
    return str(path)


def _faces(count=24) -> np.ndarray:
    """Smooth gray faces with 8-bit values, as decoding a PNG gives them."""
    rng = np.random.default_rng(2)
    coarse = rng.uniform(0.1, 0.9, (count, 4, 4, 1)).astype("float32")
    faces = tf.image.resize(coarse, (SIZE, SIZE), method="bilinear").numpy()
    return np.round(faces * 255.0) / 255.0


def _tfrecords(faces: np.ndarray, path) -> str:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for index, face in enumerate(faces):
            rgb = np.repeat(np.round(face * 255.0).astype(np.uint8), 3, axis=-1)
            example = tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[tf.io.encode_png(rgb).numpy()])),
                features.MALE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 2])),
                features.IDENTITY_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[index // 3])),
            }))
            writer.write(example.SerializeToString())
    return str(path)


def test_bulk_job_model_call_writes_the_evaluated_output(tmp_path):
    model_dir = _residual_model(tmp_path / "model")
    faces = _faces()
    evaluated = np.concatenate([batch["images"]["sanitized"].numpy() for batch in sanitized_batches(
        tf.saved_model.load(model_dir), [_tfrecords(faces, tmp_path / "test.gz")], SIZE, batch_size=10,
        max_faces=100)])

    # The bulk job's faces: the same 8-bit RGB through its own conversion (components/faces/imaging.py).
    bulk_faces = np.stack([to_gray_float(np.repeat(np.round(face * 255.0).astype(np.uint8), 3, axis=-1))
                           for face in faces])
    handler = SanitizerModelHandler(model_dir, max_batch_size=7)
    model = handler.load_model()
    photos = [bulk_faces[i:i + 2] for i in range(0, len(faces), 2)]  # the bulk job's elements: one photo's faces
    written = np.concatenate([result.inference for result in handler.run_inference(photos, model)])
    np.testing.assert_allclose(written, evaluated, atol=1e-5)

    # And the target is the hashed one, not the gender flip: both targets occur, and each face's
    # output is the editor's output for its own hashed target.
    targets = hashed_targets(tf.constant(bulk_faces)).numpy()
    assert 0 < targets.sum() < len(targets)
    loaded = tf.saved_model.load(model_dir)
    outputs = loaded.signatures["sanitize_faces"](faces=tf.constant(bulk_faces))
    by_target = np.where(targets[:, None, None, None] == 1.0, 1, 0)
    predicted_male = (outputs["male_probability"].numpy() >= 0.5).astype(int)[:, None, None, None]
    # target male = the opposite output for predicted females and the same output for predicted males
    expected = np.where(by_target == predicted_male, outputs["same"].numpy(), outputs["opposite"].numpy())
    np.testing.assert_allclose(evaluated, expected, atol=1e-5)


def test_batches_are_weighed_in_faces_not_photos():
    """RunInference gathers photos until their faces reach --batch-size: a group photo of 8 faces
    weighs 8, so a batch of 16 group photos is not a model call on 128 faces."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that

    handler = SanitizerModelHandler("unused", max_batch_size=16)
    kwargs = handler.batch_elements_kwargs()
    size = kwargs["element_size_fn"]
    assert size(("context", np.zeros((8, SIZE, SIZE, 1)))) == 8  # keyed, as the job's elements are
    assert size(np.zeros((3, SIZE, SIZE, 1))) == 3
    photos = [np.zeros((k, SIZE, SIZE, 1), np.float32) for k in (8, 8, 8, 1, 1, 5, 8)]
    with beam.Pipeline() as pipeline:
        batches = (pipeline | beam.Create([("p%d" % i, faces) for i, faces in enumerate(photos)])
                   | beam.BatchElements(**kwargs)
                   | beam.Map(lambda batch: sum(len(faces) for _, faces in batch)))
        assert_that(batches, lambda counts: _check_counts(counts, sum(len(p) for p in photos)))


def _check_counts(counts, total):
    assert sum(counts) == total
    assert all(count < 16 + 8 for count in counts), counts  # never more than one photo past the limit
    assert len(counts) >= 2, counts


def test_worker_threads_call_the_model_one_at_a_time():
    """Each model call already uses every core; two at once held two batches' activations together
    (about 250 MiB more at the job's peak), so the handler lets one call run at a time per process."""
    import threading
    import time

    import tensorflow as tf

    state = {"now": 0, "most": 0, "calls": 0}
    guard = threading.Lock()

    def signature(faces):
        with guard:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            state["calls"] += 1
        time.sleep(0.02)  # long enough for another thread to try
        with guard:
            state["now"] -= 1
        return {"sanitized": tf.identity(faces)}

    class Loaded:
        signatures = {"sanitize_only": signature}

    handler = SanitizerModelHandler("unused", max_batch_size=16)
    faces = np.zeros((2, SIZE, SIZE, 1), np.float32)
    threads = [threading.Thread(target=lambda: [handler.sanitize(Loaded(), faces) for _ in range(5)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["calls"] == 20
    assert state["most"] == 1
