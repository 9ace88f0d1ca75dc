"""ExampleValidator anomalies stop the run with a readable message."""

import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from components.validation.gate import DataValidationError, check_anomalies
from pipelines.config import Config


def _example(male: int, with_image: bool = True) -> bytes:
    feature = {
        "image_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"000001.jpg"])),
        "identity": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
        "male": tf.train.Feature(int64_list=tf.train.Int64List(value=[male])),
    }
    if with_image:
        feature["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x89PNG"]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_anomalies(uri, split, examples):
    """Statistics and anomalies as StatisticsGen/ExampleValidator compute them (TFDV)."""
    schema = tfdv.load_schema_text(Config().schema_file)
    # Only the features this test writes are required here.
    keep = {"image", "image_id", "identity", "male"}
    for feature in list(schema.feature):
        if feature.name not in keep:
            schema.feature.remove(feature)
    records = os.path.join(uri, f"{split}.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for example in examples:
            writer.write(example)
    stats = tfdv.generate_statistics_from_tfrecord(records)
    anomalies = tfdv.validate_statistics(stats, schema)
    path = os.path.join(uri, f"Split-{split}", "SchemaDiff.pb")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(anomalies.SerializeToString())


def test_clean_data_passes(tmp_path):
    _write_anomalies(str(tmp_path), "train", [_example(0), _example(1)])
    check_anomalies(str(tmp_path), ["train"])


def test_out_of_domain_label_and_missing_feature_fail_with_names(tmp_path):
    _write_anomalies(str(tmp_path), "train", [_example(0), _example(1)])
    _write_anomalies(str(tmp_path), "test", [_example(2), _example(1, with_image=False)])
    with pytest.raises(DataValidationError) as error:
        check_anomalies(str(tmp_path), ["train", "test"])
    message = str(error.value)
    assert "split 'test', feature 'male'" in message
    assert "split 'test', feature 'image'" in message
    assert "split 'train'" not in message
    assert "schemas/schema.pbtxt" in message
