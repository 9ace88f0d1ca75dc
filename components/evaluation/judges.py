"""Independent judges of the release gate: one small interface, several model families.

A judge is never used in SAN training (ARCHITECTURE.md, "Judges"). Two kinds:

- a *gender judge* gives the male probability of each face in a batch;
- a *matcher judge* embeds each face of a batch and scores pairs (higher = more alike).

Faces are float arrays [N, S, S, C] in [0, 1], C = 1 (gray, what the SAN outputs) or 3 (RGB).

This module holds the interface and the judges for the embedded SYNTHETIC data, trained by the
pipeline's JudgeTrainer on the training split: scikit-learn models on pixel features, a model
family unlike the auxiliary CNNs the SAN trains against (trainer/models.py):

- `eigenfaces_logistic`: PCA (whitened) -> logistic regression, a linear gender classifier;
- `eigenfaces_svm`: PCA (whitened) -> RBF-kernel SVM with Platt-scaled probabilities;
- `fisherfaces`: PCA -> linear discriminant analysis over the training identities (Belhumeur et
  al.'s Fisherfaces), cosine of the L2-normalised projections as the match score.

The judges for real photos (dlib ResNet matcher, ONNX gender CNN) are in real_face_judges.py beside it.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import joblib
import numpy as np
import tensorflow as tf  # gfile, so the judges may live on gs://
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer
from sklearn.svm import SVC

from components.evaluation.cnn_judges import DESCRIPTIONS as CNN_DESCRIPTIONS, KerasGenderJudge, describe_judge
from components.evaluation.cnn_matcher import CNN_MATCHER, DESCRIPTION as CNN_MATCHER_DESCRIPTION, KerasMatcherJudge


FEATURE_SIDE = 32  # synthetic judges look at faces block-averaged to 32x32, whatever the image size
MANIFEST_FILE = "judges.json"


class GenderJudge(Protocol):
    name: str
    description: str

    def male_probability(self, faces: np.ndarray) -> np.ndarray:
        """faces [N,S,S,C] float in [0,1] -> P(male) [N]."""


class MatcherJudge(Protocol):
    name: str
    description: str

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """faces [N,S,S,C] float in [0,1] -> embeddings [N,D]."""

    def similarity(self, probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """Embeddings [P,D], [G,D] -> match scores [P,G], higher = more likely the same person."""


def pixel_features(faces: np.ndarray) -> np.ndarray:
    """Gray faces [N,S,S,1] (S a multiple of 32) -> block-averaged pixels [N, 32*32]."""
    faces = np.asarray(faces, dtype=np.float32)
    if faces.ndim != 4 or faces.shape[-1] != 1 or faces.shape[1] != faces.shape[2] or faces.shape[1] % FEATURE_SIDE:
        raise ValueError(f"synthetic judges take gray square faces [N,S,S,1] with S a multiple of {FEATURE_SIDE}, "
                         f"got shape {faces.shape}")
    factor = faces.shape[1] // FEATURE_SIDE
    blocks = faces.reshape(len(faces), FEATURE_SIDE, factor, FEATURE_SIDE, factor)
    return blocks.mean(axis=(2, 4)).reshape(len(faces), -1)


def _components(wanted: int, faces: int, classes: int = 0) -> int:
    """PCA size that the training set supports (Fisherfaces: at most N - classes)."""
    return max(1, min(wanted, faces - max(classes, 1), FEATURE_SIDE * FEATURE_SIDE))


def eigenfaces_logistic(num_faces: int, seed: int) -> Pipeline:
    return Pipeline([
        ("pixels", FunctionTransformer(pixel_features)),
        ("pca", PCA(_components(100, num_faces), whiten=True, random_state=seed)),
        ("classifier", LogisticRegression(C=0.1, max_iter=2000)),
    ])


def eigenfaces_svm(num_faces: int, seed: int) -> Pipeline:
    return Pipeline([
        ("pixels", FunctionTransformer(pixel_features)),
        ("pca", PCA(_components(60, num_faces), whiten=True, random_state=seed)),
        ("classifier", SVC(kernel="rbf", C=1.0, probability=True, random_state=seed)),
    ])


def fisherfaces(num_faces: int, num_identities: int, seed: int) -> Pipeline:
    return Pipeline([
        ("pixels", FunctionTransformer(pixel_features)),
        ("pca", PCA(_components(200, num_faces, num_identities), random_state=seed)),
        ("lda", LinearDiscriminantAnalysis()),
    ])


@dataclass
class SklearnGenderJudge:
    name: str
    description: str
    model: Pipeline

    def male_probability(self, faces: np.ndarray) -> np.ndarray:
        classes = list(self.model.classes_)
        return self.model.predict_proba(faces)[:, classes.index(1)]


@dataclass
class SklearnMatcherJudge:
    name: str
    description: str
    model: Pipeline

    def embed(self, faces: np.ndarray) -> np.ndarray:
        projected = self.model.transform(faces)
        return projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)

    def similarity(self, probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        return probe @ gallery.T  # cosine of L2-normalised embeddings


IDENTITY_LEAKAGE = "identity_leakage_fisherfaces"
DESCRIPTIONS = {
    "eigenfaces_logistic": "PCA (whitened eigenfaces) + logistic regression, scikit-learn; trained on the train split",
    "eigenfaces_svm": "PCA (whitened eigenfaces) + RBF-kernel SVM, scikit-learn; trained on the train split",
    "fisherfaces": "PCA + LDA over the training identities (Fisherfaces), cosine score; scikit-learn",
    IDENTITY_LEAKAGE: "identity-leakage bound: logistic regression on the Fisherfaces matcher's identity embedding of "
                      "ORIGINAL faces (train split), i.e. the gender that identity alone reveals",
    **CNN_DESCRIPTIONS,
    CNN_MATCHER: CNN_MATCHER_DESCRIPTION,
}


@dataclass
class JudgeSet:
    """The judges of one judge set: gender and matcher judges, and the identity-leakage bound
    (a gender classifier on a matcher's identity embedding, applied to original faces only)."""

    gender: list = field(default_factory=list)
    matcher: list = field(default_factory=list)
    identity_leakage: list = field(default_factory=list)
    # The privacy policy's other attributes: {CelebA name: {"judges": [judges whose
    # `male_probability` gives P(attribute)], "identity_leakage": [the bound for it]}}
    attributes: dict = field(default_factory=dict)

    def __add__(self, other: "JudgeSet") -> "JudgeSet":
        attributes = {name: {kind: [*self.attributes.get(name, {}).get(kind, []),
                                    *other.attributes.get(name, {}).get(kind, [])]
                             for kind in ("judges", "identity_leakage")}
                      for name in {**self.attributes, **other.attributes}}
        return JudgeSet(self.gender + other.gender, self.matcher + other.matcher,
                        self.identity_leakage + other.identity_leakage, attributes)


def attribute_judge_name(judge: str, attribute: str) -> str:
    """`eigenfaces_svm` reading `Young` -> `eigenfaces_svm@Young` (gender judges keep their names)."""
    return f"{judge}@{attribute}"


def train_attribute_judges(faces: np.ndarray, labels: dict, fisher: Pipeline, seed: int,
                           validation: tuple[np.ndarray, dict] | None = None,
                           progress: Callable[[str], None] = logging.info) -> dict:
    """For each attribute {CelebA name: 0/1 labels [N]} of the privacy policy other than Male: the
    two scikit-learn judges and the identity-leakage bound on the fitted Fisherfaces embedding,
    named by attribute_judge_name. Returns {name: fitted Pipeline} plus "_report" (validation
    accuracies)."""
    models, report = {}, {}
    for attribute, values in labels.items():
        values = np.asarray(values).astype(int)
        if len(np.unique(values)) < 2:
            raise ValueError(f"the judges' training split has one value of {attribute} only; a judge of it needs both")
        for base, build in (("eigenfaces_logistic", eigenfaces_logistic), ("eigenfaces_svm", eigenfaces_svm)):
            name = attribute_judge_name(base, attribute)
            progress(f"training judge {name} on {len(faces)} faces ...")
            models[name] = build(len(faces), seed).fit(faces, values)
        models[attribute_judge_name(IDENTITY_LEAKAGE, attribute)] = identity_leakage_model(fisher, faces, values, seed)
        if validation is not None:
            for name in (attribute_judge_name(base, attribute)
                         for base in ("eigenfaces_logistic", "eigenfaces_svm", IDENTITY_LEAKAGE)):
                report[f"{name}_validation_accuracy"] = float(
                    np.mean(models[name].predict(validation[0]) == np.asarray(validation[1][attribute]).astype(int)))
    return {**models, "_report": report}


def identity_leakage_model(fisher: Pipeline, faces: np.ndarray, male: np.ndarray, seed: int) -> Pipeline:
    """Gender from identity alone: the fitted Fisherfaces steps, L2 normalisation (as its matching
    score uses), then a logistic regression fitted on those embeddings of the training faces."""
    embeddings = fisher.transform(faces)
    normalizer = Normalizer().fit(embeddings)
    logistic = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(normalizer.transform(embeddings), male)
    return Pipeline([*fisher.steps, ("normalize", normalizer), ("classifier", logistic)])


def train_synthetic_judges(faces: np.ndarray, male: np.ndarray, identity: np.ndarray, seed: int,
                           validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                           progress: Callable[[str], None] = logging.info) -> dict:
    """Fits the synthetic judges on training faces [N,S,S,1], labels male [N] and identity [N]:
    two gender judges, the Fisherfaces matcher and the identity-leakage bound on its embedding.

    Returns {name: fitted sklearn Pipeline} plus "_report": accuracies on the optional validation
    faces (faces, male, identity) so the artifact records how good each judge is on originals.
    """
    if len(np.unique(male)) < 2:
        raise ValueError("the judges' training split holds faces of one gender only; a gender judge needs both")
    identities = len(np.unique(identity))
    if identities < 2:
        raise ValueError("the judges' training split holds one identity only; the matcher judge needs several")
    models = {
        "eigenfaces_logistic": eigenfaces_logistic(len(faces), seed),
        "eigenfaces_svm": eigenfaces_svm(len(faces), seed),
        "fisherfaces": fisherfaces(len(faces), identities, seed),
    }
    report = {"train_faces": int(len(faces)), "train_identities": identities, "seed": seed}
    for name, model in models.items():
        progress(f"training judge {name} on {len(faces)} faces ...")
        model.fit(faces, identity if name == "fisherfaces" else male)
        if validation is not None and name != "fisherfaces":
            report[f"{name}_validation_accuracy"] = float(np.mean(model.predict(validation[0]) == validation[1]))
    models[IDENTITY_LEAKAGE] = identity_leakage_model(models["fisherfaces"], faces, male, seed)
    if validation is not None:
        report[f"{IDENTITY_LEAKAGE}_validation_accuracy"] = float(
            np.mean(models[IDENTITY_LEAKAGE].predict(validation[0]) == validation[1]))
    return {**models, "_report": report}


def save_synthetic_judges(models: dict, directory: str, cnn_judges: Sequence[KerasGenderJudge] = (),
                          cnn_matchers: Sequence[KerasMatcherJudge] = (), attributes: dict | None = None) -> None:
    """`attributes`: {CelebA name: {"judges": [scikit-learn judge names in `models`], "cnn":
    [KerasGenderJudge reading it], "identity_leakage": [names in `models`]}} for the policy's
    attributes other than Male."""
    attributes = attributes or {}
    tf.io.gfile.makedirs(directory)
    for name, model in models.items():
        if name.startswith("_"):
            continue
        buffer = io.BytesIO()  # joblib writes memoryviews, which GFile does not take
        joblib.dump(model, buffer)
        with tf.io.gfile.GFile(os.path.join(directory, f"{name}.joblib"), "wb") as handle:
            handle.write(buffer.getvalue())
    attribute_cnns = [judge for groups in attributes.values() for judge in groups.get("cnn", [])]
    for judge in [*cnn_judges, *cnn_matchers, *attribute_cnns]:
        judge.save(directory)
    manifest = {"gender": ["eigenfaces_logistic", "eigenfaces_svm"], "matcher": ["fisherfaces"],
                "gender_cnn": [judge.name for judge in cnn_judges],
                "matcher_cnn": [judge.name for judge in cnn_matchers],
                "identity_leakage": [IDENTITY_LEAKAGE] if IDENTITY_LEAKAGE in models else [],
                "attributes": {name: {"judges": list(groups.get("judges", [])),
                                      "cnn": [judge.name for judge in groups.get("cnn", [])],
                                      "identity_leakage": list(groups.get("identity_leakage", []))}
                               for name, groups in attributes.items()},
                "descriptions": DESCRIPTIONS, "training": models.get("_report", {})}
    with tf.io.gfile.GFile(os.path.join(directory, MANIFEST_FILE), "w") as handle:
        handle.write(json.dumps(manifest, indent=2))


def load_synthetic_judges(directory: str) -> JudgeSet:
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    if not tf.io.gfile.exists(manifest_path):
        raise FileNotFoundError(f"{manifest_path} is missing: the synthetic judges are trained by the pipeline's "
                                "JudgeTrainer; run the pipeline with the 'synthetic' judges selected")
    with tf.io.gfile.GFile(manifest_path) as handle:
        manifest = json.loads(handle.read())

    def load(name):
        with tf.io.gfile.GFile(os.path.join(directory, f"{name}.joblib"), "rb") as handle:
            return joblib.load(io.BytesIO(handle.read()))

    def describe(name):
        return describe_judge(name, {**DESCRIPTIONS, **manifest["descriptions"]})

    return JudgeSet(
        gender=[SklearnGenderJudge(name, describe(name), load(name)) for name in manifest["gender"]]
        + [KerasGenderJudge.load(directory, name) for name in manifest.get("gender_cnn", [])],
        matcher=[SklearnMatcherJudge(name, describe(name), load(name)) for name in manifest["matcher"]]
        + [KerasMatcherJudge.load(directory, name) for name in manifest.get("matcher_cnn", [])],
        identity_leakage=[SklearnGenderJudge(name, describe(name), load(name))
                          for name in manifest.get("identity_leakage", [])],
        attributes={attribute: {
            "judges": [SklearnGenderJudge(name, describe(name), load(name)) for name in groups["judges"]]
            + [KerasGenderJudge.load(directory, name) for name in groups.get("cnn", [])],
            "identity_leakage": [SklearnGenderJudge(name, describe(name), load(name))
                                 for name in groups.get("identity_leakage", [])]}
            for attribute, groups in manifest.get("attributes", {}).items()})
