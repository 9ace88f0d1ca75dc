"""The adaptive attacker: someone who owns the sanitizer runs it over labelled faces and trains a
gender classifier on its outputs (cnn_judges.py's residual CNN), then reads the sanitized test
faces with it. Trained only on the sanitizer's output for the TRAIN split, with true genders.

What it can reach is bounded below by identity itself: a sanitizer that keeps identity must keep
the gender that identity reveals (the identity-leakage bound, judges.identity_leakage_model).

A policy that suppresses identity has an adaptive matcher too (train_adaptive_matcher).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import tensorflow as tf

from components.evaluation.cnn_judges import ADAPTIVE_JUDGE, DESCRIPTIONS, KerasGenderJudge, train_gender_cnn
from components.evaluation.cnn_matcher import KerasMatcherJudge, train_matcher_cnn
from components.evaluation.outputs import sanitized_batches

ADAPTIVE_MATCHER = "adaptive_resnet_matcher_cnn"
ADAPTIVE_MATCHER_DESCRIPTION = (
    "ADAPTIVE matcher (identity suppressed): the residual CNN matcher judge fine-tuned on the ORIGINAL and "
    "the SANITIZED faces of the train split's people together, to link a sanitized face to its person; tested on "
    "unseen people")


def _uint8(images: tf.Tensor) -> np.ndarray:
    return np.clip(np.rint(images.numpy() * 255.0), 0, 255).astype(np.uint8)


def sanitized_training_faces(model, train_patterns: list[str], image_size: int, max_faces: int,
                             batch_size: int = 64, precision: str = "float32",
                             attributes: tuple = (), originals: list | None = None
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(the sanitizer's output (what the bulk job writes) for up to max_faces train-split faces,
    uint8 [N,S,S,1]; male [N]; identity [N]; {attribute: [N]} for each of `attributes`). With
    `originals` (a list), the original faces, uint8, are appended to it in the same order."""
    faces, male, identity, labels = [], [], [], {name: [] for name in attributes}
    for batch in sanitized_batches(model, train_patterns, image_size, batch_size, max_faces, precision, attributes):
        faces.append(_uint8(batch["images"]["sanitized"]))
        if originals is not None:
            originals.append(_uint8(batch["images"]["original"]))
        male.append(batch["male"])
        identity.append(batch["identity"])
        for name in attributes:
            labels[name].append(batch["attributes"][name])
    if not faces:
        raise ValueError(f"no training examples found in {train_patterns} for the adaptive attacker")
    return (np.concatenate(faces), np.concatenate(male), np.concatenate(identity),
            {name: np.concatenate(values) for name, values in labels.items()})


def train_adaptive_attacker(model_dir: str, train_patterns: list[str], image_size: int, max_faces: int, epochs: int,
                            seed: int, progress: Callable[[str], None] = logging.info,
                            precision: str = "float32", attributes: tuple = (), gender: bool = True) -> dict:
    """Adaptive attackers on the sanitizer's output for the train split: {"Male": the gender
    attacker (when `gender`), attribute: one per other suppressed attribute of `attributes`}, each
    the residual CNN trained with that attribute's true labels (the sanitized faces are computed once)."""
    if not gender and not attributes:
        raise ValueError("train_adaptive_attacker: no attribute to attack (gender=False and no attributes)")
    model = tf.saved_model.load(model_dir)
    faces, male, identity, labels = sanitized_training_faces(model, train_patterns, image_size, max_faces,
                                                             precision=precision, attributes=attributes)
    attackers = {}
    for attribute, values in ((("Male", male),) if gender else ()) + tuple(labels.items()):
        name = ADAPTIVE_JUDGE if attribute == "Male" else f"{ADAPTIVE_JUDGE}@{attribute}"
        progress(f"adaptive attacker {name}: training on the sanitized output of {len(faces)} train-split faces "
                 "(some identities held out to keep its best epoch)")
        cnn = train_gender_cnn(faces, values, image_size, epochs=epochs, seed=seed, progress=progress,
                               identity=identity, label="gender" if attribute == "Male" else attribute)
        attackers[attribute] = KerasGenderJudge(name, KerasGenderJudge.describe(name), cnn)
    return attackers


def train_adaptive_matcher(model_dir: str, train_patterns: list[str], image_size: int, max_faces: int, epochs: int,
                           seed: int, progress: Callable[[str], None] = logging.info,
                           precision: str = "float32", start=None) -> KerasMatcherJudge:
    """De-identification's adaptive attacker: the CNN matcher judge's network trained on the
    original AND the sanitized faces of the train split, each labelled with its person, so it learns
    to link a sanitized face to the person it came from; fine-tuned from `start` (the trained CNN
    matcher judge's network) when given, so it matches original faces as well as that judge while
    it learns the sanitized ones (trained from scratch on both, it read the originals of unseen
    people at 66%, below the gate's floor, when de-identification removed the identity). It is
    tested like every matcher judge, on identities it never saw (sanitized test probes against the
    original test gallery)."""
    model = tf.saved_model.load(model_dir)
    originals = []
    faces, _, identity, _ = sanitized_training_faces(model, train_patterns, image_size, max_faces,
                                                     precision=precision, originals=originals)
    progress(f"adaptive matcher {ADAPTIVE_MATCHER}: training on {len(faces)} original and {len(faces)} sanitized "
             "train-split faces of the same people")
    network = train_matcher_cnn(np.concatenate([np.concatenate(originals), faces]), np.concatenate([identity, identity]),
                                image_size, epochs=epochs, seed=seed, progress=progress, start=start)
    return KerasMatcherJudge(ADAPTIVE_MATCHER, ADAPTIVE_MATCHER_DESCRIPTION, network)
