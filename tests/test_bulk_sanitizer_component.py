"""The bulk job as the TFX pipeline's last step (opt-in): wiring, and the step on a test split."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bulk_helpers import container_records, export_small_model, manifest_rows
from pipelines.sanitize.component import sanitize_split
from pipelines.config import Config
from pipelines.pipeline import create_components


def test_bulk_sanitizer_follows_the_pusher_only_when_asked():
    assert "BulkSanitizer" not in {c.id for c in create_components(Config())}
    components = {c.id: c for c in create_components(Config(sanitize_test_split=True,
                                                            beam_pipeline_args=["--direct_num_workers=2"]))}
    bulk = components["BulkSanitizer"]
    assert bulk.inputs["pushed_model"].producer_component_id == "Pusher"
    assert bulk.inputs["examples"].producer_component_id == "CelebAExampleGen"
    assert bulk.exec_properties["split"] == "test"
    assert bulk.exec_properties["beam_args_json"] == '["--direct_num_workers=2"]'


def test_sanitize_split_runs_the_job_on_the_pipelines_examples(tmp_path):
    import tensorflow as tf

    split = tmp_path / "Examples" / "Split-test"
    split.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for _ in range(3):  # what CelebAExampleGen writes: PNG of the eye-aligned S x S face
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
                       "identity": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
                       "male": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    model = export_small_model(tmp_path / "serving_model" / "1700000001")
    out = tmp_path / "SanitizedImages"
    assert sanitize_split(str(split), False, model, str(out), []) == {}
    assert not out.exists()
    summary = sanitize_split(str(split), True, model, str(out), ["--direct_running_mode=in_memory"])
    assert (summary["inputs"], summary["sanitized"], summary["model_version"]) == (3, 3, "1700000001")
    rows = manifest_rows(out)
    # The split's records become tf.Example shards beside it in layout, identity kept, gender dropped.
    assert sorted(row["output_key"] for row in rows.values()) == [
        f"data_tfrecord-00000-of-00001-00000.tfrecord.gz#{i}" for i in range(3)]
    records = container_records(out)
    assert sorted(record["path"] for record in records.values()) == sorted(row["output_key"] for row in rows.values())
    for record in records.values():
        assert record["size"] == (32, 32) and record["format"] == "PNG" and record["fields"]["identity"] == 7
        assert "male" not in record["fields"]  # the suppressed attribute does not ride along
