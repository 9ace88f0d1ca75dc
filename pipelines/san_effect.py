"""Prints what the trained SAN does on the held-out test split, with the auxiliary networks.

    python -m pipelines.san_effect [--work-dir outputs]

Reads the newest Examples, auxiliary classifier, auxiliary matcher and SAN of a pipeline run from
ML Metadata and reports, on the test split (identities never seen in training):
- the auxiliary gender classifier's accuracy on the originals and on X'_SM, X'_NT, X'_OP
  (prototypes chosen from the classifier's own prediction, as the exported model does);
- the auxiliary matcher's genuine and impostor scores (cosine of embeddings), with the probe
  original or perturbed (X'_SM, X'_OP) against the other original images of the gallery.
These are the networks the SAN trained against: a white-box view of the method working, not the
independent release judges of the evaluator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras
from ml_metadata import metadata_store
from tfx import v1 as tfx

from components.evaluation.metrics import genuine_impostor
from pipelines.config import DEFAULT_WORK_DIR
from trainer.data import aligned_face_batches
from trainer.export import load_metadata

OUTPUTS = ("original", "same", "neutral", "sanitized")


def latest_uri(store, type_name: str, producer: str) -> str:
    """The newest artifact of a type produced by the node `producer`."""
    [context] = [c for c in store.get_contexts_by_type("node") if c.name.split(".")[-1] == producer]
    artifacts = [a for a in store.get_artifacts_by_context(context.id)
                 if a.type_id == store.get_artifact_type(type_name).id]
    if not artifacts:
        raise SystemExit(f"no {type_name} from {producer} in this run's ML Metadata: run the pipeline first")
    return max(artifacts, key=lambda a: a.id).uri


def load_test_split(examples_uri: str, image_size: int) -> dict:
    batches = list(aligned_face_batches([os.path.join(examples_uri, "Split-test", "*")], image_size))
    return {"faces": tf.concat([b["face"] for b in batches], 0),
            "male": np.concatenate([b["male"].numpy() for b in batches]),
            "identity": np.concatenate([b["identity"].numpy() for b in batches])}


def measure(work_dir: str) -> dict:
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(os.path.join(work_dir, "metadata.sqlite"))
    store = metadata_store.MetadataStore(config)
    san_dir = os.path.join(latest_uri(store, "Model", "SanTrainer"), "Format-Serving")
    classifier_dir = os.path.join(latest_uri(store, "Model", "GenderClassifierTrainer"), "Format-Serving")
    matcher_dir = os.path.join(latest_uri(store, "Model", "MatcherTrainer"), "Format-Serving")
    image_size = int(load_metadata(san_dir)["image_size"])
    data = load_test_split(latest_uri(store, "Examples", "CelebAExampleGen"), image_size)

    sanitizer = tf.saved_model.load(san_dir).signatures["sanitize_faces"]
    classifier = keras.models.load_model(classifier_dir, compile=False)
    matcher = keras.models.load_model(matcher_dir, compile=False)
    images = {name: [] for name in OUTPUTS}
    for start in range(0, int(data["faces"].shape[0]), 64):
        faces = data["faces"][start:start + 64]
        out = sanitizer(faces=faces)
        for name, key in (("original", None), ("same", "same"), ("neutral", "neutral"), ("sanitized", "sanitized")):
            images[name].append(faces if key is None else out[key])
    images = {name: tf.concat(parts, 0) for name, parts in images.items()}

    male = data["male"]
    gallery = matcher.predict(images["original"], batch_size=64, verbose=0)
    result = {"test_faces": int(len(male)), "test_identities": int(len(set(data["identity"]))),
              "gender_accuracy": {}, "matcher": {}}
    for name, image in images.items():
        predicted = classifier.predict(image, batch_size=64, verbose=0)[:, 1] >= 0.5
        result["gender_accuracy"][name] = float(np.mean(predicted == male))
        genuine, impostor = genuine_impostor(matcher.predict(image, batch_size=64, verbose=0) @ gallery.T,
                                             data["identity"])
        result["matcher"][name] = {"genuine_mean": float(genuine.mean()), "impostor_mean": float(impostor.mean()),
                                   "genuine_pairs": int(genuine.size)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.san_effect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR, help="the pipeline run's --work-dir")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.work_dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"test split: {result['test_faces']} faces of {result['test_identities']} unseen identities "
          "(auxiliary networks = the ones the SAN trained against)")
    print(f"{'output':10s} {'gender acc':>10s} {'genuine':>8s} {'impostor':>8s}   (matcher cosine, probe vs original gallery)")
    for name in OUTPUTS:
        matcher = result["matcher"][name]
        print(f"{name:10s} {result['gender_accuracy'][name]:10.1%} {matcher['genuine_mean']:8.3f} "
              f"{matcher['impostor_mean']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
