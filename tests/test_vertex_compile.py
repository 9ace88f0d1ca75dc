"""`--runner vertex --compile-only` compiles the real pipeline offline into a Vertex AI spec."""

import json

import pytest

from pipelines import run

ARGS = ["--runner", "vertex", "--compile-only", "--project", "my-project", "--region", "europe-west4",
        "--bucket", "gs://my-bucket", "--image", "europe-docker.pkg.dev/my-project/facesan/pipeline:1",
        "--data", "gs://my-bucket/celeba", "--gpu-type", "NVIDIA_TESLA_V100", "--gpu-count", "2",
        "--dataflow-max-workers", "25", "--image-size", "224"]
IMAGE = "europe-docker.pkg.dev/my-project/facesan/pipeline:1"


def _parameter(task, name):
    value = task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
    return next(iter(value.values()))


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("vertex") / "spec.json"
    assert run.main([*ARGS, "--spec-file", str(path)]) == 0
    return json.loads(path.read_text())["pipelineSpec"]


def test_every_component_is_compiled_with_the_image(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"CelebAExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                          "ValidationGate", "Transform", "GenderClassifierTrainer", "MatcherTrainer", "SanTrainer",
                          "SanitizerEvaluator", "Pusher"}
    assert "ValidationGate" in tasks["Transform"]["dependentTasks"]
    executors = spec["deploymentSpec"]["executors"]
    assert {executor["container"]["image"] for executor in executors.values()} == {IMAGE}


def test_trainers_run_on_vertex_training_gpus(spec):
    tasks = spec["root"]["dag"]["tasks"]
    for node in ("GenderClassifierTrainer", "MatcherTrainer", "SanTrainer"):
        custom = json.loads(_parameter(tasks[node], "custom_config"))
        assert custom["ai_platform_enable_vertex"] is True and custom["ai_platform_vertex_region"] == "europe-west4"
        [pool] = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
        assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_V100"
        assert pool["machine_spec"]["accelerator_count"] == 2
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert custom["image_size"] == 224
        assert custom["require_gpu"] is True  # a Trainer given GPUs it cannot see fails, never trains on the CPU
    san_args = spec["deploymentSpec"]["executors"]["SanTrainer_executor"]["container"]["args"]
    assert san_args[san_args.index("--executor_class_path") + 1] == "components.training.san_trainer.VertexExecutor"


def test_beam_components_get_dataflow_arguments(spec):
    executors = spec["deploymentSpec"]["executors"]
    for node in ("CelebAExampleGen", "StatisticsGen", "Transform"):
        args = executors[f"{node}_executor"]["container"]["args"]
        for expected in ("--runner=DataflowRunner", "--project=my-project", "--region=europe-west4",
                         "--temp_location=gs://my-bucket/facesan/dataflow-tmp", "--max_num_workers=25",
                         f"--sdk_container_image={IMAGE}"):
            assert expected in args, (node, expected)


def test_parameters_are_wired(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert _parameter(tasks["CelebAExampleGen"], "data_root") == "gs://my-bucket/celeba"
    assert int(_parameter(tasks["CelebAExampleGen"], "image_size")) == 224
    assert _parameter(tasks["ImportSchemaGen"], "schema_file") == "/facesan/schemas/schema.pbtxt"
    assert "gs://my-bucket/facesan/serving_model" in _parameter(tasks["Pusher"], "push_destination")


@pytest.mark.parametrize("drop,message", [
    ("--image", "--image (the pipeline image"),
    ("--data", "--data must be the CelebA layout in a gs:// bucket"),
    ("--project", "--project (the Google Cloud project) is required"),
])
def test_missing_settings_are_named(tmp_path, drop, message):
    args = list(ARGS)
    index = args.index(drop)
    del args[index:index + 2]
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        run.main([*args, "--spec-file", str(tmp_path / "spec.json")])


def test_submitting_without_credentials_says_what_to_do(tmp_path, monkeypatch):
    # No credentials anywhere, and no probe of the GCE metadata server (no network here).
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    spec = tmp_path / "spec.json"
    with pytest.raises(SystemExit, match="no Google Cloud credentials.*gcloud auth application-default login"):
        run.main([a for a in ARGS if a != "--compile-only"] + ["--spec-file", str(spec)])
    assert spec.exists()  # compiled before the submission was refused


def test_a_bad_cron_is_refused_before_compiling(tmp_path):
    spec = tmp_path / "spec.json"
    with pytest.raises(SystemExit, match="five-field cron expression"):
        run.main([*ARGS, "--schedule", "every monday", "--spec-file", str(spec)])
    assert not spec.exists()


def test_schedule_creates_a_recurring_vertex_run(tmp_path, monkeypatch):
    """No cloud here: google.auth and aiplatform.PipelineJob are replaced by recorders, so this checks
    what the command asks Vertex AI for, not that Vertex AI accepts it."""
    import google.auth
    from google.cloud import aiplatform

    calls = {}

    class RecordingJob:
        def __init__(self, **kwargs):
            calls["job"] = kwargs

        def create_schedule(self, **kwargs):
            calls["schedule"] = kwargs
            return type("Schedule", (), {"resource_name": "projects/p/locations/r/schedules/1"})()

        def submit(self, **kwargs):
            raise AssertionError("--schedule must not submit a one-off run")

    monkeypatch.setattr(google.auth, "default", lambda: (object(), "my-project"))
    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: calls.setdefault("init", kwargs))
    monkeypatch.setattr(aiplatform, "PipelineJob", RecordingJob)
    spec = tmp_path / "spec.json"
    args = [a for a in ARGS if a != "--compile-only"]
    assert run.main([*args, "--spec-file", str(spec), "--service-account", "facesan@p.iam.gserviceaccount.com",
                     "--schedule", "0 3 * * 1", "--schedule-time-zone", "Europe/Berlin"]) == 0
    assert calls["init"] == {"project": "my-project", "location": "europe-west4"}
    assert calls["job"]["template_path"] == str(spec) and spec.exists()
    assert calls["job"]["pipeline_root"].startswith("gs://my-bucket/facesan")
    assert calls["schedule"]["cron"] == "TZ=Europe/Berlin 0 3 * * 1"
    assert calls["schedule"]["max_concurrent_run_count"] == 1
    assert calls["schedule"]["service_account"] == "facesan@p.iam.gserviceaccount.com"
