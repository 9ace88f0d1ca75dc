"""SanitizerEvaluator: measures privacy and utility of an exported sanitizer and blesses it.

This first version judges with the auxiliary gender classifier carried inside the exported model
(the network the SAN was trained against, so it is NOT an independent judge; independent judges
come with the evaluator issue). Metrics per output (original, SM, NT, OP) on the chosen split:
gender error rate of the judge, and SSIM / PSNR of the perturbed face against the original.
"""


import dataclasses
import json
import logging
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from pipelines.config import GateConfig
from trainer.data import aligned_face_batches
from trainer.export import load_metadata

METRICS_FILE = "metrics.json"
GRID_FILE = "examples_grid.png"  # rows: original, SM, NT, OP
OUTPUTS = ("original", "same", "neutral", "opposite")
JUDGE = "auxiliary_gender_classifier (trained jointly, not independent)"


def example_grid(images: dict, columns: int = 8) -> tf.Tensor:
    """Up to `columns` faces per row, one row per output (original, SM, NT, OP), as in the paper's
    Figure 5: uint8 [4*S, columns*S, 1]."""
    rows = [tf.concat(tf.unstack(images[name][:columns]), axis=1) for name in OUTPUTS]
    return tf.image.convert_image_dtype(tf.concat(rows, axis=0), tf.uint8, saturate=True)


def evaluate_sanitizer(model_dir: str, file_patterns: list[str], batch_size: int = 64,
                       grid_path: str | None = None) -> dict:
    """Runs the exported sanitizer over every example and returns the metrics dict; writes an
    example grid of the first batch's faces to `grid_path` if given."""
    model = tf.saved_model.load(model_dir)
    image_size = int(load_metadata(model_dir)["image_size"])
    sanitize = model.signatures["sanitize_faces"]
    classify = model.signatures["classify_gender"]
    errors = {name: 0.0 for name in OUTPUTS}
    ssim = {name: 0.0 for name in OUTPUTS[1:]}
    psnr = {name: 0.0 for name in OUTPUTS[1:]}
    count = 0
    for batch in aligned_face_batches(file_patterns, image_size, batch_size):
        faces, male = batch["face"], batch["male"]
        outputs = sanitize(faces=faces)
        images = {"original": faces, "same": outputs["same"], "neutral": outputs["neutral"],
                  "opposite": outputs["sanitized"]}
        if grid_path and not count:
            with tf.io.gfile.GFile(grid_path, "wb") as handle:
                handle.write(tf.io.encode_png(example_grid(images)).numpy())
        for name, image in images.items():
            predicted = tf.cast(classify(faces=image)["male_probability"] >= 0.5, tf.int64)
            errors[name] += float(tf.reduce_sum(tf.cast(predicted != male, tf.float32)))
            if name != "original":
                ssim[name] += float(tf.reduce_sum(tf.image.ssim(faces, image, max_val=1.0)))
                psnr[name] += float(tf.reduce_sum(tf.image.psnr(faces, image, max_val=1.0)))
        count += int(male.shape[0])
    if not count:
        raise ValueError(f"no examples found in {file_patterns}")
    return {
        "num_examples": count,
        "judge": JUDGE,
        "gender_error_rate": {name: errors[name] / count for name in OUTPUTS},
        "ssim": {name: ssim[name] / count for name in ssim},
        "psnr": {name: psnr[name] / count for name in psnr},
    }


def decide_blessing(metrics: dict, gate: GateConfig) -> tuple[bool, list[str]]:
    """(blessed, failures): each failure names the threshold and by how much it was missed."""
    error = metrics["gender_error_rate"]
    failures = []
    if error["opposite"] < gate.min_op_gender_error:
        failures.append(f"gender error on X'_OP {error['opposite']:.3f} < min_op_gender_error "
                        f"{gate.min_op_gender_error:.3f} (short by {gate.min_op_gender_error - error['opposite']:.3f})")
    if error["original"] > gate.max_original_gender_error:
        failures.append(f"gender error on originals {error['original']:.3f} > max_original_gender_error "
                        f"{gate.max_original_gender_error:.3f} (over by {error['original'] - gate.max_original_gender_error:.3f})")
    if error["same"] > gate.max_sm_gender_error:
        failures.append(f"gender error on X'_SM {error['same']:.3f} > max_sm_gender_error "
                        f"{gate.max_sm_gender_error:.3f} (over by {error['same'] - gate.max_sm_gender_error:.3f})")
    return not failures, failures


@tfx.dsl.components.component
def SanitizerEvaluator(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    evaluation: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    gate_json: tfx.dsl.components.Parameter[str],
    split: tfx.dsl.components.Parameter[str] = "test",
) -> None:
    """Evaluates the exported sanitizer on `split` and writes metrics.json and the blessing."""
    gate = GateConfig(**json.loads(gate_json))
    model_dir = os.path.join(model.uri, "Format-Serving")
    split_uri = artifact_utils.get_split_uri([examples], split)
    tf.io.gfile.makedirs(evaluation.uri)
    grid_path = os.path.join(evaluation.uri, GRID_FILE)
    metrics = evaluate_sanitizer(model_dir, [os.path.join(split_uri, "*")], grid_path=grid_path)
    blessed, failures = decide_blessing(metrics, gate)
    result = {**metrics, "split": split, "gate": dataclasses.asdict(gate), "blessed": blessed,
              "failed_thresholds": failures, "model": model.uri, "example_grid": grid_path}
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as handle:
        handle.write(json.dumps(result, indent=2))
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as handle:
        handle.write("\n".join(failures))
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("current_model", model.uri)
    logging.info("SanitizerEvaluator: %s", json.dumps(result["gender_error_rate"]))
    if blessed:
        logging.info("SanitizerEvaluator: model blessed")
    else:
        logging.warning("SanitizerEvaluator: model NOT blessed: %s", "; ".join(failures))
