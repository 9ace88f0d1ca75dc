"""`create_pipeline(config)`: wires the components, nothing else."""

from __future__ import annotations

import json
import os

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import pipeline as tfx_pipeline

from components.celeba.example_gen import CelebAExampleGen
from components.evaluation.component import SanitizerEvaluator
from components.evaluation.config import SYNTHETIC
from components.evaluation.judge_trainer import JudgeTrainer
from components.training.reports import ReportingExecutor
from components.training.san_trainer import SanTrainer, VertexSanTrainer
from components.validation.gate import ValidationGate
from pipelines.config import Config
from pipelines.sanitize.component import BulkSanitizer
from trainer.san import CHECKPOINT_ROOT_KEY

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
GENDER_CLASSIFIER_RUN_FN = "trainer.gender_classifier.run_fn"
MATCHER_RUN_FN = "trainer.matcher.run_fn"
SAN_RUN_FN = "trainer.san.run_fn"


def create_components(config: Config) -> list:
    example_gen = CelebAExampleGen(data_root=config.data_root, image_size=config.image_size)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_file)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    validation_gate = ValidationGate(anomalies=example_validator.outputs["anomalies"],
                                     statistics=statistics_gen.outputs["statistics"],
                                     policy_attributes_json=json.dumps(list(config.training.policy.attributes)))

    training_config = config.training.to_custom_config()
    # On Vertex AI Training, TFX's Vertex trainer executors read the job spec from custom_config.
    on_vertex = config.vertex_training is not None
    trainer_config = {**training_config, **(config.vertex_training.trainer_custom_config() if on_vertex else {})}
    trainer_component = tfx.extensions.google_cloud_ai_platform.Trainer if on_vertex else tfx.components.Trainer
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=training_config,
        # The trainers apply the transform graph in their input pipeline; materializing would
        # store the per-dataset prototypes once per example.
        materialize=False,  # prototypes are analyzed on the train split only (the default)
        # Statistics of the raw data come from StatisticsGen; those of the transformed features would
        # describe three prototype images per example (24 s of the 44 s the Transform took on the
        # laptop run, 2026-11-26) and nothing reads them.
        disable_statistics=True,
    )
    transform.add_upstream_node(validation_gate)

    def trainer(node_id: str, run_fn: str, executor=None) -> tfx.components.Trainer:
        # `executor`: a local executor class replacing TFX's GenericExecutor (not on Vertex AI).
        extra = {} if on_vertex or executor is None else {
            "custom_executor_spec": executor_spec.ExecutorClassSpec(executor)}
        return trainer_component(
            **extra,
            run_fn=run_fn,
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=trainer_config,
        ).with_id(node_id)

    gender_trainer = trainer("GenderClassifierTrainer", GENDER_CLASSIFIER_RUN_FN)
    if config.matcher_model:
        matcher = tfx.dsl.Importer(
            source_uri=config.matcher_model, artifact_type=tfx.types.standard_artifacts.Model
        ).with_id("MatcherImporter")
    else:
        # Records the matcher's TMR on unseen eval identities in ML Metadata (components/training/reports.py).
        matcher = trainer("MatcherTrainer", MATCHER_RUN_FN, ReportingExecutor)
    # The SAN trains against both frozen networks: the classifier as the Trainer's base model,
    # the matcher on the extra input of the SanTrainer component.
    san_trainer = (VertexSanTrainer if on_vertex else SanTrainer)(
        run_fn=SAN_RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        base_model=gender_trainer.outputs["model"],
        matcher_model=matcher.outputs["result" if config.matcher_model else "model"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={**trainer_config, CHECKPOINT_ROOT_KEY: os.path.join(config.work_dir, "checkpoints")},
    ).with_id("SanTrainer")

    # Independent judges: trained here (synthetic) or pretrained (real faces), never fed to the SAN.
    judge_names = config.evaluation.judges_for(synthetic_data=config.data is None)
    judge_trainer = None
    if SYNTHETIC in judge_names:
        judge_trainer = JudgeTrainer(
            examples=example_gen.outputs["examples"],
            image_size=config.image_size,
            seed=config.evaluation.judge_seed,
            max_train_faces=config.evaluation.judge_max_train_faces,
            cnn_epochs=config.evaluation.cnn_epochs,
            cnn_matcher_epochs=config.evaluation.cnn_matcher_epochs,
            # judges of the privacy policy's other attributes (gender has its own above)
            attributes_json=json.dumps(list(config.training.policy.other_attributes)),
        )
        judge_trainer.add_upstream_node(validation_gate)
    evaluator = SanitizerEvaluator(
        examples=example_gen.outputs["examples"],
        model=san_trainer.outputs["model"],
        judges=judge_trainer.outputs["judges"] if judge_trainer else None,
        gate_json=config.gate.to_json(),
        evaluation_json=config.evaluation.to_json(),
        judge_names=json.dumps(judge_names),
        data_label=(f"real data from {config.data}" if config.data else
                    "SYNTHETIC faces: the embedded synthetic CelebA-layout data (drawn faces, not CelebA)"),
    )
    pusher = tfx.components.Pusher(
        model=san_trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)
        ),
    )
    components = [example_gen, statistics_gen, schema_gen, example_validator, validation_gate, transform,
                  gender_trainer, matcher, san_trainer, *([judge_trainer] if judge_trainer else []), evaluator, pusher]
    if config.sanitize_test_split:  # the bulk job on the test split with the pushed model
        components.append(BulkSanitizer(examples=example_gen.outputs["examples"],
                                        pushed_model=pusher.outputs["pushed_model"], split="test",
                                        beam_args_json=json.dumps(list(config.beam_pipeline_args))))
    return components


def create_pipeline(config: Config, metadata_connection_config=None) -> tfx_pipeline.Pipeline:
    """The pipeline; `metadata_connection_config` is given by local runners (Vertex brings its own)."""
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
