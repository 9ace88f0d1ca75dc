"""Container outputs of the bulk job (--output-format tfrecord|parquet, and the default for record
inputs): shards written whole, the input records' other fields passed through, idempotent re-runs,
a crash's leftovers completed, inputs added later. Faces are SYNTHETIC random-pixel crops."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bulk_helpers import (container_records, export_small_model, manifest_rows, metadata_found, save_with_metadata,
                          snapshot, start_then_kill)
from pipelines.sanitize.manifest import MANIFEST_SCHEMA
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job

IN_MEMORY = ["--direct_running_mode=in_memory"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_small_model(tmp_path_factory.mktemp("model") / "42")


def _face(seed, size=(178, 218)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _encoded(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """9 faces (JPEG and PNG, with EXIF/GPS/ICC/comment) in two folders, and one undecodable file."""
    root = tmp_path_factory.mktemp("faces")
    for index in range(9):
        path = root / ("x" if index % 2 else "y") / f"{index}.{'png' if index % 3 == 0 else 'jpg'}"
        path.parent.mkdir(exist_ok=True)
        save_with_metadata(_face(index, (178 - 4 * index, 218)), path)
    (root / "y" / "broken.jpg").write_bytes(b"not a JPEG")
    return root


def _settings(input_path, output, **overrides):
    return SanitizeJobConfig(input=str(input_path), output=str(output), beam_pipeline_args=list(IN_MEMORY),
                             progress_every_s=0, **overrides)


def _same_records(full, other) -> dict:
    """Asserts that `other` holds the same records as `full` (same place, fields and pixels) and
    nothing but the finished output; returns full's records."""
    a, b = container_records(full), container_records(other)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key]["path"] == b[key]["path"] and a[key]["fields"] == b[key]["fields"]
        np.testing.assert_array_equal(a[key]["pixels"], b[key]["pixels"], err_msg=key)
    assert {rel.split("/")[0] for rel in snapshot(other)} == {"dead_letter", "job.json", "manifest", "records"}
    return a


@pytest.mark.parametrize("output_format", ["tfrecord", "parquet"])
def test_image_folder_into_containers(model, folder, tmp_path, output_format):
    out = tmp_path / "out"
    summary = run_job(_settings(folder, out, output_format=output_format, records_per_shard=4), model_dir=model)
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (10, 9, 1)
    assert summary["this_run"]["records_written"] == 9
    job = json.loads((out / "job.json").read_text())
    assert job["layout"] == {"output_kind": output_format, "output_shards": 3}  # ceil(10 listed / 4)
    assert not (out / "images").exists()
    shards = sorted(p.name for p in (out / "records").iterdir())
    assert set(shards) <= {f"sanitized-{h:05d}-of-00003.{output_format}" for h in range(3)}, shards

    records = container_records(out)
    rows = manifest_rows(out)
    inputs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert sorted(rows) == inputs
    assert sorted(records) == sorted(key for key in inputs if key != "y/broken.jpg")
    assert rows["y/broken.jpg"]["status"] == "rejected" and rows["y/broken.jpg"]["output_key"] == ""
    for key, record in records.items():
        assert rows[key]["output_key"] == record["path"]  # the manifest points at the record
        original = Image.open(folder / key)
        assert record["fields"] == {"facesan_status": "sanitized", "facesan_faces": 1, "facesan_format": record["format"],
                                    "facesan_width": original.width, "facesan_height": original.height}
        assert (record["format"], record["size"]) == (original.format, original.size)
        assert metadata_found(record["data"]) == [], key
        before = np.asarray(original.convert("RGB"), float)
        assert np.abs(record["pixels"].astype(float) - before).mean() > 5, key  # the face changed


def test_record_inputs_keep_their_layout_and_the_fields_asked_for(model, tmp_path):
    import tensorflow as tf

    source = tmp_path / "in" / "db"
    source.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(source / "part-0.tfrecord.gz"), options="GZIP") as writer:
        for index in range(5):
            features = {"label": tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 2])),
                        "person": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"p{index}".encode()]))}
            if index != 3:  # record 3 has no image
                features["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[_encoded(_face(index + 20), "JPEG" if index % 2 else "PNG")]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    out = tmp_path / "out_tfrecord"
    summary = run_job(_settings(tmp_path / "in", out, records_per_shard=2, keep_fields=("label", "person")),
                      model_dir=model)
    assert (summary["inputs"], summary["sanitized"], summary["rejected"]) == (5, 4, 1)
    assert sorted(str(p.relative_to(out / "records")) for p in (out / "records").rglob("*") if p.is_file()) == [
        "db/part-0-00000.tfrecord.gz", "db/part-0-00001.tfrecord.gz", "db/part-0-00002.tfrecord.gz"]
    records = container_records(out)
    assert {key: (r["path"], r["fields"]["label"], r["fields"]["person"]) for key, r in records.items()} == {
        "db/part-0.tfrecord.gz#000000000": ("db/part-0-00000.tfrecord.gz#0", 0, "p0"),
        "db/part-0.tfrecord.gz#000000001": ("db/part-0-00000.tfrecord.gz#1", 1, "p1"),
        "db/part-0.tfrecord.gz#000000002": ("db/part-0-00001.tfrecord.gz#0", 0, "p2"),
        "db/part-0.tfrecord.gz#000000004": ("db/part-0-00002.tfrecord.gz#0", 0, "p4"),
    }
    assert manifest_rows(out)["db/part-0.tfrecord.gz#000000003"]["reason"] == "missing_image_field"

    table = pa.table({"id": pa.array([10, 11, 12], pa.int64()), "name": ["a", "b", "c"],
                      "scores": pa.array([[0.5], [0.25, 1.0], []], pa.list_(pa.float32())),
                      "image": [_encoded(_face(30), "JPEG"), _encoded(_face(31), "PNG"), b"garbage"]})
    pq.write_table(table, tmp_path / "faces.parquet")
    out = tmp_path / "out_parquet"
    run_job(_settings(tmp_path / "faces.parquet", out, keep_fields=("id", "name", "scores")), model_dir=model)
    written = pq.read_table(out / "records" / "faces-00000.parquet")
    assert written.schema.names == ["id", "name", "scores", "image", "facesan_input_key", "facesan_status",
                                    "facesan_faces", "facesan_format", "facesan_width", "facesan_height"]
    assert written.schema.field("scores").type == pa.list_(pa.float32())
    assert written.select(["id", "name", "scores", "facesan_format"]).to_pylist() == [
        {"id": 10, "name": "a", "scores": [0.5], "facesan_format": "JPEG"},
        {"id": 11, "name": "b", "scores": [0.25, 1.0], "facesan_format": "PNG"}]
    assert manifest_rows(out)["faces.parquet#000000002"]["reason"] == "undecodable"

    out = tmp_path / "converted"  # TFRecord in, Parquet out: the other features are not carried over
    run_job(_settings(tmp_path / "in", out, output_format="parquet", records_per_shard=10, keep_fields=("label",)),
            model_dir=model)
    assert pq.read_table(out / "records" / "db" / "part-0-00000.parquet").schema.names == [
        "image", "facesan_input_key", "facesan_status", "facesan_faces", "facesan_format", "facesan_width",
        "facesan_height"]


def test_rerun_writes_nothing_and_a_crash_is_completed_to_the_uninterrupted_output(model, folder, tmp_path):
    settings = dict(output_format="tfrecord", records_per_shard=4)
    full = tmp_path / "full"
    run_job(_settings(folder, full, **settings), model_dir=model)
    before = snapshot(full)
    summary = run_job(_settings(folder, full, **settings), model_dir=model)
    assert snapshot(full) == before  # same files, inodes and mtimes
    assert summary["already_done"] == 10 and summary["this_run"]["images_read"] == 0

    # What a killed run leaves: one shard complete with only some of its rows flushed, the other
    # shards not written, the rejected input's row flushed, a half-written temporary file.
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    rows = sorted(manifest_rows(full).values(), key=lambda row: row["input_key"])
    shards = sorted({row["output_key"].split("#")[0] for row in rows if row["output_key"]})
    kept = shards[0]
    members = [row for row in rows if row["output_key"].startswith(kept + "#")]
    flushed = members[:1] + [row for row in rows if row["status"] == "rejected"]
    for shard in shards[1:]:
        (crashed / "records" / shard).unlink()
    shutil.rmtree(crashed / "manifest")
    shutil.rmtree(crashed / "dead_letter")
    (crashed / "_progress").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(flushed, schema=MANIFEST_SCHEMA),
                   crashed / "_progress" / f"part-0ddba11-n{len(flushed):06d}.parquet")
    (crashed / "_tmp").mkdir(exist_ok=True)
    (crashed / "_tmp" / "feedface").write_bytes(b"half a shard")
    kept_stat = snapshot(crashed)[f"records/{kept}"]

    summary = run_job(_settings(folder, crashed, **settings), model_dir=model)
    assert summary["already_done"] == len(flushed)
    assert summary["this_run"]["records_already_present"] == len(members) - 1
    assert snapshot(crashed)[f"records/{kept}"] == kept_stat  # not rewritten
    assert manifest_rows(crashed) == manifest_rows(full)
    _same_records(full, crashed)


def test_killed_run_keeps_what_it_sanitized_and_the_rerun_matches_uninterrupted(model, tmp_path):
    """A real SIGKILL while inputs are being sanitized into _staging/ (no shard written yet), then
    the same command again: the staged inputs are not sanitized again, and the output equals an
    uninterrupted run's."""
    from components.synthetic import celeba_layout as synthetic_celeba

    raw = tmp_path / "raw"
    synthetic_celeba.generate(str(raw), num_identities=30, images_per_identity=4, seed=8)
    root = raw / "img_align_celeba"
    full, killed = tmp_path / "full", tmp_path / "killed"
    command = [sys.executable, "-m", "pipelines.sanitize", "--model", model, "--input", str(root), "--batch-size", "2",
               "--output-format", "tfrecord", "--records-per-shard", "40", "--direct_running_mode=in_memory",
               "--progress-every", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    def staged_files():
        return len([p for p in (killed / "_staging").rglob("*") if p.is_file()])

    start_then_kill(command + ["--output", str(killed)], REPO, env, lambda: staged_files() >= 10)
    staged = staged_files()
    assert 10 <= staged < 120 and not (killed / "manifest").exists()

    rerun = subprocess.run(command + ["--output", str(killed)], cwd=REPO, env=env, check=True, capture_output=True,
                           text=True)
    assert f"({staged} more sanitized by an earlier run and kept in _staging/)" in rerun.stdout, rerun.stdout[-2000:]
    subprocess.run(command + ["--output", str(full)], cwd=REPO, env=env, check=True, capture_output=True)
    assert manifest_rows(killed) == manifest_rows(full) and len(manifest_rows(full)) == 120
    assert len(_same_records(full, killed)) == 120


def test_inputs_added_later_go_to_a_supplementary_shard(model, folder, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(folder, root)
    out = tmp_path / "out"
    settings = dict(output_format="parquet", records_per_shard=100)  # one shard: sanitized-00000-of-00001
    run_job(_settings(root, out, **settings), model_dir=model)
    shard = out / "records" / "sanitized-00000-of-00001.parquet"
    before = snapshot(out)[f"records/{shard.name}"]
    save_with_metadata(_face(99), root / "x" / "new.jpg")
    summary = run_job(_settings(root, out, **settings), model_dir=model)
    assert summary["inputs"] == 11 and summary["this_run"]["records_written"] == 1
    assert snapshot(out)[f"records/{shard.name}"] == before
    extra = [p.name for p in (out / "records").iterdir() if p.name.startswith("sanitized-00000-of-00001.more-")]
    assert len(extra) == 1 and extra[0].endswith(".parquet")
    records = container_records(out)
    assert records["x/new.jpg"]["path"] == extra[0] + "#0" == manifest_rows(out)["x/new.jpg"]["output_key"]
    assert len(records) == 10


def test_auto_input_format_looks_at_the_folder(model, folder, tmp_path):
    from pipelines.sanitize.job import plan_job

    (tmp_path / "records").mkdir()
    pq.write_table(pa.table({"image": [_encoded(_face(1), "JPEG")]}), tmp_path / "records" / "a.parquet")
    assert plan_job(_settings(tmp_path / "records", tmp_path / "o1"), model).input_kind == "parquet"
    assert plan_job(_settings(folder, tmp_path / "o2"), model).input_kind == "images"
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    shutil.copy(tmp_path / "records" / "a.parquet", mixed / "x" / "a.parquet")
    with pytest.raises(SystemExit, match="holds both images and parquet files .*--input-format"):
        plan_job(_settings(mixed, tmp_path / "o3"), model)
    assert plan_job(_settings(mixed, tmp_path / "o4", input_format="images"), model).input_kind == "images"


def test_progress_counts_rows_and_staged_inputs_once(tmp_path, capsys):
    """The progress line counts inputs through this run from the hints in _progress/: row parts
    and staged markers; rows of shard members were counted when staged, and parts left by an
    earlier run are not this run's."""
    from pipelines.sanitize.layout import JobPlan
    from pipelines.sanitize.job import ProgressLine

    progress = tmp_path / "_progress"
    progress.mkdir()
    for name in ("part-aa-n000005.parquet",  # 5 rows left by an earlier run
                 "part-bb-n000003.parquet",  # 3 rejected this run
                 "staged-cc-n000032", "staged-dd-n000007",  # 39 sanitized and staged
                 "part-shard-ee-n000032.parquet"):  # 32 of them written into shards
        (progress / name).write_bytes(b"")
    plan = JobPlan(SanitizeJobConfig(output=str(tmp_path)), None, "images", "", "")
    counter = ProgressLine(plan, every_s=0.05, already=5)
    assert counter.counts() == (42, 32)
    with counter:
        time.sleep(0.3)
        assert "progress: 42 inputs finished this run (32 of them written into shards so far)" in \
            capsys.readouterr().out
        for part in progress.iterdir():  # the consolidation's clean-up: the hints go, the count must not fall
            part.unlink()
        time.sleep(0.3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "progress: 42 inputs finished this run; writing the manifest"  # and nothing after it
    assert all(line.startswith("progress: 42 inputs") for line in lines)  # no fallen count, no negative rate


def test_only_the_image_and_our_fields_go_out_unless_asked_and_never_a_suppressed_attribute(model, tmp_path):
    """A Parquet input with image, Male, name, lat columns: by default only the sanitized image and
    the facesan_* fields; --keep-fields name keeps name; --keep-fields Male is refused under the
    default policy (gender suppressed) unless forced."""
    table = pa.table({"image": [_encoded(_face(40), "JPEG"), _encoded(_face(41), "PNG")], "Male": [1, -1],
                      "name": ["Ann", "Bob"], "lat": [52.5, 48.1]})
    pq.write_table(table, tmp_path / "people.parquet")
    ours = ["image", "facesan_input_key", "facesan_status", "facesan_faces", "facesan_format", "facesan_width",
            "facesan_height"]
    run_job(_settings(tmp_path / "people.parquet", tmp_path / "default"), model_dir=model)
    assert pq.read_table(tmp_path / "default" / "records" / "people-00000.parquet").schema.names == ours
    run_job(_settings(tmp_path / "people.parquet", tmp_path / "named", keep_fields=("name",)), model_dir=model)
    kept = pq.read_table(tmp_path / "named" / "records" / "people-00000.parquet")
    assert kept.schema.names == ["name", *ours] and kept.column("name").to_pylist() == ["Ann", "Bob"]
    for field in ("Male", "gender", "attr_male"):
        with pytest.raises(SystemExit, match=f"--keep-fields {field}: the model's privacy policy suppresses Male"):
            run_job(_settings(tmp_path / "people.parquet", tmp_path / f"refused_{field}", keep_fields=(field,)),
                    model_dir=model)
    run_job(_settings(tmp_path / "people.parquet", tmp_path / "forced", keep_fields=("Male",),
                      force_keep_suppressed_fields=True), model_dir=model)
    assert "Male" in pq.read_table(tmp_path / "forced" / "records" / "people-00000.parquet").schema.names
