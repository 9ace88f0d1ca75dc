"""TFX Trainer run_fn for the auxiliary face matcher R (frozen later inside SAN training).

Learns an identity embedding with a large-margin cosine softmax (CosFace) over the training
identities (the tf.Transform identity vocabulary), with shift/contrast augmentation and a cosine
learning-rate decay; then measures it on the eval split's identities, which it never saw, and
writes the figures to `training_report.json` in the ModelRun directory (the Trainer's executor
records them in ML Metadata). The exported model maps gray faces [N,S,S,1] in [0,1] to
L2-normalised embeddings [N,D]; only the embedding network is exported, not the training head.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import TrainingConfig
from trainer import features
from trainer.data import transformed_dataset
from trainer.distribution import distribution_strategy
from trainer.models import (
    CosFaceHead, build_face_matcher, build_pooled_identity_embedding, pooled_pixel_normalization)
from trainer.scores import genuine_impostor, tmr_at_fmr


TRAINING_REPORT_FILE = "training_report.json"  # in the ModelRun dir; its figures go to ML Metadata


def faces_and_identities(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """((face, identity class), identity class): the margin head needs the class as an input too."""
    return dataset.map(lambda batch: ((batch[features.FACE_GRAY_KEY], batch[features.IDENTITY_INDEX_KEY]),
                                      batch[features.IDENTITY_INDEX_KEY]))


def embeddings_and_identities(matcher: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    embeddings, identities = [], []
    for batch in dataset:
        embeddings.append(matcher(batch[features.FACE_GRAY_KEY], training=False).numpy())
        identities.append(batch[features.IDENTITY_KEY].numpy())
    return np.concatenate(embeddings), np.concatenate(identities)


def cosine_schedule(learning_rate: float, epochs: int):
    """Per-epoch cosine decay from `learning_rate` towards 0 over `epochs`."""
    return lambda epoch: float(learning_rate * 0.5 * (1.0 + np.cos(np.pi * epoch / max(epochs, 1))))


def build_matcher_training_model(config: TrainingConfig, num_identities: int) -> tuple[keras.Model, keras.Model]:
    """(embedding network R, training model (face, class) -> margin logits with augmentation)."""
    matcher = build_face_matcher(config.image_size, config.matcher_embedding_dim)
    face = keras.Input(matcher.input_shape[1:], name="face")
    label = keras.Input((), dtype=tf.int64, name="identity_index")
    augmented = keras.layers.RandomTranslation(0.04, 0.04, fill_mode="nearest", seed=config.seed)(face)
    augmented = keras.layers.RandomContrast(0.2, seed=config.seed + 1)(augmented)
    logits = CosFaceHead(num_identities, scale=config.matcher_scale, margin=config.matcher_margin,
                         name="identity_logits")([matcher(augmented), label])
    return matcher, keras.Model([face, label], logits)


def evaluate_on_unseen_identities(matcher: keras.Model, dataset: tf.data.Dataset) -> dict:
    """TMR at FMR 1e-2 / 1e-3 and mean scores over all pairs of a split whose identities the
    matcher never trained on (the eval split)."""
    embeddings, identities = embeddings_and_identities(matcher, dataset)
    genuine, impostor = genuine_impostor(embeddings @ embeddings.T, identities)
    if not genuine.size or not impostor.size:
        raise ValueError("the eval split needs at least two identities with two images each to measure the matcher")
    # Cosine scores are symmetric: each pair is in both directions, so it counts once.
    return {"split": "eval", "genuine_pairs": int(genuine.size // 2), "impostor_pairs": int(impostor.size // 2),
            "mean_genuine_cosine": float(genuine.mean()), "mean_impostor_cosine": float(impostor.mean()),
            "tmr_at_fmr": {f"{fmr:g}": tmr_at_fmr(genuine, impostor, fmr) for fmr in (1e-2, 1e-3)}}


def run_fn(fn_args: FnArgs) -> None:
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    num_identities = tft_output.vocabulary_size_by_name(features.IDENTITY_VOCABULARY)
    train = faces_and_identities(transformed_dataset(
        fn_args.train_files, tft_output, config.batch_size, config.shuffle_buffer, config.seed))

    with distribution_strategy(config.require_gpu).scope():
        matcher, model = build_matcher_training_model(config, num_identities)
        model.compile(
            optimizer=keras.optimizers.Adam(config.matcher_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="identity_accuracy")],
        )
    model.fit(train, epochs=config.matcher_epochs, verbose=2, callbacks=[
        keras.callbacks.LearningRateScheduler(cosine_schedule(config.matcher_learning_rate, config.matcher_epochs)),
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])

    # The eval split's identities are unseen: how well does the embedding tell them apart?
    report = evaluate_on_unseen_identities(matcher, transformed_dataset(fn_args.eval_files, tft_output, 64))
    logging.info("face matcher on unseen eval identities: TMR at FMR 1e-2 %.3f, at 1e-3 %.3f; mean genuine cosine "
                 "%.3f, impostor %.3f (%d / %d pairs)", report["tmr_at_fmr"]["0.01"], report["tmr_at_fmr"]["0.001"],
                 report["mean_genuine_cosine"], report["mean_impostor_cosine"], report["genuine_pairs"],
                 report["impostor_pairs"])
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_REPORT_FILE), "w") as handle:
        handle.write(json.dumps(report, indent=2))
    matcher.save(fn_args.serving_model_dir, save_format="tf", include_optimizer=False)


def train_pixel_identity_critic(dataset: tf.data.Dataset, image_size: int, num_identities: int, seed: int,
                                epochs: int = 30) -> keras.Model:
    """De-identification's second critic (TrainingConfig.identity_critics "pixels"): the pooled-pixel
    identity embedding (models.build_pooled_identity_embedding) trained with a margin softmax over
    the training identities of `dataset` (transformed batches with identity_index), then frozen."""
    pairs = dataset.map(lambda batch: (batch[features.FACE_GRAY_KEY], batch[features.IDENTITY_INDEX_KEY])).cache()
    keras.utils.set_random_seed(seed)
    critic = build_pooled_identity_embedding(
        image_size, pooled_pixel_normalization(pairs.map(lambda face, _: face), image_size, pool=4))
    face = keras.Input(critic.input_shape[1:], name="face")
    label = keras.Input((), dtype=tf.int64, name="identity_index")
    model = keras.Model([face, label], CosFaceHead(num_identities, name="identity_logits")([critic(face), label]))
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="identity_accuracy")])
    history = model.fit(pairs.map(lambda face, label: ((face, label), label)).shuffle(64, seed=seed), epochs=epochs,
                        verbose=0)
    logging.info("pixel identity critic: training identity accuracy %.3f after %d epochs",
                 history.history["identity_accuracy"][-1], epochs)
    critic.trainable = False
    return critic
