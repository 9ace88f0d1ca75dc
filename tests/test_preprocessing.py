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
