"""TFX Trainer run_fn for the Semi-Adversarial Network.

Pre-training on reconstruction of X'_SM, then semi-adversarial training against the frozen
auxiliary gender classifier: J = lambda_G [CE(y, f_G(X'_SM)) + CE(1 - y, f_G(X'_OP))] + reconstruction.
The auxiliary nets are frozen: only the SAN's own variables get gradients.
"""

from __future__ import annotations

import json
import logging

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from pipelines.config import TrainingConfig
from trainer import features, losses
from trainer.data import prototypes_from, transformed_dataset
from trainer.export import SanitizerModule, save_sanitizer
from trainer.models import SemiAdversarialNetwork


def prototypes_for_labels(male: tf.Tensor, prototypes: dict) -> dict:
    """Per-example prototypes [N,S,S,3] for 0/1 labels [N]: SM = y Pm + (1-y) Pf, OP the reverse."""
    y = tf.reshape(tf.cast(male, tf.float32), [-1, 1, 1, 1])
    same = y * prototypes["male"] + (1.0 - y) * prototypes["female"]
    opposite = (1.0 - y) * prototypes["male"] + y * prototypes["female"]
    neutral = tf.zeros_like(same) + prototypes["neutral"]
    return {"same": same, "neutral": neutral, "opposite": opposite}


def male_probability(classifier: keras.Model, faces: tf.Tensor) -> tf.Tensor:
    """Frozen classifier, inference mode (dropout off): [N,S,S,1] -> [N]."""
    return classifier(faces, training=False)[:, 1]


def gender_loss_terms(classifier: keras.Model, weight: float) -> list[losses.LossTerm]:
    weight_variable = tf.Variable(weight, trainable=False, dtype=tf.float32, name="gender_weight")
    return [
        losses.LossTerm(
            "gender_same", weight_variable,
            lambda batch, outputs: losses.gender_cross_entropy(
                male_probability(classifier, outputs["same"]), batch["male"]),
        ),
        losses.LossTerm(
            "gender_opposite", weight_variable,
            lambda batch, outputs: losses.gender_cross_entropy(
                male_probability(classifier, outputs["opposite"]), 1 - batch["male"]),
        ),
    ]


def reconstruction_term(kind: str, weight: float) -> losses.LossTerm:
    reconstruction = losses.RECONSTRUCTION_LOSSES[kind]
    return losses.LossTerm(
        "reconstruction",
        tf.Variable(weight, trainable=False, dtype=tf.float32, name="reconstruction_weight"),
        lambda batch, outputs: reconstruction(batch["face"], outputs["same"]),
    )


class SanTrainer(keras.Model):
    """Wraps the SAN for `fit`: a custom train_step over composable loss terms."""

    def __init__(self, san: SemiAdversarialNetwork, prototypes: dict, terms: list[losses.LossTerm], **kwargs):
        super().__init__(**kwargs)
        self.san = san
        self.prototypes = prototypes
        self.terms = terms

    def _forward(self, batch, training):
        inputs = {"face": batch[features.FACE_GRAY_KEY], "male": batch[features.LABEL_KEY]}
        outputs = self.san({"face": inputs["face"], **prototypes_for_labels(inputs["male"], self.prototypes)},
                           training=training)
        total, values = losses.total_loss(self.terms, inputs, outputs)
        return total, values

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            total, values = self._forward(batch, training=True)
        variables = self.san.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return {"loss": total, **values}

    def test_step(self, batch):
        total, values = self._forward(batch, training=False)
        return {"loss": total, **values}


def set_gender_terms_enabled(terms: list[losses.LossTerm], enabled: bool, weight: float) -> None:
    for term in terms:
        if term.name.startswith("gender_"):
            term.weight.assign(weight if enabled else 0.0)


def run_fn(fn_args: FnArgs) -> None:
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    train = transformed_dataset(fn_args.train_files, tft_output, config.batch_size, config.shuffle_buffer, config.seed)
    evaluation = transformed_dataset(fn_args.eval_files, tft_output, config.batch_size)
    prototypes = prototypes_from(tft_output, fn_args.train_files)

    classifier = keras.models.load_model(fn_args.base_model, compile=False)
    classifier.trainable = False
    san = SemiAdversarialNetwork(config.image_size, name="san")
    terms = [reconstruction_term(config.reconstruction_loss, config.reconstruction_loss_weight),
             *gender_loss_terms(classifier, config.gender_loss_weight)]
    trainer = SanTrainer(san, prototypes, terms)
    trainer.compile(optimizer=keras.optimizers.Adam(config.san_learning_rate))
    callbacks = [keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)]

    if config.pretrain_epochs:
        logging.info("SAN: %d reconstruction-only pre-training epochs", config.pretrain_epochs)
        set_gender_terms_enabled(terms, False, config.gender_loss_weight)
        trainer.fit(train, validation_data=evaluation, epochs=config.pretrain_epochs, callbacks=callbacks, verbose=2)
    logging.info("SAN: %d semi-adversarial epochs", config.san_epochs)
    set_gender_terms_enabled(terms, True, config.gender_loss_weight)
    trainer.fit(train, validation_data=evaluation, epochs=config.pretrain_epochs + config.san_epochs,
                initial_epoch=config.pretrain_epochs, callbacks=callbacks, verbose=2)

    save_sanitizer(
        SanitizerModule(san, classifier, prototypes, config.image_size),
        fn_args.serving_model_dir,
        metadata={"training_config": config.to_custom_config(),
                  "male_fraction": float(prototypes["male_fraction"])},
    )
    logging.info("SAN: exported sanitizer to %s (%s)", fn_args.serving_model_dir, json.dumps(config.to_custom_config()))
