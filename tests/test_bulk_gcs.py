"""The bulk job with its input and output on gs://, against a local GCS emulator
(gcp-storage-emulator, in memory): Beam's own GCS filesystem and the google-cloud-storage client
talk HTTP to it as they would to Cloud Storage (the model stays local: TensorFlow reads gs:// with
its own client, which the emulator does not serve). Faces are SYNTHETIC random-pixel crops."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from gcp_storage_emulator import server as emulator  # a locked dev dependency: missing means a broken install
from PIL import Image

from bulk_helpers import export_small_model, free_port, metadata_found, save_with_metadata
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job

BUCKET = "facesan-test"


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    port = free_port()
    server = emulator.create_server("localhost", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://localhost:{port}")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    try:
        yield f"gs://{BUCKET}"
    finally:
        server.stop()


def _put(uri: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(uri) as handle:
        handle.write(data)


def _get(uri: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri) as handle:
        return handle.read()


def _list(prefix: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    return sorted(meta.path[len(prefix) + 1:] for meta in FileSystems.match([prefix + "/**"])[0].metadata_list)


@pytest.mark.parametrize("output_format", ["images", "parquet"])
def test_job_reads_and_writes_gs_paths(gcs, tmp_path, output_format):
    model = export_small_model(tmp_path / "model" / "11")
    names = []
    for index in range(5):
        image = Image.fromarray(np.random.default_rng(index).integers(0, 255, (218, 178, 3), dtype=np.uint8))
        path = tmp_path / f"{index}.{'png' if index == 0 else 'jpg'}"
        save_with_metadata(image, path)
        names.append(f"{'sub/' if index % 2 else ''}{path.name}")
        _put(f"{gcs}/db/{names[-1]}", path.read_bytes())
    _put(f"{gcs}/db/empty.jpg", b"")
    output = f"{gcs}/out_{output_format}"
    settings = SanitizeJobConfig(input=f"{gcs}/db", output=output, output_format=output_format, progress_every_s=0,
                                 beam_pipeline_args=["--direct_running_mode=in_memory"])
    summary = run_job(settings, model_dir=model)
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (6, 5, 1)
    files = _list(output)
    assert "job.json" in files and not any(f.startswith(("_tmp/", "_progress/", "_staging/")) for f in files), files
    assert json.loads(_get(f"{output}/job.json"))["settings"]["input"] == f"{gcs}/db"
    manifest = pq.read_table(io.BytesIO(_get(f"{output}/{next(f for f in files if f.startswith('manifest/'))}")))
    rows = {row["input_key"]: row for row in manifest.to_pylist()}
    assert sorted(rows) == sorted(names + ["empty.jpg"]) and rows["empty.jpg"]["reason"] == "empty"
    dead = [json.loads(line) for f in files if f.startswith("dead_letter/")
            for line in _get(f"{output}/{f}").decode().splitlines()]
    assert [row["input_key"] for row in dead] == ["empty.jpg"]
    if output_format == "images":
        assert sorted(f for f in files if f.startswith("images/")) == sorted(f"images/{name}" for name in names)
        encoded = {name: _get(f"{output}/images/{name}") for name in names}
    else:
        shards = [f for f in files if f.startswith("records/")]
        records = [row for f in shards for row in pq.read_table(io.BytesIO(_get(f"{output}/{f}"))).to_pylist()]
        encoded = {row["facesan_input_key"]: row["image"] for row in records}
        assert sorted(encoded) == sorted(names)
    for name, data in encoded.items():
        assert metadata_found(data) == [], name
        assert Image.open(io.BytesIO(data)).size == (178, 218)

    before = {f: _get(f"{output}/{f}") for f in files}
    again = run_job(settings, model_dir=model)  # a re-run over gs:// writes nothing new
    assert again["already_done"] == 6 and again["this_run"]["images_read"] == 0
    assert {f: _get(f"{output}/{f}") for f in _list(output)} == before
