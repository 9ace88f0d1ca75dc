"""TFX Trainer run_fn for the auxiliary gender classifier f_G (frozen later inside SAN training),
the residual sanitizer's extra ensemble members and the auxiliary classifier of the privacy
policy's other attributes (both trained by the SAN trainer itself)."""

from __future__ import annotations

import logging

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import ENSEMBLE_MEMBERS, TrainingConfig
from trainer import features
from trainer.data import transformed_dataset
from trainer.distribution import distribution_strategy
from trainer.models import (
    build_attribute_classifier, build_gender_classifier, build_pooled_linear_gender_classifier,
    build_pooled_mlp_gender_classifier, build_strided_gender_cnn, pooled_pixel_normalization)


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


def train_ensemble_members(dataset: tf.data.Dataset, image_size: int, seed: int,
                           validation: tf.data.Dataset | None = None,
                           members: tuple | None = None, attribute: str | None = None,
                           robust_epsilon: float | None = None) -> dict:
    """The residual sanitizer's extra auxiliary gender classifiers, trained on the original faces
    of `dataset` (transformed batches) and frozen, each face -> P(male) [N,1]; `members` out of
    "linear" (4x4-pooled logistic regression), "mlp" (2x2-pooled MLP) and "cnn" (a strided CNN
    trained with flips, shifts and contrast changes). Diverse members make the sanitizer change
    what several kinds of classifier read, not one network's blind spots. `members` defaults to
    TrainingConfig's. `attribute`: another CelebA attribute instead of gender (a suppressed one of
    the privacy policy); each member then gives P(attribute). "robust": the strided CNN trained on
    adversarial faces (adversarial_fit, L2 radius `robust_epsilon`, TrainingConfig's by default):
    moving what a robust classifier reads takes changes a person would see as the attribute, not
    one network's blind spots, and such changes carry over to other classifiers."""
    members = TrainingConfig().ensemble_members if members is None else members
    robust_epsilon = TrainingConfig().robust_member_epsilon if robust_epsilon is None else robust_epsilon
    unknown = [name for name in members if name not in ENSEMBLE_MEMBERS]
    if unknown:
        raise ValueError(f"unknown ensemble member(s) {', '.join(map(repr, unknown))}: choose from "
                         f"{', '.join(ENSEMBLE_MEMBERS)} (TrainingConfig.ensemble_members)")

    def labelled(batches):
        if attribute is None:
            return faces_and_labels(batches).map(lambda face, male: (face, tf.cast(male, tf.float32)))
        key = features.attribute_feature_name(attribute)
        return batches.map(lambda batch: (batch[features.FACE_GRAY_KEY], tf.cast(batch[key], tf.float32)))

    what = "gender" if attribute is None else attribute
    pairs = labelled(dataset).cache()
    trained = {}
    for name in members:
        keras.utils.set_random_seed(seed)
        if name in ("cnn", "robust"):
            model, epochs, learning_rate = build_strided_gender_cnn(image_size, seed + 17), 8, 2e-3
        else:
            pool, build, epochs, learning_rate = {
                "linear": (4, build_pooled_linear_gender_classifier, 20, 1e-2),
                "mlp": (2, build_pooled_mlp_gender_classifier, 15, 1e-3)}[name]
            model = build(image_size, pooled_pixel_normalization(pairs.map(lambda face, male: face), image_size, pool))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy", metrics=["accuracy"])
        if name == "robust":
            adversarial_fit(model, pairs.shuffle(64, seed=seed), epochs, robust_epsilon)
        else:
            model.fit(pairs.shuffle(64, seed=seed), epochs=epochs, verbose=0)
        if validation is not None:
            accuracy = model.evaluate(labelled(validation), verbose=0)[1]
            logging.info("ensemble %s classifier %s: validation accuracy %.4f", what, name, accuracy)
        model.trainable = False
        trained[name] = model
    return trained


def l2_attack(model: keras.Model, faces: tf.Tensor, labels: tf.Tensor, epsilon: float, steps: int = 3) -> tf.Tensor:
    """Projected gradient ascent of the binary cross-entropy of `model` (P(attribute) [N,1]) on
    `faces` [N,S,S,1] within an L2 ball of radius `epsilon` per face (Madry et al. 2018), faces
    kept in [0, 1]; `steps` normalised gradient steps of 2.5 epsilon / steps. Returns the
    perturbed faces; the model is run in inference mode (its statistics are not updated)."""
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1, 1])
    step_size = 2.5 * epsilon / steps
    adversarial = faces
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(adversarial)
            loss = keras.losses.binary_crossentropy(labels, tf.cast(model(adversarial, training=False), tf.float32))
        gradient = tape.gradient(loss, adversarial)
        norm = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=[1, 2, 3], keepdims=True)) + 1e-12
        delta = adversarial + step_size * gradient / norm - faces
        delta_norm = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True)) + 1e-12
        delta = delta * tf.minimum(1.0, epsilon / delta_norm)
        adversarial = tf.clip_by_value(faces + delta, 0.0, 1.0)
    return tf.stop_gradient(adversarial)


def adversarial_fit(model: keras.Model, pairs: tf.data.Dataset, epochs: int, epsilon: float, steps: int = 3) -> None:
    """Trains a compiled P(attribute) classifier on (face, label) batches, each step on the faces
    l2_attack perturbs within `epsilon` (adversarial training): its gradients then follow changes
    of the attribute a person would see (Santurkar et al. 2019, "robust classifiers")."""
    optimizer = model.optimizer

    @tf.function
    def train_step(faces, labels):
        adversarial = l2_attack(model, faces, labels, epsilon, steps)
        with tf.GradientTape() as tape:
            predicted = tf.cast(model(adversarial, training=True), tf.float32)
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(tf.reshape(labels, [-1, 1]), predicted))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for epoch in range(epochs):
        losses = [float(train_step(faces, tf.cast(labels, tf.float32))) for faces, labels in pairs]
        logging.info("robust member, epoch %d: adversarial loss %.4f", epoch + 1, sum(losses) / max(len(losses), 1))


def attribute_labels(batch: dict, attributes: tuple) -> tf.Tensor:
    """Transformed batch -> [N,K] float 0/1 labels of the policy's attributes (Male excluded)."""
    return tf.stack([tf.cast(batch[features.attribute_feature_name(name)], tf.float32) for name in attributes], axis=1)


def train_attribute_classifier(dataset: tf.data.Dataset, config: TrainingConfig, attributes: tuple,
                               validation: tf.data.Dataset | None = None) -> keras.Model:
    """The auxiliary classifier of the policy's attributes other than Male (one sigmoid head each),
    trained on the original faces of `dataset` (transformed batches) for classifier_epochs with the
    gender classifier's settings, then frozen for the sanitizer's training."""
    keras.utils.set_random_seed(config.seed)
    pairs = dataset.map(lambda batch: (batch[features.FACE_GRAY_KEY], attribute_labels(batch, attributes)))
    model = build_attribute_classifier(config.image_size, attributes, config.classifier_dropout)
    model.compile(optimizer=keras.optimizers.Adam(config.classifier_learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    model.fit(pairs, epochs=config.classifier_epochs, verbose=2)
    if validation is not None:
        for index, name in enumerate(attributes):
            accuracy = keras.metrics.BinaryAccuracy()
            for batch in validation:
                accuracy.update_state(attribute_labels(batch, attributes)[:, index],
                                      model(batch[features.FACE_GRAY_KEY], training=False)[:, index])
            logging.info("auxiliary attribute classifier, %s: validation accuracy %.4f", name, float(accuracy.result()))
    model.trainable = False
    return model
