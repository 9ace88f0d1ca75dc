"""The tf.Transform prototypes equal numpy means of the aligned training faces."""

import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components.faces.imaging import encode_png
from trainer import features
from trainer.preprocessing import preprocessing_fn

SIZE = 8


def test_prototypes_are_full_pass_gender_means(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, SIZE, SIZE, 3), dtype=np.uint8)
    male = np.array([1, 0, 0, 1, 1, 0, 1])
    raw = [
        {features.IMAGE_KEY: [encode_png(image)], features.MALE_KEY: [int(m)], features.IDENTITY_KEY: [i]}
        for i, (image, m) in enumerate(zip(images, male))
    ]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.MALE_KEY: tf.io.FixedLenFeature([1], tf.int64),
        features.IDENTITY_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }))
    with tft_beam.Context(temp_dir=str(tmp_path), desired_batch_size=3):
        (transformed, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"image_size": SIZE}))

    scaled = images.astype(np.float64) / 255.0
    expected_male = scaled[male == 1].mean(axis=0)
    expected_female = scaled[male == 0].mean(axis=0)
    fraction = male.mean()
    for row, image in zip(transformed, scaled):
        np.testing.assert_allclose(row[features.PROTOTYPE_MALE_KEY], expected_male, atol=1e-5)
        np.testing.assert_allclose(row[features.PROTOTYPE_FEMALE_KEY], expected_female, atol=1e-5)
        np.testing.assert_allclose(
            row[features.PROTOTYPE_NEUTRAL_KEY], fraction * expected_male + (1 - fraction) * expected_female, atol=1e-5)
        np.testing.assert_allclose(row[features.MALE_FRACTION_KEY], fraction, atol=1e-6)
        gray = image @ np.array([0.2989, 0.5870, 0.1140])
        np.testing.assert_allclose(np.asarray(row[features.FACE_GRAY_KEY])[:, :, 0], gray, atol=2e-3)


def test_training_datasets_have_no_autotuning_thread():
    """trainer.data.without_autotuning: the iterators Keras destroys after every epoch, validation and
    fit must not wait for tf.data's autotuning thread (up to 20 s each on the build machine)."""
    import numpy as np
    import tensorflow as tf

    from components.evaluation.cnn_judges import face_batches
    from trainer.data import without_autotuning

    plain = tf.data.Dataset.range(4).prefetch(tf.data.AUTOTUNE)
    assert plain.options().autotune.enabled is not False
    assert without_autotuning(plain).options().autotune.enabled is False
    assert list(without_autotuning(plain).as_numpy_iterator()) == [0, 1, 2, 3]
    batches = face_batches(np.zeros((5, 8, 8, 1), np.uint8), np.arange(5), batch_size=2, seed=0)
    assert batches.options().autotune.enabled is False
    assert sorted(np.concatenate([labels for _, labels in batches.as_numpy_iterator()])) == [0, 1, 2, 3, 4]


def test_aligned_face_batches_decode_without_autotuning(tmp_path):
    from trainer.data import aligned_face_batches

    path = str(tmp_path / "faces.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for index in range(3):
            image = encode_png(np.full((16, 16, 3), 40 * index, np.uint8))
            example = tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                features.MALE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 2])),
                features.IDENTITY_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[7 + index]))}))
            writer.write(example.SerializeToString())
    dataset = aligned_face_batches([path], image_size=16, batch_size=2)
    assert dataset.options().autotune.enabled is False
    batches = list(dataset.as_numpy_iterator())
    assert [len(batch["male"]) for batch in batches] == [2, 1]
    assert np.concatenate([batch["identity"] for batch in batches]).tolist() == [7, 8, 9]
    assert batches[0]["face"].shape == (2, 16, 16, 1)
