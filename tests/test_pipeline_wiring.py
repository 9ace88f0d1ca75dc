"""create_pipeline wiring without running it: matcher trained or imported, trainers local or on Vertex."""

import json

from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor

from pipelines.config import Config, VertexTrainingConfig
from pipelines.pipeline import create_components


def _by_id(config):
    return {component.id: component for component in create_components(config)}


def _custom_config(component):
    return json.loads(component.exec_properties["custom_config"])


def test_default_pipeline_trains_everything_locally():
    components = _by_id(Config())
    assert list(components) == ["CelebAExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                                "ValidationGate", "Transform", "GenderClassifierTrainer", "MatcherTrainer",
                                "SanTrainer", "JudgeTrainer", "SanitizerEvaluator", "Pusher"]
    san = components["SanTrainer"]
    assert san.inputs["base_model"].producer_component_id == "GenderClassifierTrainer"
    assert san.inputs["matcher_model"].producer_component_id == "MatcherTrainer"
    assert san.executor_spec.executor_class.__name__ == "Executor"
    assert "ai_platform_training_args" not in _custom_config(san)
    # ValidationGate must pass before Transform starts.
    assert "ValidationGate" in {node.id for node in components["Transform"].upstream_nodes}
    # Transform computes no statistics: nobody reads them (StatisticsGen has the raw data's).
    assert components["Transform"].exec_properties["disable_statistics"]


def test_imported_matcher_replaces_the_matcher_trainer():
    components = _by_id(Config(matcher_model="gs://bucket/vggface"))
    assert "MatcherTrainer" not in components
    importer = components["MatcherImporter"]
    assert importer.exec_properties["artifact_uri"] == "gs://bucket/vggface"
    assert components["SanTrainer"].inputs["matcher_model"].producer_component_id == "MatcherImporter"


def test_vertex_training_puts_every_trainer_on_a_gpu_job():
    vertex = VertexTrainingConfig(project="my-project", region="europe-west4", image_uri="europe-docker.pkg.dev/p/r/facesan:1",
                                  machine_type="n1-standard-16", accelerator_type="NVIDIA_TESLA_V100",
                                  accelerator_count=2)
    components = _by_id(Config(vertex_training=vertex))
    for node in ("GenderClassifierTrainer", "MatcherTrainer", "SanTrainer"):
        component = components[node]
        custom = _custom_config(component)
        assert custom["ai_platform_enable_vertex"] is True
        assert custom["ai_platform_vertex_region"] == "europe-west4"
        [pool] = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
        assert pool["machine_spec"] == {"machine_type": "n1-standard-16", "accelerator_type": "NVIDIA_TESLA_V100",
                                        "accelerator_count": 2}
        assert pool["container_spec"]["image_uri"] == "europe-docker.pkg.dev/p/r/facesan:1"
        executor = component.executor_spec.executor_class
        assert issubclass(executor, vertex_trainer_executor.GenericExecutor)
        assert executor().\
            _GetExecutorClass().__module__ == ("components.training.san_trainer" if node == "SanTrainer"
                                               else "tfx.components.trainer.executor")
    # Transform's configuration (and so its cache key) does not depend on where trainers run.
    assert "ai_platform_training_args" not in json.loads(components["Transform"].exec_properties["custom_config"])


def test_real_data_is_judged_by_the_pretrained_real_face_judges():
    components = _by_id(Config(data="/data/celeba"))
    assert "JudgeTrainer" not in components
    evaluator = components["SanitizerEvaluator"]
    assert json.loads(evaluator.exec_properties["judge_names"]) == ["dlib", "onnx_gender"]
    assert "judges" not in evaluator.inputs or evaluator.inputs["judges"] is None
    assert "/data/celeba" in evaluator.exec_properties["data_label"]


def test_synthetic_data_is_labelled_and_judged_by_the_trained_judges():
    evaluator = _by_id(Config())["SanitizerEvaluator"]
    assert evaluator.inputs["judges"].producer_component_id == "JudgeTrainer"
    assert "SYNTHETIC" in evaluator.exec_properties["data_label"]
