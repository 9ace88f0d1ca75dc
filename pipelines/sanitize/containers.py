"""Container output: sanitized inputs grouped into whole TFRecord (tf.Example) or Parquet shards.

With a TFRecord or Parquet output, the non-rejected inputs are grouped into shards, each written
whole (sorted by input key) to _tmp/ and renamed into place:

    record inputs:  records/<input file stem>-<k>.tfrecord|.parquet  holds records k*R .. k*R+R-1
                    of that input file (R = --records-per-shard), so the relative layout is kept
    image inputs:   records/sanitized-<h>-of-<N>.tfrecord|.parquet   holds the images whose key
                    hashes (CRC-32) to h; N = ceil(inputs / R), fixed by the first run (job.json)

Each sanitized input is first staged whole under _staging/<hash of its key> (`stage`); only a
small reference goes through the shuffle that groups a shard, so its memory does not hold the
images and a killed run keeps what it sanitized (a re-run finds the staged file and does not
sanitize that input again). A shard is written from its members' staged files, which are then
deleted. Each record carries the sanitized encoded image (--image-field), `facesan_input_key`,
`facesan_status`, `facesan_faces`, `facesan_format`, `facesan_width` and `facesan_height`, and
nothing else unless --keep-fields names some of the input record's other features (tf.Example)
or columns (Parquet, with the input file's schema for them), when input and output are the same
container kind. Manifest rows of
shard members are recorded only once their shard exists, so a re-run finds every shard either
complete or absent; inputs that belong to an existing shard but are not in it (added to the input
since) go to a supplementary shard `<shard stem>.more-<hash of their keys>.<ext>` instead of
rewriting it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zlib
from typing import Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.sanitize.inputs import split_container_name
from pipelines.sanitize.layout import (
    NAMESPACE, RECORDS_DIR, STAGING_DIR, TMP_DIR, JobPlan, delete_present, matching, write_atomically,
)
from pipelines.sanitize.manifest import manifest_row

CONTAINER_EXTENSIONS = {"tfrecord": ".tfrecord", "parquet": ".parquet"}
# What every output record carries besides the image (tf.Example features / Parquet columns).
RECORD_KEY, RECORD_STATUS, RECORD_FACES, RECORD_FORMAT, RECORD_WIDTH, RECORD_HEIGHT = (
    "facesan_input_key", "facesan_status", "facesan_faces", "facesan_format", "facesan_width", "facesan_height")


def shard_of(plan: JobPlan, key: str, source: dict) -> str:
    """The output container (path under records/) that a non-rejected input belongs to."""
    ext = CONTAINER_EXTENSIONS[plan.output_kind]
    if source["container"]:
        _, rel, index = source["container"]
        stem, in_ext = split_container_name(rel)
        gz = ".gz" if plan.output_kind == "tfrecord" and in_ext.lower().endswith(".gz") else ""
        return f"{stem}-{index // plan.settings.records_per_shard:05d}{ext}{gz}"
    shards = plan.output_shards
    if shards < 1:
        raise ValueError("JobPlan.output_shards must be set for image inputs written to containers")
    return f"sanitized-{zlib.crc32(key.encode()) % shards:05d}-of-{shards:05d}{ext}"


def output_shards_for(count: int, records_per_shard: int) -> int:
    return max(1, math.ceil(count / records_per_shard))


def staged_path(plan: JobPlan, key: str) -> str:
    """Where a sanitized input waits for its container shard (container output)."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return plan.out(STAGING_DIR, digest[:2], digest)


def staged_ref(plan: JobPlan, key: str, source: dict) -> tuple[str, dict]:
    """(shard, what the shard writer needs besides the staged file); small, so the shuffle that
    groups a shard's members carries no image bytes."""
    return shard_of(plan, key, source), {
        "key": key, "uri": source["uri"], "extra": source["extra"],
        "container_uri": source["container"][0] if source["container"] else ""}


def read_staged(path: str) -> tuple[dict, bytes]:
    """(header: status, faces, format, width, height; encoded image) of a staged file."""
    with FileSystems.open(path) as handle:
        data = handle.read()
    header, _, image = data.partition(b"\n")
    return json.loads(header), image


def stage(plan: JobPlan, key: str, source: dict, encoded: bytes, source_format: str, status: str, faces: int,
          size, detail: str = "") -> tuple[str, dict]:
    """Writes a finished input to _staging/ (a JSON header line, then the encoded image) and
    returns its reference for the shard that will hold it."""
    header = {"status": status, "faces": int(faces), "format": source_format, "width": int(size[0]),
              "height": int(size[1]), "detail": detail}
    write_atomically(staged_path(plan, key), json.dumps(header, sort_keys=True).encode() + b"\n" + encoded,
                     plan.out(TMP_DIR))
    Metrics.counter(NAMESPACE, "inputs_staged").inc()
    return staged_ref(plan, key, source)


def _record_fields(record: dict, image_field: str) -> dict:
    """The fields this job writes into an output record (beside any passed-through ones)."""
    return {image_field: record["image"], RECORD_KEY: record["key"], RECORD_STATUS: record["status"],
            RECORD_FACES: int(record["faces"]), RECORD_FORMAT: record["format"], RECORD_WIDTH: int(record["width"]),
            RECORD_HEIGHT: int(record["height"])}


def encode_container(plan: JobPlan, shard: str, records: Sequence[dict]) -> bytes:
    """A whole TFRecord (tf.Example) or Parquet container of `records`, in their order."""
    field = plan.settings.image_field
    if plan.output_kind == "tfrecord":
        def feature(value):
            if isinstance(value, int):
                return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            return tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[value.encode() if isinstance(value, str) else value]))

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "shard")
            with tf.io.TFRecordWriter(path, options="GZIP" if shard.endswith(".gz") else None) as writer:
                for record in records:
                    example = tf.train.Example.FromString(record["extra"]) if record["extra"] else tf.train.Example()
                    for name, value in _record_fields(record, field).items():
                        example.features.feature[name].CopyFrom(feature(value))
                    writer.write(example.SerializeToString(deterministic=True))
            with open(path, "rb") as handle:
                return handle.read()
    ours = [(field, pa.binary()), (RECORD_KEY, pa.string()), (RECORD_STATUS, pa.string()),
            (RECORD_FACES, pa.int32()), (RECORD_FORMAT, pa.string()), (RECORD_WIDTH, pa.int32()),
            (RECORD_HEIGHT, pa.int32())]
    if plan.passthrough:  # the kept columns of the input file's schema, the image column as binary, then ours
        with FileSystems.open(records[0]["container_uri"]) as handle:
            schema = pq.read_schema(handle).remove_metadata()
        names, keep = {name for name, _ in ours}, set(plan.settings.keep_fields)
        schema = pa.schema([f for f in schema if f.name in keep and f.name not in names]
                           + [pa.field(n, t) for n, t in ours])
    else:
        schema = pa.schema(ours)
    rows = [dict(record["extra"] or {}, **_record_fields(record, field)) for record in records]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    return sink.getvalue().to_pybytes()


_INDEX_COLUMNS = {RECORD_KEY: "key", RECORD_STATUS: "status", RECORD_FACES: "faces", RECORD_FORMAT: "format",
                  RECORD_WIDTH: "width", RECORD_HEIGHT: "height"}


def container_index(plan: JobPlan, path: str) -> list[dict]:
    """What an output container holds, in record order: key, status, faces, format, width, height."""
    if plan.output_kind == "tfrecord":
        entries = []
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
        for raw in dataset.as_numpy_iterator():
            feature = tf.train.Example.FromString(raw).features.feature
            entry = {}
            for column, name in _INDEX_COLUMNS.items():
                kind = feature[column].WhichOneof("kind")
                value = getattr(feature[column], kind).value[0]
                entry[name] = value.decode() if kind == "bytes_list" else int(value)
            entries.append(entry)
        return entries
    with FileSystems.open(path) as handle:
        table = pq.read_table(handle, columns=list(_INDEX_COLUMNS))
    return table.rename_columns(list(_INDEX_COLUMNS.values())).to_pylist()


class WriteShards(beam.DoFn):
    """(shard, staged references) -> the shard written whole (sorted by input key) from the staged
    files, which are then deleted -> its members' manifest rows.

    A shard that exists is complete (atomic rename) and is not rewritten: its members get their
    rows from it; members missing from it go to a supplementary shard named by their keys."""

    def __init__(self, plan: JobPlan):
        self._plan = plan

    def process(self, element):
        shard, refs = element
        plan = self._plan
        refs = sorted(refs, key=lambda ref: ref["key"])
        root = plan.out(RECORDS_DIR)
        stem, ext = split_container_name(shard)
        existing = [plan.out(RECORDS_DIR, shard)] if FileSystems.exists(plan.out(RECORDS_DIR, shard)) else []
        existing += matching(plan.out(RECORDS_DIR, stem + ".more-*" + ext))
        located = {}  # key -> (output key, header)
        for path in existing:
            name = path[len(root):].lstrip("/")
            located.update((entry.pop("key"), (f"{name}#{index}", entry))
                           for index, entry in enumerate(container_index(plan, path)))
        new = []
        for ref in refs:
            if ref["key"] not in located:
                header, image = read_staged(staged_path(plan, ref["key"]))
                new.append(dict(ref, image=image, **header))
        if new:
            target = shard
            if existing:
                digest = hashlib.sha256("\n".join(record["key"] for record in new).encode()).hexdigest()[:16]
                target = f"{stem}.more-{digest}{ext}"
            written = write_atomically(plan.out(RECORDS_DIR, target), encode_container(plan, target, new),
                                       plan.out(TMP_DIR))
            Metrics.counter(NAMESPACE, "containers_written" if written else "containers_already_present").inc()
            Metrics.counter(NAMESPACE, "records_written" if written else "records_already_present").inc(len(new))
            located.update((record["key"], (f"{target}#{index}", record)) for index, record in enumerate(new))
        Metrics.counter(NAMESPACE, "records_already_present").inc(len(refs) - len(new))
        # Every member is in a complete shard now, so a re-run (or a retry of this bundle) finds it
        # there: the staged copies go.
        delete_present([staged_path(plan, ref["key"]) for ref in refs])
        for ref in refs:
            out, header = located[ref["key"]]
            yield manifest_row(plan, ref["key"], ref, header["status"], output_key=out, faces=header["faces"],
                               size=(header["width"], header["height"]), input_format=header["format"],
                               detail=header.get("detail", ""))
