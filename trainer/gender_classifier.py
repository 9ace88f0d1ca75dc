"""TFX Trainer run_fn for the auxiliary gender classifier f_G (frozen later inside SAN training)."""

from __future__ import annotations

import logging

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import TrainingConfig
from trainer import features
from trainer.data import transformed_dataset
from trainer.distribution import distribution_strategy
from trainer.models import build_gender_classifier


def faces_and_labels(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda batch: (batch[features.FACE_GRAY_KEY], batch[features.LABEL_KEY]))


def run_fn(fn_args: FnArgs) -> None:
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    train = faces_and_labels(transformed_dataset(
        fn_args.train_files, tft_output, config.batch_size, config.shuffle_buffer, config.seed))
    evaluation = faces_and_labels(transformed_dataset(fn_args.eval_files, tft_output, config.batch_size))

    with distribution_strategy(config.require_gpu).scope():
        model = build_gender_classifier(config.image_size, config.classifier_dropout)
        model.compile(
            optimizer=keras.optimizers.Adam(config.classifier_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    history = model.fit(
        train,
        validation_data=evaluation,
        epochs=config.classifier_epochs,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)],
        verbose=2,
    )
    logging.info("gender classifier: final validation accuracy %.4f", history.history["val_accuracy"][-1])
    model.save(fn_args.serving_model_dir, save_format="tf", include_optimizer=False)
