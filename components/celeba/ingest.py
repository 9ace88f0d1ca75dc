"""Beam transforms that turn a CelebA aligned layout into eye-aligned tf.Examples.

The label files are read, parsed and joined by image name with CoGroupByKey (labels only, so the
shuffle is small); images are then read, decoded and aligned one by one inside a DoFn, so memory
does not grow with the number or size of the images. Every row or image that cannot be used
leaves on the REJECTED output with its file name and a reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import posixpath

import apache_beam as beam
from apache_beam.io import fileio
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from components.celeba import layout as fmt
from components.faces.imaging import ImageRejected, align_face, celeba_landmark_to_point, decode_image, encode_png
from trainer import features

REJECTED = "rejected"
METRICS_NAMESPACE = "celeba_ingest"

_LABEL_STREAMS = {
    "attributes": fmt.ATTRIBUTES_FILE,
    "identity": fmt.IDENTITY_FILE,
    "partition": fmt.PARTITION_FILE,
    "landmarks": fmt.LANDMARKS_FILE,
}


def rejection(file: str, source: str, reason: str, detail: str) -> dict:
    """One dead-letter record: which input, found where, why, and the details."""
    return {"file": file, "source": source, "reason": reason, "detail": detail}


class ParseLabelRows(beam.DoFn):
    """Parses one label file's rows into (image_name, value); bad rows go to REJECTED."""

    def __init__(self, stream: str, attribute_names: list[str] | None = None):
        self._stream = stream
        self._source = _LABEL_STREAMS[stream]
        self._attribute_names = attribute_names
        self._bad_rows = Metrics.counter(METRICS_NAMESPACE, "bad_label_rows")

    def process(self, line: str):
        if not line.strip():
            return  # blank lines (e.g. a trailing newline) carry no row
        try:
            if self._stream == "attributes":
                yield fmt.parse_attribute_row(line, self._attribute_names)
            elif self._stream == "identity":
                yield fmt.parse_identity_row(line)
            elif self._stream == "partition":
                yield fmt.parse_partition_row(line)
            else:
                yield fmt.parse_landmark_row(line)
        except fmt.LabelRowError as error:
            self._bad_rows.inc()
            first_field = line.split()[0] if line.split() else ""
            yield beam.pvalue.TaggedOutput(
                REJECTED, rejection(first_field, self._source, "bad_label_row", f"{error}; row: {line[:200]!r}")
            )


class JoinLabels(beam.DoFn):
    """Keeps images that have exactly one row in every label file and an image file."""

    def __init__(self):
        self._incomplete = Metrics.counter(METRICS_NAMESPACE, "incomplete_labels")

    def process(self, element):
        name, grouped = element
        image_files = list(grouped["image_file"])
        problems = []
        for stream, source in _LABEL_STREAMS.items():
            rows = list(grouped[stream])
            if not rows:
                problems.append(("missing_label", f"no row in {source}"))
            elif len(rows) > 1:
                problems.append(("duplicate_label", f"{len(rows)} rows in {source}"))
        if not image_files:
            problems.append(("missing_image", f"listed in the label files but not found in {fmt.IMAGES_DIR}/"))
        if problems:
            self._incomplete.inc()
            reason = problems[0][0] if len({p[0] for p in problems}) == 1 else "incomplete_labels"
            yield beam.pvalue.TaggedOutput(
                REJECTED, rejection(name, fmt.IMAGES_DIR, reason, "; ".join(p[1] for p in problems))
            )
            return
        yield {
            "image_name": name,
            "image_path": image_files[0],
            "attributes": grouped["attributes"][0],
            "identity": grouped["identity"][0],
            "partition": grouped["partition"][0],
            "landmarks": grouped["landmarks"][0],
        }


class AlignToExample(beam.DoFn):
    """Reads, decodes and eye-aligns one image; emits (partition, serialized tf.Example)."""

    def __init__(self, image_size: int, attribute_names: list[str]):
        self._image_size = image_size
        self._attribute_names = attribute_names
        self._read = Metrics.counter(METRICS_NAMESPACE, "images_read")
        self._per_split = {
            partition: Metrics.counter(METRICS_NAMESPACE, f"examples_{split}")
            for partition, split in fmt.PARTITION_NAMES.items()
        }
        self._bad_images = Metrics.counter(METRICS_NAMESPACE, "bad_images")

    def process(self, record):
        name = record["image_name"]
        try:
            with FileSystems.open(record["image_path"]) as handle:
                data = handle.read()
            self._read.inc()
            pixels = decode_image(data).pixels
            landmarks = record["landmarks"]
            aligned = align_face(
                pixels,
                celeba_landmark_to_point(landmarks[0], landmarks[1]),
                celeba_landmark_to_point(landmarks[2], landmarks[3]),
                self._image_size,
            )
        except ImageRejected as error:
            self._bad_images.inc()
            yield beam.pvalue.TaggedOutput(REJECTED, rejection(name, fmt.IMAGES_DIR, error.reason, error.detail))
            return
        except OSError as error:  # unreadable file (permissions, vanished since listing, ...)
            self._bad_images.inc()
            yield beam.pvalue.TaggedOutput(
                REJECTED, rejection(name, fmt.IMAGES_DIR, "unreadable", f"{type(error).__name__}: {error}")
            )
            return
        self._per_split[record["partition"]].inc()
        yield record["partition"], self._to_example(record, aligned).SerializeToString()

    def _to_example(self, record, aligned) -> tf.train.Example:
        def int_feature(value: int) -> tf.train.Feature:
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

        def bytes_feature(value: bytes) -> tf.train.Feature:
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

        feature = {
            features.IMAGE_KEY: bytes_feature(encode_png(aligned)),
            features.IMAGE_ID_KEY: bytes_feature(record["image_name"].encode("utf-8")),
            features.IDENTITY_KEY: int_feature(record["identity"]),
        }
        for attribute in self._attribute_names:
            feature[features.attribute_feature_name(attribute)] = int_feature(
                1 if record["attributes"][attribute] == 1 else 0
            )
        return tf.train.Example(features=tf.train.Features(feature=feature))


@beam.ptransform_fn
def ReadCelebA(pipeline, data_root: str, image_size: int, attribute_names: list[str]):  # noqa: N802
    """Root transform: a CelebA layout -> {'examples': (partition, bytes), 'rejected': dicts}."""
    streams = {}
    rejected = []
    for stream, source in _LABEL_STREAMS.items():
        parsed = (
            pipeline
            | f"Read{stream}" >> beam.io.ReadFromText(fmt.join(data_root, source), skip_header_lines=fmt.HEADER_LINES[source])
            | f"Parse{stream}" >> beam.ParDo(ParseLabelRows(stream, attribute_names)).with_outputs(REJECTED, main="rows")
        )
        streams[stream] = parsed.rows
        rejected.append(parsed[REJECTED])
    streams["image_file"] = (
        pipeline
        | "ListImages" >> beam.Create([fmt.join(data_root, fmt.IMAGES_DIR, "*")])
        | "MatchImages" >> fileio.MatchAll()
        | "KeyImages" >> beam.Map(lambda metadata: (posixpath.basename(metadata.path), metadata.path))
    )
    joined = (
        streams
        | "JoinByImageName" >> beam.CoGroupByKey()
        | "CheckComplete" >> beam.ParDo(JoinLabels()).with_outputs(REJECTED, main="records")
    )
    rejected.append(joined[REJECTED])
    aligned = joined.records | "AlignFaces" >> beam.ParDo(AlignToExample(image_size, attribute_names)).with_outputs(
        REJECTED, main="examples"
    )
    rejected.append(aligned[REJECTED])
    return {
        "examples": aligned.examples,
        "rejected": tuple(rejected) | "AllRejected" >> beam.Flatten(),
    }


def rejection_to_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True)
