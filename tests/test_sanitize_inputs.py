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


def test_one_row_per_input_key_the_same_whatever_order_the_duplicates_arrive_in():
    """manifest.pick_one_row: a row recorded twice (a retried bundle; a manifest row and a part of a
    later run) leaves one row, the same in every arrival order; unconsolidated when any came from a part."""
    from pipelines.sanitize.manifest import pick_one_row

    rows = [(False, {"input_key": "a.jpg", "detail": "2", "faces": 1}),
            (True, {"input_key": "a.jpg", "detail": "1", "faces": 1}),
            (False, {"input_key": "a.jpg", "detail": "1", "faces": 0})]
    picked = [pick_one_row(("a.jpg", [rows[i] for i in order])) for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2])]
    assert picked[0] == picked[1] == picked[2] == (True, {"input_key": "a.jpg", "detail": "1", "faces": 0})
    assert pick_one_row(("a.jpg", [rows[0], rows[2]]))[0] is False


def _row(key: str, **fields) -> dict:
    from pipelines.sanitize.manifest import MANIFEST_SCHEMA

    row = {name: 0 if pa.types.is_integer(MANIFEST_SCHEMA.field(name).type) else "" for name in MANIFEST_SCHEMA.names}
    return {**row, "input_key": key, "status": "sanitized", **fields}


def test_shard_table_keeps_one_row_per_key_sorted_and_counts_the_unconsolidated_keys():
    """manifest.ShardTable, the consolidation's combiner, over the record batches tag_by_shard
    makes: batches split over accumulators, some compacted (as a runner's lifted combine does),
    give one row per key, sorted by key, the row pick_one_row picks for a key recorded more than
    once, and the number of keys with a row from a part or this run; None (a shard's
    placeholder) adds nothing."""
    from pipelines.sanitize.manifest import MANIFEST_SCHEMA, ShardTable, pick_one_row, tag_by_shard

    combine = ShardTable()
    recorded = [_row(f"k{index:02d}.jpg", faces=index) for index in range(7)]  # the manifest as it was
    new = ([_row("k03.jpg", faces=3)]  # the same row again, from a part: unconsolidated
           + [_row("k05.jpg", faces=9, detail="x"), _row("k05.jpg", faces=8, detail="x")]
           + [_row("new.jpg", status="rejected", reason="empty")])
    order = np.random.default_rng(0).permutation(len(recorded))
    batches = [batch for part in (order[:3], order[3:]) for _, batch in tag_by_shard(
        pa.Table.from_pylist([recorded[index] for index in part]), False, 1)]  # read back: a plain table
    batches += [batch for row in new for _, batch in tag_by_shard(
        pa.RecordBatch.from_pylist([row], schema=MANIFEST_SCHEMA), True, 1)]
    accumulators = [combine.create_accumulator() for _ in range(3)]
    for position, batch in enumerate(batches + [None]):
        combine.add_input(accumulators[position % 3], batch)
    accumulators[0] = combine.compact(accumulators[0])
    assert len(accumulators[0]) == 1 and len(accumulators[1]) == 2
    table, unconsolidated = combine.extract_output(combine.merge_accumulators(accumulators))
    assert table.schema == MANIFEST_SCHEMA
    got = table.to_pylist()
    assert [row["input_key"] for row in got] == sorted({row["input_key"] for row in recorded + new})
    expected_k05 = pick_one_row(("k05.jpg", [(row in new, row) for row in recorded + new
                                            if row["input_key"] == "k05.jpg"]))[1]
    assert expected_k05["faces"] == 5 and next(row for row in got if row["input_key"] == "k05.jpg") == expected_k05
    assert next(row for row in got if row["input_key"] == "k03.jpg")["faces"] == 3
    assert unconsolidated == 3  # k03, k05, new
    # Nothing but placeholders: an empty table in the manifest's schema, nothing unconsolidated.
    empty, none = combine.extract_output(combine.add_input(combine.create_accumulator(), None))
    assert (empty.num_rows, none, empty.schema) == (0, 0, MANIFEST_SCHEMA)


def test_rows_reach_the_consolidation_in_batches_split_by_manifest_shard():
    """BatchRows makes record batches of at most its size where the rows are made (the rest at
    the end of the bundle); tag_by_shard splits them by manifest shard, each row where
    manifest_shard_of puts it, in the manifest's schema even when read back without a column."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that

    from pipelines.sanitize.manifest import TAGGED_SCHEMA, UNCONSOLIDATED, BatchRows, manifest_shard_of, tag_by_shard

    rows = [_row(f"f{index:03d}.jpg", faces=index) for index in range(10)]

    def check(batches):
        assert sorted(batch.num_rows for batch in batches) == [2, 4, 4]
        assert sorted(row["input_key"] for batch in batches for row in batch.to_pylist()) == sorted(
            row["input_key"] for row in rows)

    with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"])) as pipeline:
        batched = pipeline | beam.Create(rows, reshuffle=False) | beam.ParDo(BatchRows(4))
        assert_that(batched, check)
    without_policy = pa.Table.from_pylist(rows).drop(["privacy_policy"])
    tagged = list(tag_by_shard(without_policy, True, 3))
    assert all(batch.schema == TAGGED_SCHEMA for _, batch in tagged)
    assert sorted(row["input_key"] for _, batch in tagged for row in batch.to_pylist()) == [row["input_key"] for row in rows]
    for shard, batch in tagged:
        assert all(manifest_shard_of(key, 3) == shard for key in batch["input_key"].to_pylist())
        assert batch[UNCONSOLIDATED].to_pylist() == [True] * batch.num_rows
        assert batch["privacy_policy"].null_count == batch.num_rows
    assert len({shard for shard, _ in tagged}) == len(tagged) > 1  # one batch per shard touched


def test_manifest_shards_hold_every_row_once_and_a_rerun_with_parts_rewrites_them(model, tmp_path):
    """--manifest-shards 3: each key in the shard its hash names, once; rows left in _progress/
    by a killed run (here: one row duplicated in a part) are folded in by the next run."""
    from pipelines.sanitize.manifest import MANIFEST_SCHEMA, manifest_shard_of

    folder = tmp_path / "faces"
    folder.mkdir()
    for index in range(7):
        (folder / f"f{index}.jpg").write_bytes(_jpeg(40 + index))
    out = tmp_path / "out"
    settings = SanitizeJobConfig(input=str(folder), output=str(out), progress_every_s=0, manifest_shards=3,
                                 beam_pipeline_args=["--direct_running_mode=in_memory"])
    run_job(settings, model_dir=model)
    files = sorted((out / "manifest").glob("*.parquet"))
    assert [path.name for path in files] == [f"manifest-{i:05d}-of-00003.parquet" for i in range(3)]
    for index, path in enumerate(files):
        keys = pq.read_table(path)["input_key"].to_pylist()
        assert keys == sorted(keys) and all(manifest_shard_of(key, 3) == index for key in keys)
    before = manifest_rows(out)
    assert sorted(before) == [f"f{index}.jpg" for index in range(7)]
    run_job(settings, model_dir=model)  # nothing new: nothing rewritten
    written = [path.stat().st_mtime_ns for path in files]
    assert written == [path.stat().st_mtime_ns for path in sorted((out / "manifest").glob("*.parquet"))]
    # A part holding a row the manifest already has: the re-run rewrites the shards, one row per key.
    (out / "_progress").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist([before["f3.jpg"]], schema=MANIFEST_SCHEMA),
                   out / "_progress" / "part-left-n000001.parquet")
    run_job(settings, model_dir=model)
    assert manifest_rows(out) == before
    assert all(path.stat().st_mtime_ns != mtime for path, mtime in zip(files, written))
    assert sum(pq.read_table(path).num_rows for path in files) == 7
    assert not list((out / "_progress").iterdir())
