"""JudgeTrainer: trains the independent synthetic-data judges (judges.py, cnn_judges.py) on the train split.

Its own pipeline step, so the judges are cached and recorded in ML Metadata like any model. It
reads the ExampleGen's raw examples (not the Transform output the SAN trains on), uses its own
seed, and its Model artifact goes only to the SanitizerEvaluator, never to SAN training.
"""

import json
import logging
import os

import numpy as np
from tfx import v1 as tfx
from tfx.types import artifact_utils

from trainer.data import aligned_face_batches
from components.evaluation.cnn_judges import CNN_JUDGE, DESCRIPTIONS, KerasGenderJudge, train_gender_cnn
from components.evaluation.cnn_matcher import CNN_MATCHER, DESCRIPTION as CNN_MATCHER_DESCRIPTION, KerasMatcherJudge
from components.evaluation.cnn_matcher import train_matcher_cnn
from components.evaluation.metrics import genuine_impostor, tmr_at_fmr
from components.evaluation.judges import (
    FEATURE_SIDE, IDENTITY_LEAKAGE, attribute_judge_name, pixel_features, save_synthetic_judges, train_attribute_judges,
    train_synthetic_judges)


def load_judge_faces(file_patterns: list[str], image_size: int, max_faces: int, attributes: tuple = ()) -> dict:
    """Up to max_faces examples: {"pixels": [N,32,32,1] block-averaged floats (scikit-learn
    judges), "faces": [N,S,S,1] uint8 gray (CNN judges), "male": [N], "identity": [N]}, and
    "attributes": {CelebA name: [N] 0/1} for each of `attributes`."""
    parts = {"pixels": [], "faces": [], "male": [], "identity": []}
    labels = {name: [] for name in attributes}
    count = 0
    for batch in aligned_face_batches(file_patterns, image_size, batch_size=256, attributes=attributes):
        take = min(int(batch["male"].shape[0]), max_faces - count)
        if take <= 0:
            break
        faces = batch["face"][:take].numpy()
        parts["pixels"].append(pixel_features(faces).reshape(take, FEATURE_SIDE, FEATURE_SIDE, 1))
        parts["faces"].append(np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8))
        parts["male"].append(batch["male"][:take].numpy())
        parts["identity"].append(batch["identity"][:take].numpy())
        for name in attributes:
            labels[name].append(batch[name][:take].numpy())
        count += take
        logging.info("JudgeTrainer: loaded %d faces", count)
    if not count:
        raise ValueError(f"no examples found in {file_patterns}")
    return {**{name: np.concatenate(values) for name, values in parts.items()},
            "attributes": {name: np.concatenate(values) for name, values in labels.items()}}


@tfx.dsl.components.component
def JudgeTrainer(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    judges: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    image_size: tfx.dsl.components.Parameter[int],
    seed: tfx.dsl.components.Parameter[int],
    max_train_faces: tfx.dsl.components.Parameter[int],
    cnn_epochs: tfx.dsl.components.Parameter[int] = 8,
    cnn_matcher_epochs: tfx.dsl.components.Parameter[int] = 8,
    train_split: tfx.dsl.components.Parameter[str] = "train",
    validation_split: tfx.dsl.components.Parameter[str] = "eval",
    attributes_json: tfx.dsl.components.Parameter[str] = "[]",
) -> None:
    """Fits the synthetic judges (scikit-learn gender judges, Fisherfaces matcher, identity-leakage
    bound), the residual CNN gender judge and the residual CNN matcher on ORIGINAL faces, and the
    same gender-judge families for each CelebA attribute of `attributes_json` (the privacy policy's
    attributes other than Male); writes them and judges.json."""
    attributes = tuple(json.loads(attributes_json))

    def split_faces(split):
        uri = artifact_utils.get_split_uri([examples], split)
        return load_judge_faces([os.path.join(uri, "*")], image_size, max_train_faces, attributes)

    def progress(message):
        logging.info("JudgeTrainer: %s", message)

    train, validation = split_faces(train_split), split_faces(validation_split)
    models = train_synthetic_judges(train["pixels"], train["male"], train["identity"], seed=seed,
                                    validation=(validation["pixels"], validation["male"], validation["identity"]),
                                    progress=progress)
    cnn = KerasGenderJudge(CNN_JUDGE, DESCRIPTIONS[CNN_JUDGE], train_gender_cnn(
        train["faces"], train["male"], image_size, epochs=cnn_epochs, seed=seed, progress=progress))
    report = models["_report"]
    report[f"{CNN_JUDGE}_validation_accuracy"] = float(np.mean(
        (cnn.male_probability(validation["faces"] / 255.0) >= 0.5) == validation["male"]))
    matcher = KerasMatcherJudge(CNN_MATCHER, CNN_MATCHER_DESCRIPTION, train_matcher_cnn(
        train["faces"], train["identity"], image_size, epochs=cnn_matcher_epochs, seed=seed, progress=progress))
    embeddings = matcher.embed(validation["faces"] / 255.0)
    genuine, impostor = genuine_impostor(matcher.similarity(embeddings, embeddings), validation["identity"])
    if genuine.size and impostor.size:  # unseen identities: how well the judge matches originals
        report[f"{CNN_MATCHER}_validation_tmr_at_fmr_0.01"] = tmr_at_fmr(genuine, impostor, 1e-2)
    groups = {}
    if attributes:
        attribute_models = train_attribute_judges(
            train["pixels"], train["attributes"], models["fisherfaces"], seed,
            validation=(validation["pixels"], validation["attributes"]), progress=progress)
        report.update(attribute_models.pop("_report"))
        models.update(attribute_models)
        for attribute in attributes:
            name = attribute_judge_name(CNN_JUDGE, attribute)
            attribute_cnn = KerasGenderJudge(name, KerasGenderJudge.describe(name), train_gender_cnn(
                train["faces"], train["attributes"][attribute], image_size, epochs=cnn_epochs, seed=seed,
                progress=progress, label=attribute,
                # the epoch that reads held-out identities best: an attribute CNN kept at its last
                # epoch read Young at 56.8% error on the test originals (training accuracy 0.945)
                identity=train["identity"]))
            report[f"{name}_validation_accuracy"] = float(np.mean(
                (attribute_cnn.male_probability(validation["faces"] / 255.0) >= 0.5)
                == validation["attributes"][attribute]))
            groups[attribute] = {
                "judges": [attribute_judge_name(base, attribute) for base in ("eigenfaces_logistic", "eigenfaces_svm")],
                "cnn": [attribute_cnn],
                "identity_leakage": [attribute_judge_name(IDENTITY_LEAKAGE, attribute)]}
    save_synthetic_judges(models, judges.uri, cnn_judges=[cnn], cnn_matchers=[matcher], attributes=groups)
    for key, value in report.items():
        if isinstance(value, float):
            judges.set_float_custom_property(key, value)
    names = sorted([name for name in models if not name.startswith("_")] + [CNN_JUDGE, CNN_MATCHER]
                   + [judge.name for group in groups.values() for judge in group["cnn"]])
    judges.set_string_custom_property("judges", json.dumps(names))
    logging.info("JudgeTrainer: %s", json.dumps(report))
