"""The bulk job on Beam's portable runner: a job service and an external SDK worker pool in their
own processes, talking the Fn API (gRPC) as Dataflow Runner v2, Flink and Spark workers do. The
driver only submits; every DoFn is shipped pickled and runs in the pool's worker process. (One
machine; the job service executes the graph with Beam's FnApiRunner. Faces are SYNTHETIC.)"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bulk_helpers import export_small_model, free_port, image_files, manifest_rows
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job

REPO = Path(__file__).resolve().parents[1]


def _wait_for(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        try:
            with socket.create_connection(("localhost", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


@pytest.fixture
def portable_services(tmp_path):
    """(job endpoint, worker pool endpoint, worker pool log) of freshly started services."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    job_port, pool_port = free_port(), free_port()
    pool_log = tmp_path / "worker_pool.log"
    processes = [
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                          "--port", str(job_port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                          f"--service_port={pool_port}"], cwd=REPO, env=env, stdout=pool_log.open("wb"),
                         stderr=subprocess.STDOUT, start_new_session=True),
    ]
    try:
        _wait_for(job_port, processes[0])
        _wait_for(pool_port, processes[1])
        yield f"localhost:{job_port}", f"localhost:{pool_port}", pool_log
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_job_runs_on_the_portable_runner_with_an_external_worker_pool(portable_services, tmp_path):
    job_endpoint, pool_endpoint, pool_log = portable_services
    model = export_small_model(tmp_path / "model" / "3")
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(1)
    for index in range(6):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)).save(buffer, "JPEG")
        (faces / f"{index}.jpg").write_bytes(buffer.getvalue())
    (faces / "broken.jpg").write_bytes(b"\xff\xd8 not really")

    portable = tmp_path / "portable"
    summary = run_job(SanitizeJobConfig(
        input=str(faces), output=str(portable), progress_every_s=0, beam_pipeline_args=[
            "--runner=PortableRunner", f"--job_endpoint={job_endpoint}", "--environment_type=EXTERNAL",
            f"--environment_config={pool_endpoint}"]), model_dir=model)
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (7, 6, 1)
    # The counters came back from the worker through the job service.
    assert summary["inputs_listed_this_run"] == 7 and summary["this_run"]["faces_sanitized"] == 6
    assert "SdkHarness" in pool_log.read_text()  # the pool started the worker that did the work

    local = tmp_path / "local"
    run_job(SanitizeJobConfig(input=str(faces), output=str(local), progress_every_s=0,
                              beam_pipeline_args=["--direct_running_mode=in_memory"]), model_dir=model)
    assert manifest_rows(portable) == manifest_rows(local)
    a, b = image_files(portable), image_files(local)
    assert sorted(a) == sorted(b) == [f"{index}.jpg" for index in range(6)]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
