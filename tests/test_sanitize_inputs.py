"""Record inputs (TFRecord of tf.Example, Parquet), the CLI, and the Dataflow graph (offline)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bulk_helpers import export_small_model, manifest_rows
from pipelines.sanitize.manifest import read_dead_letter
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.cli import build_parser, config_from_args
from pipelines.sanitize.job import run_job


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_small_model(tmp_path_factory.mktemp("model") / "7")


def _jpeg(seed, size=(178, 218)):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buffer, "JPEG")
    return buffer.getvalue()


def test_tfrecord_and_parquet_inputs_into_image_files(model, tmp_path):
    """--output-format images: every record becomes images/<file>/<index>.<ext> (containers: test_bulk_containers)."""
    import tensorflow as tf

    records = tmp_path / "records"
    records.mkdir()
    with tf.io.TFRecordWriter(str(records / "faces.tfrecord.gz"), options="GZIP") as writer:
        for example in [{"image": _jpeg(0)}, {"image": _jpeg(1)}, {"other": b"x"}, {"image": b"garbage"}]:
            feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                       for name, value in example.items()}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    out = tmp_path / "out_tfrecord"
    summary = run_job(SanitizeJobConfig(input=str(records / "faces.tfrecord.gz"), output=str(out), progress_every_s=0,
                                        output_format="images",
                                        beam_pipeline_args=["--direct_running_mode=in_memory"]), model_dir=model)
    rows = manifest_rows(out)
    assert {key: (row["status"], row["reason"], row["output_key"]) for key, row in rows.items()} == {
        "faces.tfrecord.gz#000000000": ("sanitized", "", "faces.tfrecord.gz/000000000.jpg"),
        "faces.tfrecord.gz#000000001": ("sanitized", "", "faces.tfrecord.gz/000000001.jpg"),
        "faces.tfrecord.gz#000000002": ("rejected", "missing_image_field", ""),
        "faces.tfrecord.gz#000000003": ("rejected", "undecodable", ""),
    }
    assert summary["inputs"] == 4
    assert Image.open(out / "images" / "faces.tfrecord.gz" / "000000001.jpg").size == (178, 218)

    table = pa.table({"name": ["a", "b", "c"], "image": [_jpeg(2), None, _jpeg(3, (120, 150))]})
    pq.write_table(table, tmp_path / "faces.parquet")
    out = tmp_path / "out_parquet"
    run_job(SanitizeJobConfig(input=str(tmp_path / "faces.parquet"), output=str(out), progress_every_s=0,
                              output_format="images",
                              beam_pipeline_args=["--direct_running_mode=in_memory"]), model_dir=model)
    rows = manifest_rows(out)
    assert [(key, rows[key]["status"], rows[key]["reason"]) for key in sorted(rows)] == [
        ("faces.parquet#000000000", "sanitized", ""), ("faces.parquet#000000001", "rejected", "missing_image_field"),
        ("faces.parquet#000000002", "sanitized", "")]
    assert Image.open(out / "images" / "faces.parquet" / "000000002.jpg").size == (120, 150)


def test_help_documents_every_flag_and_flags_map_to_the_config():
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "--sdk_container_image" in text and "--direct_running_mode" in text
    settings = config_from_args(["--input", "gs://b/in/", "--output", "gs://b/out/", "--faces", "wild",
                                 "--no-face", "reject", "--runner", "DataflowRunner", "--project", "p"])
    assert (settings.input, settings.output, settings.faces, settings.no_face) == ("gs://b/in/", "gs://b/out", "wild",
                                                                                 "reject")
    assert settings.beam_pipeline_args == ["--runner=DataflowRunner", "--project", "p"]


def test_dataflow_options_parse_and_the_graph_builds_offline(model, tmp_path):
    """One Beam graph holds the whole job (sanitizing and manifest consolidation), built with
    DataflowRunner options offline: what a flex template launches as one Dataflow job."""
    import apache_beam as beam

    from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

    from pipelines.sanitize.job import beam_options, build_graph
    from pipelines.sanitize.layout import JobPlan
    from pipelines.sanitize.model import model_facts

    args = ["--runner=DataflowRunner", "--project=my-project", "--region=europe-west4",
            "--temp_location=gs://bucket/tmp", "--sdk_container_image=europe-west4-docker.pkg.dev/p/facesan/pipeline:1",
            "--experiments=use_runner_v2", "--max_num_workers=20"]
    options, passed = beam_options(args)
    assert passed == args  # no local DirectRunner defaults added for Dataflow
    assert options.view_as(GoogleCloudOptions).project == "my-project"
    assert options.view_as(WorkerOptions).sdk_container_image.endswith("pipeline:1")
    settings = SanitizeJobConfig(input="gs://bucket/db/**.jpg", output="gs://bucket/out", faces="wild")
    plan = JobPlan(settings, model_facts(model), "images", settings.input, "gs://bucket/db")
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, plan, ["gs://bucket/out/manifest/manifest-00000-of-00001.parquet"],
                ["gs://bucket/out/_progress/part-x-n000001.parquet"])
    names = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    for step in ("ListInputs", "JoinDone", "PrepareFaces", "Sanitize", "ComposeAndWrite", "RecordSanitized",
                 "ConsolidateManifest", "ReadManifest", "ReadEarlierParts", "WriteManifest", "CleanUp"):
        assert any(step in name.split("/") for name in names), step


def test_one_invocation_runs_one_pipeline(model, tmp_path, monkeypatch):
    """Sanitizing and consolidation are one Beam pipeline: Pipeline.run is called once, and the
    manifest and dead letter are complete when it returns."""
    import apache_beam as beam

    runs = []
    original = beam.Pipeline.run
    monkeypatch.setattr(beam.Pipeline, "run", lambda self, *a, **k: runs.append(self) or original(self, *a, **k))
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg(20))
    (folder / "bad.jpg").write_bytes(b"")
    out = tmp_path / "out"
    summary = run_job(SanitizeJobConfig(input=str(folder), output=str(out), progress_every_s=0,
                                        beam_pipeline_args=["--direct_running_mode=in_memory"]), model_dir=model)
    assert len(runs) == 1
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (2, 1, 1)
    assert sorted(p.name for p in (out / "manifest").iterdir()) == ["manifest-00000-of-00001.parquet"]
    assert [row["input_key"] for row in read_dead_letter(str(out))] == ["bad.jpg"]
    assert not (out / "_progress").exists() or not any((out / "_progress").iterdir())  # cleaned up in the graph


def test_cli_run_builds_its_graph_on_a_test_pipeline(model, tmp_path):
    """`cli.run(argv, test_pipeline)`, as Beam's examples: the job's flags parsed, its graph on the
    given TestPipeline, every input accounted for."""
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipelines.sanitize.cli import run

    folder = tmp_path / "faces"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.jpg").write_bytes(_jpeg(10 + index))
    (folder / "broken.jpg").write_bytes(b"not an image")
    pipeline = TestPipeline(argv=["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    out = tmp_path / "out"
    summary = run(["--model", model, "--input", str(folder), "--output", str(out), "--batch-size", "2",
                   "--progress-every", "0"], test_pipeline=pipeline)
    rows = manifest_rows(out)
    assert {key: row["status"] for key, row in rows.items()} == {
        "0.jpg": "sanitized", "1.jpg": "sanitized", "2.jpg": "sanitized", "broken.jpg": "rejected"}
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (4, 3, 1)
    assert summary["this_run"]["images_written"] == 3  # the test pipeline ran the sanitizing graph
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
