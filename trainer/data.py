"""Input pipeline: gzipped tf.Example TFRecords -> tf.Transform-ed feature batches."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.preprocessing import decode_face_images, to_model_input

RAW_FEATURES_USED = (features.IMAGE_KEY, features.MALE_KEY, features.IDENTITY_KEY)


def list_files(file_patterns: list[str]) -> list[str]:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {file_patterns}")
    return files


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` without tf.data's autotuning thread (AUTOTUNE parallelism and prefetching then take
    fixed defaults: as many parallel calls as cores).

    Every iterator of an autotuned dataset owns a thread that re-optimises the pipeline at
    intervals that grow while the iterator lives, and destroying the iterator waits for that
    thread's next wake-up. Keras destroys one at the end of every epoch of a finite dataset, of
    every validation and of every `fit`: on the 2-core build machine (2026-11-26, TensorFlow 2.16)
    that stalled training by up to 20 s each time (a 5-epoch fit of the evaluator's CNN judge on
    2,560 faces: 16 s spent after its last epoch; the sanitizer's 6 epochs: 20-s gaps between some
    epochs and 60 s around its one validation). `benchmarks/dataset_stalls.py` measures it."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def transformed_dataset(
    file_patterns: list[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle_buffer: int = 0,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of transformed features (see trainer.features), one pass over the files.

    Raw examples are parsed and transformed in parallel and prefetched so the accelerator is not
    kept waiting on decoding.
    """
    dataset = tf.data.TFRecordDataset(
        list_files(file_patterns), compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE
    )
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # The image, gender and identity, and the attributes preprocessing_fn passes through (the
    # privacy policy's: the same feature names before and after the transform).
    used = {*RAW_FEATURES_USED, *(key for key in tft_output.transformed_feature_spec()
                                  if key.startswith(features.ATTRIBUTE_PREFIX))}
    raw_spec = {key: spec for key, spec in tft_output.raw_feature_spec().items() if key in used}
    transform_layer = tft_output.transform_features_layer()
    dataset = dataset.batch(batch_size).map(
        lambda serialized: transform_layer(tf.io.parse_example(serialized, raw_spec)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return without_autotuning(dataset.prefetch(tf.data.AUTOTUNE))


def prototypes_from(tft_output: tft.TFTransformOutput, file_patterns: list[str]) -> dict:
    """The analyzer constants: {'male','female','neutral': [S,S,3], 'male_fraction': scalar}."""
    batch = next(iter(transformed_dataset(file_patterns, tft_output, batch_size=1)))
    return {
        "male": batch[features.PROTOTYPE_MALE_KEY][0],
        "female": batch[features.PROTOTYPE_FEMALE_KEY][0],
        "neutral": batch[features.PROTOTYPE_NEUTRAL_KEY][0],
        "male_fraction": batch[features.MALE_FRACTION_KEY][0],
    }


def aligned_face_batches(file_patterns: list[str], image_size: int, batch_size: int = 64,
                         attributes: tuple = ()) -> tf.data.Dataset:
    """Raw examples -> {'face': [N,S,S,1] gray in [0,1], 'male': [N], 'identity': [N]} batches,
    plus {CelebA attribute name: [N] 0/1} for each of `attributes` (e.g. ("Young", "Smiling")).

    Uses the same decoding as the transform graph and the exported model, without needing the
    transform graph: for evaluating exported models on a split.
    """
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.MALE_KEY: tf.io.FixedLenFeature([1], tf.int64),
        features.IDENTITY_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }
    extra = {name: features.attribute_feature_name(name) for name in attributes}
    spec.update({key: tf.io.FixedLenFeature([1], tf.int64) for key in extra.values()})

    def decode(serialized):
        batch = tf.io.parse_example(serialized, spec)
        return {
            "face": to_model_input(decode_face_images(tf.reshape(batch[features.IMAGE_KEY], [-1]), image_size)),
            "male": tf.reshape(batch[features.MALE_KEY], [-1]),
            "identity": tf.reshape(batch[features.IDENTITY_KEY], [-1]),
            **{name: tf.reshape(batch[key], [-1]) for name, key in extra.items()},
        }

    return without_autotuning(tf.data.TFRecordDataset(list_files(file_patterns), compression_type="GZIP")
                              .batch(batch_size).map(decode).prefetch(tf.data.AUTOTUNE))
