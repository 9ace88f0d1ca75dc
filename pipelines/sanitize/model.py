"""The sanitizer a job runs: which SavedModel (resolve_model, model_facts) and how RunInference
calls it (SanitizerModelHandler)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines.sanitize.layout import NAMESPACE, InferenceFailed, ModelFacts, matching
from trainer.export import load_metadata
from trainer.policy import PrivacyPolicy


def _saved_models_under(folder: str) -> list[str]:
    found = FileSystems.match([FileSystems.join(folder, "*", "saved_model.pb")])[0].metadata_list
    return [posixpath.dirname(meta.path) if "://" in meta.path else os.path.dirname(meta.path) for meta in found]


def _newest(model_dirs: list[str]) -> str:
    def version_key(path):
        name = os.path.basename(path.rstrip("/"))
        return (0, int(name), name) if name.isdigit() else (1, 0, name)

    return max(model_dirs, key=version_key)


def resolve_model(model: str | None, default_serving_dir: str) -> tuple[str, str]:
    """(model dir, how it was chosen); without --model, the newest under the local pipeline's serving dir."""
    if model is None:
        serving_dir = default_serving_dir
        candidates = _saved_models_under(serving_dir)
        if not candidates:
            raise SystemExit(f"error: no --model given and no pushed model under {serving_dir}. Train and push one "
                             "(python -m pipelines.run --runner DirectRunner; only blessed models are pushed) or "
                             "pass --model <SavedModel dir>.")
        return _newest(candidates), f"newest blessed model pushed by the local pipeline under {serving_dir}"
    model = model.rstrip("/")
    if FileSystems.exists(FileSystems.join(model, "saved_model.pb")):
        return model, "--model"
    candidates = _saved_models_under(model)
    if candidates:
        return _newest(candidates), f"newest version under --model {model}"
    raise SystemExit(f"error: --model {model} is not a SavedModel (no saved_model.pb) nor a folder of versioned "
                     "SavedModels. Pass the Pusher's output (serving_model/<version>) or the folder holding them.")


def model_facts(model_dir: str) -> ModelFacts:
    """Version (the pushed version folder's name), SHA-256 over all of its files, face size."""
    files = matching(FileSystems.join(model_dir, "**"))
    digest = hashlib.sha256()
    for path in files:
        file_digest = hashlib.sha256()
        with FileSystems.open(path) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(f"{path[len(model_dir):].lstrip('/')}\0{file_digest.hexdigest()}\n".encode())
    try:
        metadata = load_metadata(model_dir)
        image_size = int(metadata["image_size"])
    except Exception as error:
        raise SystemExit(f"error: cannot read the sanitizer metadata of {model_dir} ({error}); is it a model "
                         "exported by trainer.export (the pipeline's SanTrainer/Pusher)?") from None
    policy = PrivacyPolicy.from_dict(metadata.get("policy"))
    precisions = tuple(metadata.get("precisions", ModelFacts.precisions))
    return ModelFacts(model_dir, os.path.basename(model_dir.rstrip("/")), digest.hexdigest(), image_size,
                      tuple(policy.suppress), precisions, json.dumps(policy.to_dict(), sort_keys=True))


# One model call at a time per process: each call already spreads over every core (TensorFlow's
# thread pools are per process), and two worker threads' calls at once held two batches'
# activations at the same moment (a batch of 16 faces at 224x224 has layers of 16x224x224x64
# floats, 205 MB each): the job's peak was about 250 MiB higher with them (README, "Memory").
_ONE_CALL_AT_A_TIME = threading.Lock()


def faces_in(element) -> int:
    """Batch weight of a RunInference element: its faces ([k,S,S,1], or keyed (context, faces))."""
    faces = element[1] if isinstance(element, tuple) else element
    return max(1, len(faces))


class SanitizerModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
    """RunInference handler for the exported sanitizer SavedModel (local or gs://).

    An element is one photo's aligned gray faces [k, S, S, 1]; a batch concatenates them into one
    call of the lean `sanitize_only` signature (the `sanitized` output alone) and splits the sanitized faces back per photo. Beam
    loads one model per worker process and shares it between its threads.

    (Beam's own `tensorflow_inference.TFModelHandlerNumpy` cannot be imported in this project's
    environment: it imports tensorflow_hub, which TFX 1.16 pins to 0.15, and that version needs
    `tf.compat.v1.estimator`, gone in TF 2.16; it would also load through `tf.keras`, while the
    sanitizer is a plain SavedModel with signatures.)
    """

    def __init__(self, model_path: str, max_batch_size: int, signature: str = "sanitize_only", tf_threads: int = 0):
        """`signature`: sanitize_only, or sanitize_only_<precision> (trainer.export.signature_name)."""
        self._model_path = model_path
        self._max_batch_size = max_batch_size
        self._signature = signature
        self._tf_threads = tf_threads

    def load_model(self):
        if self._tf_threads:
            try:  # several worker processes on one machine: share the cores instead of oversubscribing
                tf.config.threading.set_intra_op_parallelism_threads(self._tf_threads)
                tf.config.threading.set_inter_op_parallelism_threads(self._tf_threads)
            except RuntimeError:  # TensorFlow already initialized in this process; keep its setting
                pass
        return tf.saved_model.load(self._model_path)

    def update_model_path(self, model_path: str | None = None):
        self._model_path = model_path or self._model_path

    def run_inference(self, batch: Sequence[np.ndarray], model, inference_args=None) -> Iterable[PredictionResult]:
        """One model call for the batch; if it raises, one call per photo, so that only the photos the
        model fails on are rejected (as InferenceFailed results), not their batch neighbours."""
        counts = [len(faces) for faces in batch]
        try:
            outputs = self.sanitize(model, np.concatenate(batch))
        except Exception:  # noqa: BLE001 (found out per photo below)
            for faces in batch:
                try:
                    yield PredictionResult(faces, self.sanitize(model, faces), self._model_path)
                except Exception as error:  # noqa: BLE001 (this photo goes to the dead letter)
                    yield PredictionResult(faces, InferenceFailed(f"{type(error).__name__}: {error}"), self._model_path)
            return
        for faces, sanitized in zip(batch, np.split(outputs, np.cumsum(counts)[:-1])):
            yield PredictionResult(faces, sanitized, self._model_path)

    def sanitize(self, model, faces: np.ndarray) -> np.ndarray:
        # Models exported before the lean `sanitize_only` signature existed: their full float32 one
        # (only for float32: a missing reduced-precision signature is an error, never float32 instead).
        name = self._signature
        if name == "sanitize_only" and name not in model.signatures:
            name = "sanitize_faces"
        with _ONE_CALL_AT_A_TIME:
            return model.signatures[name](faces=tf.constant(faces))["sanitized"].numpy()

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(faces.nbytes for faces in batch)

    def batch_elements_kwargs(self):
        # Full batches (a bundle's last one may be smaller): the forward pass dominates the cost.
        # Counted in faces, not photos: a group photo adds its k faces, so a batch of group photos
        # is no larger a model call than one of single faces.
        return {"min_batch_size": self._max_batch_size, "max_batch_size": self._max_batch_size,
                "element_size_fn": faces_in}

    def get_metrics_namespace(self) -> str:
        return NAMESPACE + "_inference"
