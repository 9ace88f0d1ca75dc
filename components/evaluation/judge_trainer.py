"""JudgeTrainer: trains the independent synthetic-data judges (judges.py) on the train split.

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
from components.evaluation.judges import FEATURE_SIDE, pixel_features, save_synthetic_judges, train_synthetic_judges


def load_judge_faces(file_patterns: list[str], image_size: int, max_faces: int) -> tuple[np.ndarray, ...]:
    """(faces [N,32,32,1] block-averaged, male [N], identity [N]) of up to max_faces examples."""
    faces, male, identity, count = [], [], [], 0
    for batch in aligned_face_batches(file_patterns, image_size, batch_size=256):
        take = min(int(batch["male"].shape[0]), max_faces - count)
        if take <= 0:
            break
        faces.append(pixel_features(batch["face"][:take].numpy()).reshape(take, FEATURE_SIDE, FEATURE_SIDE, 1))
        male.append(batch["male"][:take].numpy())
        identity.append(batch["identity"][:take].numpy())
        count += take
        logging.info("JudgeTrainer: loaded %d faces", count)
    if not count:
        raise ValueError(f"no examples found in {file_patterns}")
    return np.concatenate(faces), np.concatenate(male), np.concatenate(identity)


@tfx.dsl.components.component
def JudgeTrainer(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    judges: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    image_size: tfx.dsl.components.Parameter[int],
    seed: tfx.dsl.components.Parameter[int],
    max_train_faces: tfx.dsl.components.Parameter[int],
    train_split: tfx.dsl.components.Parameter[str] = "train",
    validation_split: tfx.dsl.components.Parameter[str] = "eval",
) -> None:
    """Fits the synthetic gender and matcher judges; writes them (joblib) and judges.json."""
    def split_faces(split):
        uri = artifact_utils.get_split_uri([examples], split)
        return load_judge_faces([os.path.join(uri, "*")], image_size, max_train_faces)

    models = train_synthetic_judges(*split_faces(train_split), seed=seed, validation=split_faces(validation_split),
                                    progress=lambda message: logging.info("JudgeTrainer: %s", message))
    save_synthetic_judges(models, judges.uri)
    report = models["_report"]
    for key, value in report.items():
        if isinstance(value, float):
            judges.set_float_custom_property(key, value)
    judges.set_string_custom_property("judges", json.dumps(sorted(name for name in models if not name.startswith("_"))))
    logging.info("JudgeTrainer: %s", json.dumps(report))
