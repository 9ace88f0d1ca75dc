"""The exported sanitizer: a self-contained SavedModel with prototypes and preprocessing baked in.

Signatures (N images, S = the trained image size):
- `serving_default(image_bytes: string [N])`: encoded aligned faces (JPEG/PNG, any size; resized
  to S) -> sanitized (OP) faces.
- `sanitize_faces(faces: float32 [N,S,S,1] in [0,1])`: aligned gray faces -> sanitized faces.
- `sanitize_only(faces)`: the same `sanitized` output and nothing else (no SM/NT/OP, no PNG; the
  gender classifier runs only for the paper's SAN, whose output follows the gender): what the
  bulk job calls.
- `sanitize_labelled_faces(faces, male: int64 [N])`: the same, with the true gender given.
- `classify_gender(faces: float32 [N,S,S,1])`: the auxiliary classifier's male probability.
- `sanitize_only_<precision>` and `sanitize_faces_<precision>` for each reduced precision the model
  was exported with (TrainingConfig.serving_precisions, default bfloat16): the same networks
  computed in bfloat16 / float16 (float32 in and out); the bulk job's `--precision` picks one, the
  evaluator's `serving_precision` judges one.

Outputs of the sanitize signatures: `sanitized` (what the bulk job writes), `same` (X'_SM),
`neutral` (X'_NT), `opposite` (X'_OP), each [N,S,S,1] float32 in [0,1], and `male_probability`
[N]; `serving_default` also gives `sanitized_png` (string [N]). Gender is unknown at inference: the auxiliary classifier predicts
it and SM/NT/OP follow it. `sanitized` is X'_OP for the paper's SAN; for the residual sanitizer
it is the output for a target gender drawn per face from a fingerprint of its thumbnail
(`hashed_targets`): independent of the gender, and the same every time the same face is given,
so the evaluator and the bulk job see the same output.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import tensorflow as tf

from trainer.identity_replacement import face_fingerprints
from trainer.preprocessing import decode_face_images, to_model_input

METADATA_FILE = "sanitizer_metadata.json"
PROTOTYPES_FILE = "prototypes.png"  # female | neutral | male prototype, for a person to look at
MODEL_FORMAT_VERSION = "1"


def hashed_targets(faces: tf.Tensor, count: int = 1) -> tf.Tensor:
    """[N,S,S,1] faces in [0,1] -> target values 0.0 / 1.0, [N] (count 1: gender) or [N,count] (one
    per suppressed attribute): bits of a fingerprint (farmhash) of each face's 16x16 area-averaged
    thumbnail at 5 bits per pixel. Unrelated to the attributes, reproducible per face, and coarse on
    purpose: float rounding differences between two decode paths of the same image (the bulk job's
    and the evaluator's) do not change the targets."""
    if not 1 <= count <= 8:
        raise ValueError(f"hashed_targets gives 1 to 8 targets per face, not {count}")
    fingerprints = face_fingerprints(faces)  # [N, 8] uint8
    bits = [tf.bitwise.bitwise_and(tf.bitwise.right_shift(fingerprints[:, 0], bit), 1) for bit in range(count)]
    return tf.cast(bits[0] if count == 1 else tf.stack(bits, axis=1), tf.float32)


def target_count(san) -> int:
    """How many targets a sanitizer is steered by: one per suppressed attribute (residual), 1 (paper)."""
    return int(getattr(san, "targets", 1))


DECRYPT_SIGNATURE = "decrypt_faces"  # obfuscating (DDM) sanitizers only: faces -> {"decrypted"}


def signature_name(base: str, precision: str = "float32") -> str:
    """`sanitize_only` / `sanitize_faces` for float32, with `_<precision>` for a reduced precision."""
    return base if precision == "float32" else f"{base}_{precision}"


class _Networks(tf.Module):
    """One precision's sanitizer and classifier, with the prototypes they use."""

    def __init__(self, san, classifier, owner: "SanitizerModule"):
        super().__init__()
        self.san, self.classifier = san, classifier
        # Bound methods, not the owner itself: the object graph stays a tree.
        self._prototypes, self._outputs = owner.prototypes, owner.outputs

    def male_probability(self, faces):
        return tf.cast(self.classifier(faces, training=False)[:, 1], tf.float32)

    def sanitize_only(self, faces):
        prototypes = self._prototypes()
        if self.san.needs_gender:
            male = tf.cast(self.male_probability(faces) >= 0.5, tf.int64)
        else:
            male = tf.zeros(tf.shape(faces)[:1], tf.int64)  # not used
        sanitized = self.san.sanitized_only(faces, male, hashed_targets(faces, target_count(self.san)), prototypes)
        return {"sanitized": tf.cast(sanitized, tf.float32)}

    def decrypt_faces(self, faces):
        """Obfuscation (DDM): the model's second mode, which undoes its encryption."""
        return {"decrypted": tf.cast(self.san.decrypt(faces), tf.float32)}

    def sanitize_faces(self, faces):
        male_probability = self.male_probability(faces)
        return self._outputs(self.san, faces, tf.cast(male_probability >= 0.5, tf.int64), male_probability)


def _one_gender_classifier(san, classifier, precision: str):
    """The classifier to serve beside `san`. A sanitizer that reads gender itself (the replacing
    sanitizer's frozen `gender_reader`, installed from the same trained classifier) serves its reader
    as the model's classifier, so the SavedModel holds one copy of those weights, not two; a reader
    whose weights differ from the classifier's is refused."""
    reader = getattr(san, "gender_reader", None)
    if reader is None or reader is classifier:
        return classifier
    mine, theirs = reader.get_weights(), classifier.get_weights()
    if len(mine) != len(theirs) or any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(mine, theirs)):
        raise ValueError(f"the {precision} sanitizer's gender reader differs from the gender classifier given for "
                         "export: install the trained classifier into the sanitizer (install(...)) before exporting")
    return reader


class SanitizerModule(tf.Module):
    def __init__(self, san, classifier, prototypes: dict, image_size: int, reduced: dict | None = None):
        """`reduced`: {precision: (sanitizer, classifier)} copies computed in reduced precision
        (trainer.models.reduced_precision_copy), each exported as its own signatures."""
        super().__init__(name="sanitizer")
        reduced = dict(reduced or {})
        for precision, network in [("float32", san)] + [(p, pair[0]) for p, pair in reduced.items()]:
            replacement = getattr(network, "replacement", None)
            if replacement is not None and float(replacement.installed.numpy()) != 1.0:
                # An uninstalled IdentityReplacement is the identity map: the model would serve the
                # faces unchanged under a policy that promises to hide the person.
                raise ValueError(f"the {precision} sanitizer's identity replacement has no statistics installed: "
                                 "call its install(statistics, gender_classifier, attribute_classifier) with "
                                 "trainer.san.replacement_statistics(...) before exporting (the SanTrainer does)")
        classifier = _one_gender_classifier(san, classifier, "float32")
        reduced = {precision: (reduced_san, _one_gender_classifier(reduced_san, reduced_classifier, precision))
                   for precision, (reduced_san, reduced_classifier) in reduced.items()}
        self.san = san
        self.classifier = classifier
        self.image_size = image_size
        self.prototype_male = tf.Variable(prototypes["male"], trainable=False, name="prototype_male")
        self.prototype_female = tf.Variable(prototypes["female"], trainable=False, name="prototype_female")
        self.prototype_neutral = tf.Variable(prototypes["neutral"], trainable=False, name="prototype_neutral")
        faces_spec = tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name="faces")
        self.networks = {"float32": _Networks(san, classifier, self)}
        for precision, (reduced_san, reduced_classifier) in (reduced or {}).items():
            self.networks[precision] = _Networks(reduced_san, reduced_classifier, self)
        self.precisions = sorted(self.networks)
        self.sanitize_faces = tf.function(self._sanitize_faces, input_signature=[faces_spec])
        self.sanitize_only = tf.function(self.networks["float32"].sanitize_only, input_signature=[faces_spec])
        self.reduced_signatures = {}
        for precision in self.precisions:
            if precision != "float32":
                networks = self.networks[precision]
                self.reduced_signatures[signature_name("sanitize_only", precision)] = tf.function(
                    networks.sanitize_only, input_signature=[faces_spec])
                self.reduced_signatures[signature_name("sanitize_faces", precision)] = tf.function(
                    networks.sanitize_faces, input_signature=[faces_spec])
        self.classify_gender = tf.function(self._male_probability, input_signature=[faces_spec])
        # An obfuscating (DDM) sanitizer can also undo what it did: whoever holds the model can.
        self.decrypt_faces = (tf.function(self.networks["float32"].decrypt_faces, input_signature=[faces_spec])
                              if hasattr(san, "decrypt") else None)
        self.sanitize_labelled_faces = tf.function(
            self._sanitize_labelled_faces, input_signature=[faces_spec, tf.TensorSpec([None], tf.int64, name="male")]
        )
        self.sanitize_image_bytes = tf.function(
            self._sanitize_image_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")]
        )

    def _male_probability(self, faces):
        return {"male_probability": self.networks["float32"].male_probability(faces)}

    def _sanitize_faces(self, faces):
        return self.networks["float32"].sanitize_faces(faces)

    def prototypes(self) -> dict:
        return {"male": self.prototype_male, "female": self.prototype_female, "neutral": self.prototype_neutral}

    def _sanitize_labelled_faces(self, faces, male):
        """When the true gender is known (e.g. evaluation), the prototypes follow it."""
        return self.outputs(self.san, faces, male, self.networks["float32"].male_probability(faces))

    def outputs(self, san, faces, male, male_probability):
        # male_probability is handed on: a replacing sanitizer groups faces by its gender reader,
        # which is this classifier (_one_gender_classifier), so the reading is not made twice.
        outputs = san.sanitizer_outputs(faces, male, hashed_targets(faces, target_count(san)), self.prototypes(),
                                        male_probability=male_probability)
        # float32 out even when the SAN computes in float16 (mixed precision on GPU).
        outputs = {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
        return {
            "sanitized": outputs["sanitized"],
            "same": outputs["same"],
            "neutral": outputs["neutral"],
            "opposite": outputs["opposite"],
            "male_probability": male_probability,
        }

    def _sanitize_image_bytes(self, image_bytes):
        """Encoded faces in; the outputs of sanitize_faces and the sanitized faces as PNG bytes out
        (only this signature encodes: the evaluator and the bulk job take tensors)."""
        outputs = self._sanitize_faces(to_model_input(decode_face_images(image_bytes, self.image_size)))
        sanitized_png = tf.map_fn(
            lambda face: tf.io.encode_png(tf.image.convert_image_dtype(face, tf.uint8, saturate=True)),
            outputs["sanitized"], fn_output_signature=tf.string,
        )
        return {**outputs, "sanitized_png": sanitized_png}


def save_sanitizer(module: SanitizerModule, export_dir: str, metadata: dict) -> None:
    record = {"format_version": MODEL_FORMAT_VERSION, "image_size": module.image_size,
              "precisions": module.precisions,
              "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **metadata}
    # Inside the SavedModel too, so a copy without the JSON file still says what it is.
    module.metadata_json = tf.Variable(json.dumps(record, sort_keys=True), trainable=False, name="metadata_json")
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            "serving_default": module.sanitize_image_bytes,
            "sanitize_faces": module.sanitize_faces,
            "sanitize_only": module.sanitize_only,
            "sanitize_labelled_faces": module.sanitize_labelled_faces,
            "classify_gender": module.classify_gender,
            **({DECRYPT_SIGNATURE: module.decrypt_faces} if module.decrypt_faces is not None else {}),
            **module.reduced_signatures,
        },
    )
    with tf.io.gfile.GFile(os.path.join(export_dir, METADATA_FILE), "w") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True))
    strip = tf.concat([module.prototype_female, module.prototype_neutral, module.prototype_male], axis=1)
    with tf.io.gfile.GFile(os.path.join(export_dir, PROTOTYPES_FILE), "wb") as handle:
        handle.write(tf.io.encode_png(tf.image.convert_image_dtype(strip, tf.uint8, saturate=True)).numpy())


def load_metadata(export_dir: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(export_dir, METADATA_FILE)) as handle:
        return json.loads(handle.read())
