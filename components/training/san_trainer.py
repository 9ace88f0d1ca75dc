"""SanTrainer: TFX's Trainer with one more input, the frozen face matcher R(X).

TFX's Trainer has a single `base_model` input; the SAN needs two frozen networks (the gender
classifier as `base_model`, the matcher as `matcher_model`). The executor is TFX's own
GenericExecutor; it only adds the matcher's path to the run_fn's custom_config, and records the
exported sanitizer's privacy policy and architecture on its Model artifact in ML Metadata.
"""

import json

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils, path_utils

from trainer.export import load_metadata
from trainer.san import MATCHER_MODEL_KEY

MATCHER_INPUT = "matcher_model"


class SanTrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              MATCHER_INPUT: ChannelParameter(type=standard_artifacts.Model, optional=True)}


def model_path(model: types.Artifact) -> str:
    """A trained Model artifact keeps its SavedModel under Format-Serving; an imported one at its URI."""
    serving = path_utils.serving_model_path(model.uri)
    return serving if fileio.exists(serving) else model.uri


class Executor(trainer_executor.GenericExecutor):
    def _GetFnArgs(self, input_dict, output_dict, exec_properties):
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        if input_dict.get(MATCHER_INPUT):
            matcher = artifact_utils.get_single_instance(input_dict[MATCHER_INPUT])
            fn_args.custom_config = {**(fn_args.custom_config or {}), MATCHER_MODEL_KEY: model_path(matcher)}
        return fn_args

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        record_model_facts(model, load_metadata(model_path(model)))


def record_model_facts(model: types.Artifact, metadata: dict) -> None:
    """What the sanitizer hides and keeps, as custom properties of its Model artifact (ML Metadata)."""
    policy = metadata.get("policy") or {}
    model.set_string_custom_property("privacy_policy", json.dumps(policy, sort_keys=True))
    model.set_string_custom_property("policy_name", str(policy.get("name", "")))
    model.set_string_custom_property("policy_suppress", ",".join(policy.get("suppress", [])))
    model.set_string_custom_property("policy_preserve", ",".join(policy.get("preserve", [])))
    model.set_string_custom_property("architecture", str(metadata.get("architecture", "")))


class SanTrainer(base_component.BaseComponent):
    SPEC_CLASS = SanTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples, transform_graph, schema, base_model, run_fn: str, custom_config: dict,
                 matcher_model=None, train_args=None, eval_args=None):
        super().__init__(spec=SanTrainerSpec(
            examples=examples,
            transform_graph=transform_graph,
            schema=schema,
            base_model=base_model,
            matcher_model=matcher_model,
            train_args=train_args or trainer_pb2.TrainArgs(),
            eval_args=eval_args or trainer_pb2.EvalArgs(),
            run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        ))


class VertexExecutor(vertex_trainer_executor.GenericExecutor):
    """Runs the SanTrainer executor above as a Vertex AI Training job (GPU), like TFX's Vertex Trainer."""

    def _GetExecutorClass(self):
        return Executor


class VertexSanTrainer(SanTrainer):
    """SanTrainer on Vertex AI Training: needs the ai_platform_* entries in custom_config."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexExecutor)
