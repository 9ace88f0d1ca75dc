"""CelebAExampleGen: a TFX component that ingests a CelebA aligned layout (local or gs://).

Output: an `Examples` artifact with splits train/eval/test taken from list_eval_partition.txt
(0/1/2), gzipped TFRecords of tf.Example as TFX's own ExampleGens write them, plus
`ingestion_report.json` and `rejected.jsonl` (one line per unusable row or image) in the artifact
directory. The counts are also set as custom properties so they show in ML Metadata.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from components.celeba import layout as fmt
from components.celeba.ingest import METRICS_NAMESPACE, ReadCelebA, rejection_to_json

REPORT_FILE = "ingestion_report.json"
REJECTED_FILE = "rejected.jsonl"
_SPLIT_ORDER = [fmt.PARTITION_NAMES[i] for i in sorted(fmt.PARTITION_NAMES)]


class CelebAExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        "data_root": ExecutionParameter(type=str),
        "image_size": ExecutionParameter(type=int),
    }
    INPUTS = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        data_root = exec_properties["data_root"]
        image_size = int(exec_properties["image_size"])
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        fmt.check_layout(data_root)
        attribute_names = fmt.read_attribute_names(data_root)
        examples.split_names = artifact_utils.encode_split_names(_SPLIT_ORDER)
        logging.info("CelebAExampleGen: reading %s, aligning faces to %dx%d", data_root, image_size, image_size)

        pipeline = self._make_beam_pipeline()
        outputs = pipeline | "ReadCelebA" >> ReadCelebA(data_root, image_size, attribute_names)
        by_split = outputs["examples"] | "BySplit" >> beam.Partition(lambda item, _: item[0], len(_SPLIT_ORDER))
        for index, split in enumerate(_SPLIT_ORDER):
            _ = (
                by_split[index]
                | f"Payload{split}" >> beam.Values()
                | f"Write{split}" >> beam.io.WriteToTFRecord(
                    os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord"),
                    file_name_suffix=".gz",
                )
            )
        _ = (
            outputs["rejected"]
            | "RejectedToJson" >> beam.Map(rejection_to_json)
            | "WriteRejected" >> beam.io.WriteToText(
                os.path.join(examples.uri, REJECTED_FILE), shard_name_template="", num_shards=1
            )
        )
        result = pipeline.run()
        result.wait_until_finish()

        report = _build_report(data_root, image_size, examples.uri, result)
        io_utils.write_string_file(os.path.join(examples.uri, REPORT_FILE), json.dumps(report, indent=2))
        examples.span = 0
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples.set_int_custom_property("num_rejected", report["rejected_total"])
        for split, count in report["examples"].items():
            examples.set_int_custom_property(f"num_examples_{split}", count)
        _log_report(report)


def _build_report(data_root: str, image_size: int, uri: str, result) -> dict:
    """Example counts come from Beam counters; rejections are read back from their file."""
    counters = {
        counter.key.metric.name: counter.committed
        for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    }
    examples_per_split = {split: int(counters.get(f"examples_{split}", 0)) for split in _SPLIT_ORDER}
    rejected = []
    rejected_path = os.path.join(uri, REJECTED_FILE)
    if tf.io.gfile.exists(rejected_path):
        with tf.io.gfile.GFile(rejected_path) as handle:
            rejected = [json.loads(line) for line in handle if line.strip()]
    by_reason: dict[str, int] = {}
    for record in rejected:
        by_reason[record["reason"]] = by_reason.get(record["reason"], 0) + 1
    return {
        "data_root": data_root,
        "image_size": image_size,
        "examples": examples_per_split,
        "examples_total": sum(examples_per_split.values()),
        "rejected_total": len(rejected),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_file": rejected_path,
        "rejected_examples": sorted(rejected, key=lambda r: (r["reason"], r["file"]))[:50],
        "beam_counters": counters,
    }


def _log_report(report: dict) -> None:
    logging.info(
        "CelebAExampleGen: %d examples %s, %d rejected %s",
        report["examples_total"], report["examples"], report["rejected_total"], report["rejected_by_reason"],
    )
    for record in report["rejected_examples"][:10]:
        logging.warning("CelebAExampleGen rejected %s (%s): %s", record["file"], record["reason"], record["detail"])
    if report["rejected_total"]:
        logging.warning("CelebAExampleGen: every rejected input is listed in %s", report["rejected_file"])


class CelebAExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests a CelebA aligned layout into eye-aligned, split tf.Examples."""

    SPEC_CLASS = CelebAExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, data_root: str, image_size: int):
        super().__init__(spec=CelebAExampleGenSpec(
            data_root=data_root,
            image_size=image_size,
            examples=types.Channel(type=standard_artifacts.Examples),
        ))
