"""SanitizerEvaluator: the TFX component over the evaluator library (evaluator.py).

Judges the exported sanitizer with the independent judges, writes metrics.json, the report and
the ModelEvaluation's key figures into ML Metadata, and a ModelBlessing the Pusher reads.
"""

import json
import logging
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.evaluation.config import EvaluationConfig, GateConfig
from components.evaluation.evaluator import record_in_metadata, run_evaluation


@tfx.dsl.components.component
def SanitizerEvaluator(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    evaluation: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    gate_json: tfx.dsl.components.Parameter[str],
    evaluation_json: tfx.dsl.components.Parameter[str],
    judge_names: tfx.dsl.components.Parameter[str],
    data_label: tfx.dsl.components.Parameter[str],
    judges: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model] = None,
) -> None:
    """Evaluates the exported sanitizer with the independent judges; writes metrics, report and blessing."""
    gate = GateConfig.from_json(gate_json)
    settings = EvaluationConfig.from_json(evaluation_json)
    patterns = {split: [os.path.join(artifact_utils.get_split_uri([examples], split), "*")]
                for split in settings.splits}
    tf.io.gfile.makedirs(evaluation.uri)
    train_patterns = [os.path.join(artifact_utils.get_split_uri([examples], "train"), "*")]
    result = run_evaluation(os.path.join(model.uri, "Format-Serving"), patterns, judges.uri if judges else None,
                            json.loads(judge_names), data_label, settings, gate, evaluation.uri, model.uri,
                            train_patterns=train_patterns)
    record_in_metadata(evaluation, result)
    blessed, failures = result["blessed"], result["failed_thresholds"]
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as handle:
        handle.write("\n".join(failures))
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("current_model", model.uri)
    logging.info("SanitizerEvaluator: report %s", result["report"]["html"])
    if blessed:
        logging.info("SanitizerEvaluator: model blessed")
    else:
        logging.warning("SanitizerEvaluator: model NOT blessed: %s", "; ".join(failures))
