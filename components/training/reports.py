"""A Trainer executor that records the run_fn's own figures in ML Metadata.

TFX's run_fn has no handle on ML Metadata; the auxiliary matcher's run_fn writes what it measured
(TMR on unseen identities) to `training_report.json` in the ModelRun directory, and this executor,
TFX's GenericExecutor otherwise, copies every number in it onto the output Model artifact as a
custom property (nested keys joined by '/'), which the launcher then publishes.
"""

from __future__ import annotations

import json
import logging
import os

from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs

from trainer.matcher import TRAINING_REPORT_FILE


def flatten(report: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1.0}, "c": "x"} -> {"a/b": 1.0}: the numbers only."""
    flat = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class ReportingExecutor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        super().Do(input_dict, output_dict, exec_properties)
        model_run = artifact_utils.get_single_uri(output_dict[standard_component_specs.MODEL_RUN_KEY])
        path = os.path.join(model_run, TRAINING_REPORT_FILE)
        if not fileio.exists(path):
            logging.warning("%s: the run_fn wrote no %s; nothing to record", type(self).__name__, TRAINING_REPORT_FILE)
            return
        with fileio.open(path) as handle:
            report = json.loads(handle.read())
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        for name, value in flatten(report).items():
            model.set_float_custom_property(name, value)
        model.set_string_custom_property("training_report", path)
