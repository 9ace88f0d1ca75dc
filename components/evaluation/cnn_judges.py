"""CNN gender judges: a small residual network, unlike the auxiliary classifier the SAN trains
against (trainer/models.py: plain 5x5/3x3 convolutions, LeakyReLU, max-pooling, no
normalisation). Its own seed and its own augmentation (flips, shifts, contrast).

Two uses, one architecture:
- `resnet_gender_cnn`, trained by the JudgeTrainer on ORIGINAL faces of the train split: an
  unseen judge (the paper's setting);
- `adaptive_resnet_gender_cnn`, trained by the evaluator on the sanitizer's own output (X'_OP)
  for the train split: an attacker who owns the sanitizer and learns to read what it leaves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer.data import without_autotuning

CNN_JUDGE = "resnet_gender_cnn"
ADAPTIVE_JUDGE = "adaptive_resnet_gender_cnn"
DESCRIPTIONS = {
    CNN_JUDGE: "small residual CNN (batch norm, ReLU, global pooling; not the auxiliary classifier's architecture), "
               "own seed and augmentation, trained on ORIGINAL faces of the train split",
    ADAPTIVE_JUDGE: "ADAPTIVE attacker: the same residual CNN trained on the sanitizer's own output (X'_OP) for the "
                    "train split with the true genders, i.e. an attacker who owns the sanitizer",
}


def describe_judge(name: str, descriptions: dict) -> str:
    """A judge's description from `descriptions`; an attribute judge's (<judge>@<CelebA attribute>)
    is its base judge's, reading that attribute instead of gender."""
    if name in descriptions:
        return descriptions[name]
    base, _, attribute = name.partition("@")
    if attribute and base in descriptions:
        return f"{descriptions[base]}; reads {attribute} instead of gender"
    return name


def residual_block(x, filters: int, stride: int):
    shortcut = x
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = keras.layers.BatchNormalization(momentum=0.9)(shortcut)
    return keras.layers.ReLU()(keras.layers.Add()([x, shortcut]))


def residual_trunk(image_size: int, seed: int, shift: float):
    """(faces input, pooled features): flips, shifts (`shift` of the side) and contrast in training
    only, a 16-wide stem, four residual blocks (widths unlike the auxiliary networks' 32/64/128/256/
    512), global average pooling. The CNN judges' shared body."""
    keras.utils.set_random_seed(seed)
    faces = keras.Input((image_size, image_size, 1), name="faces")
    x = keras.layers.RandomFlip("horizontal", seed=seed)(faces)
    x = keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 1)(x)
    x = keras.layers.RandomContrast(0.2, seed=seed + 2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    for filters in (24, 48, 80, 112):
        x = residual_block(x, filters, stride=2)
    return faces, keras.layers.GlobalAveragePooling2D()(x)


def build_residual_gender_cnn(image_size: int, seed: int) -> keras.Model:
    """Gray faces [N,S,S,1] in [0,1] -> P(male) [N,1]. Augmentation is active in training only."""
    faces, x = residual_trunk(image_size, seed, shift=0.06)
    x = keras.layers.Dropout(0.2, seed=seed + 3)(x)
    male = keras.layers.Dense(1, activation="sigmoid", name="male")(x)
    return keras.Model(faces, male, name="residual_gender_cnn")


def face_batches(faces: np.ndarray, labels: np.ndarray, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """(faces [N,S,S,1] uint8 or float in [0,1], labels [N]) -> float batches; shuffled when seeded."""
    scale = 255.0 if faces.dtype == np.uint8 else 1.0
    dataset = tf.data.Dataset.from_tensor_slices((faces, labels))
    if seed is not None:
        dataset = dataset.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    return without_autotuning(dataset.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / scale, y))
                              .prefetch(tf.data.AUTOTUNE))


class KeepBest(keras.callbacks.Callback):
    """Restores, at the end of training, the weights of the epoch with the best `monitor` (max)."""

    def __init__(self, monitor: str = "val_accuracy"):
        super().__init__()
        self.monitor, self.best, self.weights, self.epoch = monitor, -np.inf, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.weights, self.epoch = value, self.model.get_weights(), epoch

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


def train_gender_cnn(faces: np.ndarray, male: np.ndarray, image_size: int, epochs: int, seed: int,
                     batch_size: int = 64, progress: Callable[[str], None] = logging.info,
                     identity: np.ndarray | None = None, validation_share: float = 0.15,
                     label: str = "gender") -> keras.Model:
    """Fits the residual CNN on gray faces [N,S,S,1] (uint8 or float in [0,1]) and labels [N]
    (`label`: what they are, for the progress line: gender, or a CelebA attribute).

    With `identity`, a share of the identities is held out and the weights of the epoch that reads
    them best are kept: the strongest attacker the epochs allow, not whatever the last epoch left
    (single runs of the adaptive attacker without it ranged from 6% to 28% error on the same
    sanitized faces)."""
    if len(np.unique(male)) < 2:
        raise ValueError("a gender CNN needs faces of both genders to train on")
    male = np.asarray(male, np.float32)
    validation, callbacks = None, []
    if identity is not None:
        people = np.unique(identity)
        held_out = np.random.default_rng(seed).permutation(people)[:max(1, int(round(validation_share * len(people))))]
        hold = np.isin(identity, held_out)
        if hold.all() or not hold.any() or len(np.unique(male[~hold])) < 2:
            raise ValueError("too few identities to hold some out for validation")
        validation = face_batches(faces[hold], male[hold], 256)
        faces, male = faces[~hold], male[~hold]
        callbacks.append(KeepBest())
    model = build_residual_gender_cnn(image_size, seed)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(face_batches(faces, male, batch_size, seed), validation_data=validation, epochs=epochs,
                        callbacks=callbacks, verbose=0)
    kept = (f"; kept epoch {callbacks[0].epoch + 1}, held-out identities' accuracy {callbacks[0].best:.3f}"
            if callbacks and callbacks[0].weights is not None else "")
    progress(f"{label} CNN trained on {len(faces)} faces for {epochs} epochs: training accuracy "
             f"{history.history['accuracy'][-1]:.3f}{kept}")
    return model


@dataclass
class KerasJudge:
    """A judge backed by a Keras model over gray faces, saved as a SavedModel named after the judge."""

    name: str
    description: str
    model: keras.Model
    _forward: Callable = field(default=None, init=False, repr=False, compare=False)

    PREDICT_BATCH = 256

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """The model's output for faces [N,S,S,1|3], in chunks of PREDICT_BATCH through one traced
        inference function (Keras' `predict` rebuilds its data pipeline on every call: 0.10 s per
        batch of 64 faces against 0.03 s for the network itself, twelve times per evaluated batch)."""
        faces = np.asarray(faces, dtype=np.float32)
        if faces.shape[-1] != 1:  # the CNN judges look at gray faces, as the sanitizer outputs them
            faces = faces.mean(axis=-1, keepdims=True)
        if self._forward is None:
            self._forward = tf.function(lambda x: self.model(x, training=False),
                                        input_signature=[tf.TensorSpec([None, *faces.shape[1:]], tf.float32)])
        chunks = [self._forward(faces[start:start + self.PREDICT_BATCH]).numpy()
                  for start in range(0, len(faces), self.PREDICT_BATCH)]
        if not chunks:
            return np.zeros((0, *self.model.output_shape[1:]), np.float64)
        return np.concatenate(chunks).astype(np.float64)

    def save(self, directory: str) -> None:
        self.model.save(os.path.join(directory, self.name), save_format="tf", include_optimizer=False)

    @classmethod
    def describe(cls, name: str) -> str:
        return describe_judge(name, DESCRIPTIONS)

    @classmethod
    def load(cls, directory: str, name: str):
        return cls(name, cls.describe(name), keras.models.load_model(os.path.join(directory, name), compile=False))


class KerasGenderJudge(KerasJudge):
    """A gender judge (judges.GenderJudge): the model maps faces to P(male) [N,1]."""

    def male_probability(self, faces: np.ndarray) -> np.ndarray:
        return self.predict(faces)[:, 0]
