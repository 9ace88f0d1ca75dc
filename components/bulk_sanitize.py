"""Beam transforms of the bulk sanitization job: read a face database, sanitize, account for all.

One element per input image flows: list/read -> skip what an earlier run finished -> decode
(`imaging.decode_image`, the one decode path) -> find eye centres (fixed for aligned faces, dlib
for in-the-wild photos) -> align (`imaging.align_face`) -> RunInference with a keyed model handler
over the exported sanitizer -> warp each sanitized face back (`imaging.unalign_face`) -> re-encode
(no metadata survives) -> write atomically -> one manifest row. Every input that cannot be
sanitized becomes a row with status "rejected" and a reason instead; nothing is dropped.

Output layout under the job's output folder (local or gs://):

    job.json                  the pinned settings and model of this output (first run writes it)
    images/<relative path>    sanitized images (--output-format images; default for image inputs):
                              the input's format (JPEG/PNG) and relative layout
    records/<shard>           sanitized records (--output-format tfrecord|parquet; default for
                              record inputs): TFRecord of tf.Example / Parquet, see "Containers"
    manifest/manifest-*.parquet   one row per input (MANIFEST_SCHEMA)
    dead_letter/dead_letter-*.jsonl   the rejected inputs with reason and detail
    _progress/part-*.parquet  rows of finished inputs not yet consolidated into manifest/
    _staging/                 container output: sanitized inputs waiting for their shard
    _tmp/                     files being written (renamed into place when complete)

Re-runs: an input with a row in manifest/ or _progress/ is done and skipped; images are written
to _tmp/ and renamed into place, never overwritten; rows are flushed to _progress/ every few
dozen inputs, so a killed run loses at most the unflushed rows (their inputs are recomputed and
their existing images left as they are). `consolidate` folds _progress/ into manifest/ with one
row per input key.

Containers. With a TFRecord or Parquet output, the non-rejected inputs are grouped into shards,
each written whole (sorted by input key) to _tmp/ and renamed into place:

    record inputs:  records/<input file stem>-<k>.tfrecord|.parquet  holds records k*R .. k*R+R-1
                    of that input file (R = --records-per-shard), so the relative layout is kept
    image inputs:   records/sanitized-<h>-of-<N>.tfrecord|.parquet   holds the images whose key
                    hashes (CRC-32) to h; N = ceil(inputs / R), fixed by the first run (job.json)

Each sanitized input is first staged whole under _staging/<hash of its key> (a JSON header line,
then the encoded image); only a small reference goes through the shuffle that groups a shard, so
its memory does not hold the images and a killed run keeps what it sanitized (a re-run finds the
staged file and does not sanitize that input again). A shard is written from its members' staged
files, which are then deleted. Each record carries the sanitized encoded image (--image-field),
`facesan_input_key`, `facesan_status`, `facesan_faces`, `facesan_format`, `facesan_width` and
`facesan_height` (the size); when input and output are the same
container kind, the input record's other features (tf.Example) or columns (Parquet, with the input
file's schema) are passed through unchanged. Manifest rows of shard members are recorded only once
their shard exists, so a re-run finds every shard either complete or absent; inputs that belong
to an existing shard but are not in it (added to the input since) go to a supplementary shard
`<shard stem>.more-<hash of their keys>.<ext>` instead of rewriting it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import posixpath
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from components.imaging import (
    ImageRejected, align_face, decode_image, encode_like, to_gray_float, unalign_face,
)

NAMESPACE = "facesan_sanitize"
SUPPORTED_FORMATS = ("JPEG", "PNG")
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}

SANITIZED = "sanitized"  # at least one face sanitized (aligned mode: the image's face)
COPIED_NO_FACE = "copied_no_face"  # wild mode, no face found, --no-face copy: re-encoded copy
REJECTED = "rejected"  # not in the output; the reason says why
STATUSES = (SANITIZED, COPIED_NO_FACE, REJECTED)

MANIFEST_SCHEMA = pa.schema([
    ("input_key", pa.string()),  # relative path of the input (records: "<file>#<index>")
    ("input_uri", pa.string()),  # where it was read
    ("output_key", pa.string()),  # path under images/, or "<shard under records/>#<index>"; "" when rejected
    ("status", pa.string()),  # one of STATUSES
    ("faces", pa.int32()),  # faces sanitized
    ("reason", pa.string()),  # rejected: empty, undecodable, too_large, too_small, unsupported_format, ...
    ("detail", pa.string()),
    ("width", pa.int32()),  # input size in pixels (0 when it could not be decoded)
    ("height", pa.int32()),
    ("input_format", pa.string()),  # JPEG / PNG / "" when undecodable
    ("model_version", pa.string()),
    ("model_sha256", pa.string()),
])

IMAGES_DIR, RECORDS_DIR, MANIFEST_DIR, DEAD_LETTER_DIR, PROGRESS_DIR, TMP_DIR, STAGING_DIR = (
    "images", "records", "manifest", "dead_letter", "_progress", "_tmp", "_staging")
CONTAINER_EXTENSIONS = {"tfrecord": ".tfrecord", "parquet": ".parquet"}
# What every output record carries besides the image (tf.Example features / Parquet columns).
RECORD_KEY, RECORD_STATUS, RECORD_FACES, RECORD_FORMAT, RECORD_WIDTH, RECORD_HEIGHT = (
    "facesan_input_key", "facesan_status", "facesan_faces", "facesan_format", "facesan_width", "facesan_height")
JOB_FILE = "job.json"
_RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr", ".tfrecord.gz", ".tfrecords.gz", ".gz")
_WILDCARDS = "*?["


@dataclass(frozen=True)
class ModelFacts:
    """The sanitizer a job runs: where, which version, its content hash and face size."""

    path: str
    version: str
    sha256: str
    image_size: int


@dataclass(frozen=True)
class JobPlan:
    """Everything workers need, resolved by the driver (picklable)."""

    settings: Any  # pipelines.config.SanitizeJobConfig
    model: ModelFacts
    input_kind: str  # images | tfrecord | parquet
    pattern: str  # file pattern that lists the inputs (or their containers)
    base: str  # relative paths are taken from here
    output_shards: int = 0  # image inputs into containers: number of hash shards (job.json pins it)

    def out(self, *parts: str) -> str:
        return FileSystems.join(self.settings.output, *parts)

    @property
    def output_kind(self) -> str:
        """images | tfrecord | parquet: what the sanitized inputs are written as."""
        wanted = self.settings.output_format
        return self.input_kind if wanted == "same" else wanted

    @property
    def passthrough(self) -> bool:
        """Whether the input records' other features/columns are copied into the output records."""
        return self.output_kind != "images" and self.output_kind == self.input_kind


# ---------------------------------------------------------------------------------------------
# Input listing

def _is_local(path: str) -> bool:
    return FileSystems.get_filesystem(path).scheme() is None  # LocalFileSystem has no URI scheme


def input_pattern(path: str) -> tuple[str, str]:
    """(pattern, base) for --input: a folder means everything below it, recursively."""
    if any(char in path for char in _WILDCARDS):
        first = min(path.index(char) for char in _WILDCARDS if char in path)
        return path, path[: path.rfind("/", 0, first)] if "/" in path[:first] else ""
    is_dir = os.path.isdir(path) if _is_local(path) else (path.endswith("/") or not FileSystems.exists(path))
    if is_dir:
        root = path.rstrip("/")
        return root + "/**", root
    return path, posixpath.dirname(path)


def _kind_by_name(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(_RECORD_SUFFIXES) or "tfrecord" in posixpath.basename(lower):
        return "tfrecord"
    return "images"


def detect_input_kind(pattern: str, requested: str, sample: int = 1000) -> str:
    """--input-format auto: by the pattern's name, else by the names of (up to `sample`) files it
    matches; a folder mixing containers and other files is refused (say --input-format)."""
    if requested != "auto":
        return requested
    kind = _kind_by_name(pattern)
    if kind != "images" or not any(char in pattern for char in _WILDCARDS):
        return kind
    try:
        matched = FileSystems.match([pattern], limits=[sample])[0].metadata_list
    except Exception:  # nothing matched (the job then reports 0 inputs) or the listing failed
        return kind
    kinds = {_kind_by_name(meta.path) for meta in matched}
    if len(kinds) > 1:
        examples = {k: next(m.path for m in matched if _kind_by_name(m.path) == k) for k in sorted(kinds)}
        raise SystemExit(f"error: --input {pattern} holds both {' and '.join(sorted(kinds))} files (e.g. "
                         f"{', '.join(examples.values())}). Pass --input-format images|tfrecord|parquet, or a glob "
                         "that matches one kind.")
    return kinds.pop() if kinds else kind


def relative_to(path: str, base: str) -> str:
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1:]
    return posixpath.basename(path)


def _source(uri: str, out_rel: str, append_ext: bool, data: bytes | None = None,
            problem: tuple[str, str] | None = None, container: tuple[str, str, int] | None = None,
            extra: Any = None) -> dict:
    """One input. `container`: (uri, relative path, index) of a record in a TFRecord/Parquet input;
    `extra`: the record's other features (serialized tf.Example) or columns (dict), for passing
    them through to a container output of the same kind."""
    return {"uri": uri, "out_rel": out_rel, "append_ext": append_ext, "data": data, "problem": problem,
            "container": container, "extra": extra}


class ReadRecords(beam.DoFn):
    """One TFRecord (tf.Example) or Parquet file -> (input key, source) per record, streamed.

    The key is "<relative file>#<index>": Beam's record readers do not expose positions, and
    stable keys are what make re-runs idempotent. A record without the image field, or a file
    that stops being readable, is an input that ends up rejected with that reason.
    """

    def __init__(self, plan: JobPlan):
        self._plan = plan

    def process(self, metadata) -> Iterable[tuple[str, dict]]:
        path = metadata.path
        rel = relative_to(path, self._plan.base)
        field = self._plan.settings.image_field
        index = 0

        def emit(data, extra, problem=None):
            key = f"{rel}#{index:09d}"
            return key, _source(f"{path}#{index}", f"{rel}/{index:09d}", True, data, problem,
                                container=(path, rel, index), extra=extra if self._plan.passthrough else None)

        try:
            for data, extra in self._records(path, field):
                if data is None:
                    yield emit(b"", None, ("missing_image_field", f"no bytes feature/column {field!r} in this record"))
                else:
                    yield emit(data, extra)
                index += 1
        except Exception as error:  # a corrupt or unreadable container: its remaining records
            reason = "missing_image_field" if isinstance(error, KeyError) else "unreadable_container"
            yield f"{rel}#{index:09d}+", _source(
                path, "", False, b"", (reason, f"records from index {index} on could not be read: "
                                              f"{type(error).__name__}: {error}"))

    def _records(self, path: str, field: str):
        if self._plan.input_kind == "tfrecord":
            import tensorflow as tf

            compression = "GZIP" if path.endswith(".gz") else ""
            for raw in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
                example = tf.train.Example.FromString(raw)
                features = example.features.feature
                values = features[field].bytes_list.value if field in features else []
                data = values[0] if values else None
                if not self._plan.passthrough:  # the other features are not needed: no re-serializing
                    yield data, None
                    continue
                if field in features:
                    del features[field]
                yield data, example.SerializeToString(deterministic=True)
        else:
            with FileSystems.open(path) as handle:
                parquet = pq.ParquetFile(handle)
                if field not in parquet.schema_arrow.names:
                    raise KeyError(f"no column {field!r} (columns: {', '.join(parquet.schema_arrow.names)})")
                columns = None if self._plan.passthrough else [field]
                for batch in parquet.iter_batches(batch_size=64, columns=columns):
                    for row in batch.to_pylist():
                        value = row.pop(field)
                        yield None if value is None else (value.encode() if isinstance(value, str) else value), row


@beam.ptransform_fn
def ListInputs(pipeline, plan: JobPlan):  # noqa: N802
    """Root transform: (input key, source) for every input image; files are read later."""
    matched = (pipeline
               | "Pattern" >> beam.Create([plan.pattern])
               | "Match" >> fileio.MatchAll())
    if plan.input_kind == "images":
        return matched | "KeyFiles" >> beam.Map(
            lambda metadata: (relative_to(metadata.path, plan.base),
                              _source(metadata.path, relative_to(metadata.path, plan.base), False)))
    return (matched
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadRecords" >> beam.ParDo(ReadRecords(plan)))


def _skip_done(element):
    """(key, source) of a listed input that no earlier run finished; a row of an input that is no
    longer listed is kept in the manifest and needs nothing."""
    key, grouped = element
    sources = list(grouped["input"])
    done = bool(list(grouped["done"]))
    if sources and done:
        Metrics.counter(NAMESPACE, "inputs_already_done").inc()
    return [(key, sources[0])] if sources and not done else []


# ---------------------------------------------------------------------------------------------
# Rows

def manifest_row(plan: JobPlan, key: str, source: dict, status: str, *, output_key: str = "", faces: int = 0,
                 reason: str = "", detail: str = "", size=(0, 0), input_format: str = "") -> dict:
    return {"input_key": key, "input_uri": source["uri"], "output_key": output_key, "status": status,
            "faces": faces, "reason": reason, "detail": detail, "width": int(size[0]), "height": int(size[1]),
            "input_format": input_format, "model_version": plan.model.version, "model_sha256": plan.model.sha256}


def _reject(plan, key, source, reason, detail, size=(0, 0), input_format=""):
    Metrics.counter(NAMESPACE, f"rejected_{reason}").inc()
    Metrics.counter(NAMESPACE, "rejected").inc()
    return manifest_row(plan, key, source, REJECTED, reason=reason, detail=detail, size=size,
                        input_format=input_format)


def output_key(source: dict, source_format: str) -> str:
    rel = source["out_rel"]
    return rel + FORMAT_EXTENSIONS[source_format] if source["append_ext"] else rel


def _split_container_name(name: str) -> tuple[str, str]:
    """("db/part-0", ".tfrecord.gz") for "db/part-0.tfrecord.gz"; the extension may be empty."""
    lower = name.lower()
    for suffix in sorted(set(_RECORD_SUFFIXES) | {".parquet"}, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return name, ""


def shard_of(plan: JobPlan, key: str, source: dict) -> str:
    """The output container (path under records/) that a non-rejected input belongs to."""
    ext = CONTAINER_EXTENSIONS[plan.output_kind]
    if source["container"]:
        _, rel, index = source["container"]
        stem, in_ext = _split_container_name(rel)
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


def _staged_ref(plan: JobPlan, key: str, source: dict) -> tuple[str, dict]:
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


def deliver(plan: JobPlan, key: str, source: dict, encoded: bytes, source_format: str, status: str, faces: int,
            size) -> tuple[str, Any]:
    """A finished input: ("row", manifest row) once its image file is written (images output), or
    ("record", (shard, reference)) once it is staged for its container shard (container output)."""
    if plan.output_kind == "images":
        out = output_key(source, source_format)
        written = write_atomically(plan.out(IMAGES_DIR, out), encoded, plan.out(TMP_DIR))
        Metrics.counter(NAMESPACE, "images_written" if written else "images_already_present").inc()
        return "row", manifest_row(plan, key, source, status, output_key=out, faces=faces, size=size,
                                   input_format=source_format)
    header = {"status": status, "faces": int(faces), "format": source_format, "width": int(size[0]),
              "height": int(size[1])}
    write_atomically(staged_path(plan, key), json.dumps(header, sort_keys=True).encode() + b"\n" + encoded,
                     plan.out(TMP_DIR))
    Metrics.counter(NAMESPACE, "inputs_staged").inc()
    return "record", _staged_ref(plan, key, source)


def _record_fields(record: dict, image_field: str) -> dict:
    """The fields this job writes into an output record (beside any passed-through ones)."""
    return {image_field: record["image"], RECORD_KEY: record["key"], RECORD_STATUS: record["status"],
            RECORD_FACES: int(record["faces"]), RECORD_FORMAT: record["format"], RECORD_WIDTH: int(record["width"]),
            RECORD_HEIGHT: int(record["height"])}


def encode_container(plan: JobPlan, shard: str, records: Sequence[dict]) -> bytes:
    """A whole TFRecord (tf.Example) or Parquet container of `records`, in their order."""
    field = plan.settings.image_field
    if plan.output_kind == "tfrecord":
        import tensorflow as tf

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
    if plan.passthrough:  # the input file's columns, the image column as binary, then ours
        with FileSystems.open(records[0]["container_uri"]) as handle:
            schema = pq.read_schema(handle).remove_metadata()
        names = {name for name, _ in ours}
        schema = pa.schema([f for f in schema if f.name not in names] + [pa.field(n, t) for n, t in ours])
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
        import tensorflow as tf

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


def _delete_present(paths: Sequence[str]) -> None:
    try:
        FileSystems.delete(list(paths))
    except Exception:  # some were gone already (a retried bundle): delete the others one by one
        for path in paths:
            if FileSystems.exists(path):
                FileSystems.delete([path])


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
        stem, ext = _split_container_name(shard)
        existing = [plan.out(RECORDS_DIR, shard)] if FileSystems.exists(plan.out(RECORDS_DIR, shard)) else []
        existing += sorted(meta.path for meta in FileSystems.match([plan.out(RECORDS_DIR, stem + ".more-*" + ext)])[0]
                           .metadata_list)
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
        _delete_present([staged_path(plan, ref["key"]) for ref in refs])
        for ref in refs:
            out, header = located[ref["key"]]
            yield manifest_row(plan, ref["key"], ref, header["status"], output_key=out, faces=header["faces"],
                               size=(header["width"], header["height"]), input_format=header["format"])


def write_atomically(path: str, data: bytes, tmp_dir: str) -> bool:
    """Writes `data` to `path` via a temporary file and a rename, unless `path` already exists.

    A file at `path` is therefore always complete; an existing one (from an earlier attempt of
    the same deterministic work) is never rewritten. Returns whether it wrote.
    """
    if FileSystems.exists(path):
        return False
    tmp = FileSystems.join(tmp_dir, uuid.uuid4().hex)
    with FileSystems.create(tmp) as handle:
        handle.write(data)
    if _is_local(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    FileSystems.rename([tmp], [path])  # GCS: copy + delete; the object appears whole or not at all
    return True


# ---------------------------------------------------------------------------------------------
# Faces

@dataclass(frozen=True)
class FaceContext:
    """What RunInference carries beside a photo's faces (the key of the keyed model handler)."""

    key: str
    source: dict
    data: bytes
    eyes: tuple  # ((left_eye, right_eye), ...) in image coordinates, one per face


class PrepareFaces(beam.DoFn):
    """Reads and decodes one input, finds and aligns its faces -> (FaceContext, faces [k,S,S,1]).

    Inputs that cannot be used, and (with --no-face reject) photos without a face, leave as
    rejected rows on the "rows" output; with --no-face copy a photo without a face is re-encoded
    and written as it is, also as a row there.
    """

    ROWS = "rows"
    RECORDS = "records"

    def __init__(self, plan: JobPlan):
        self._plan = plan
        self._finder = None

    def setup(self):
        if self._plan.settings.faces == "wild":
            from components.face_detection import FaceFinder

            self._finder = FaceFinder(self._plan.settings.detect_upsample, self._plan.settings.detect_max_side)

    def process(self, element):
        key, source = element
        plan, settings = self._plan, self._plan.settings
        if source["problem"]:
            yield beam.pvalue.TaggedOutput(self.ROWS, _reject(plan, key, source, *source["problem"]))
            return
        if plan.output_kind != "images" and FileSystems.exists(staged_path(plan, key)):
            # Sanitized by an earlier run that stopped before writing its shard: kept, not redone.
            Metrics.counter(NAMESPACE, "inputs_already_staged").inc()
            yield beam.pvalue.TaggedOutput(self.RECORDS, _staged_ref(plan, key, source))
            return
        data = source["data"]
        if data is None:
            try:
                with FileSystems.open(source["uri"]) as handle:
                    data = handle.read()
            except Exception as error:  # vanished since listing, permissions, ...
                yield beam.pvalue.TaggedOutput(self.ROWS, _reject(
                    plan, key, source, "unreadable", f"{type(error).__name__}: {error}"))
                return
        Metrics.counter(NAMESPACE, "images_read").inc()
        try:
            decoded = decode_image(data, settings.max_pixels, settings.min_side, SUPPORTED_FORMATS)
        except ImageRejected as error:
            yield beam.pvalue.TaggedOutput(self.ROWS, _reject(plan, key, source, error.reason, error.detail))
            return
        pixels = decoded.pixels
        height, width = pixels.shape[:2]
        if settings.faces == "aligned":
            lx, ly, rx, ry = settings.aligned_eyes
            eyes = [((lx * width, ly * height), (rx * width, ry * height))]
        else:
            eyes = [(face.left_eye, face.right_eye) for face in self._finder.find(pixels)]
        Metrics.counter(NAMESPACE, "faces").inc(len(eyes))
        if not eyes:
            if settings.no_face == "reject":
                yield beam.pvalue.TaggedOutput(self.ROWS, _reject(
                    plan, key, source, "no_face", "no face found (--no-face reject)", (width, height),
                    decoded.source_format))
                return
            kind, value = deliver(plan, key, source, encode_like(pixels, decoded.source_format, settings.jpeg_quality),
                                  decoded.source_format, COPIED_NO_FACE, 0, (width, height))
            Metrics.counter(NAMESPACE, COPIED_NO_FACE).inc()
            yield beam.pvalue.TaggedOutput(self.ROWS if kind == "row" else self.RECORDS, value)
            return
        size = plan.model.image_size
        faces = np.stack([to_gray_float(align_face(pixels, left, right, size)) for left, right in eyes])
        yield FaceContext(key, dict(source, data=None), data, tuple(eyes)), faces


class SanitizerModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
    """RunInference handler for the exported sanitizer SavedModel (local or gs://).

    An element is one photo's aligned gray faces [k, S, S, 1]; a batch concatenates them into one
    call of the `sanitize_faces` signature and splits the sanitized faces back per photo. Beam
    loads one model per worker process and shares it between its threads.

    (Beam's own `tensorflow_inference.TFModelHandlerNumpy` cannot be imported in this project's
    environment: it imports tensorflow_hub, which TFX 1.16 pins to 0.15, and that version needs
    `tf.compat.v1.estimator`, gone in TF 2.16; it would also load through `tf.keras`, while the
    sanitizer is a plain SavedModel with signatures.)
    """

    def __init__(self, model_path: str, max_batch_size: int, signature: str = "sanitize_faces", tf_threads: int = 0):
        self._model_path = model_path
        self._max_batch_size = max_batch_size
        self._signature = signature
        self._tf_threads = tf_threads

    def load_model(self):
        import tensorflow as tf

        if self._tf_threads:
            try:  # several worker processes on one machine: share the cores instead of oversubscribing
                tf.config.threading.set_intra_op_parallelism_threads(self._tf_threads)
                tf.config.threading.set_inter_op_parallelism_threads(self._tf_threads)
            except RuntimeError:  # TensorFlow already initialized in this process; keep its setting
                pass
        return tf.saved_model.load(self._model_path)

    def update_model_path(self, model_path: str | None = None):
        self._model_path = model_path or self._model_path

    def run_inference(self, batch: Sequence[np.ndarray], model, inference_args=None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        counts = [len(faces) for faces in batch]
        outputs = model.signatures[self._signature](faces=tf.constant(np.concatenate(batch)))["sanitized"].numpy()
        for faces, sanitized in zip(batch, np.split(outputs, np.cumsum(counts)[:-1])):
            yield PredictionResult(faces, sanitized, self._model_path)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(faces.nbytes for faces in batch)

    def batch_elements_kwargs(self):
        # Full batches (a bundle's last one may be smaller): the forward pass dominates the cost.
        return {"min_batch_size": self._max_batch_size, "max_batch_size": self._max_batch_size}

    def get_metrics_namespace(self) -> str:
        return NAMESPACE + "_inference"


class ComposeAndWrite(beam.DoFn):
    """Warps the sanitized faces back into the photo, re-encodes it and writes it -> manifest row
    (images output), or -> (shard, record) on the RECORDS output (container output)."""

    RECORDS = "records"

    def __init__(self, plan: JobPlan):
        self._plan = plan

    def process(self, element):
        context, result = element
        plan, settings = self._plan, self._plan.settings
        decoded = decode_image(context.data, settings.max_pixels, settings.min_side, SUPPORTED_FORMATS)
        pixels = decoded.pixels
        for face, (left, right) in zip(result.inference, context.eyes):
            pixels = unalign_face(pixels, face, left, right, settings.feather, settings.color == "keep-chroma")
        height, width = pixels.shape[:2]
        kind, value = deliver(plan, context.key, context.source,
                              encode_like(pixels, decoded.source_format, settings.jpeg_quality),
                              decoded.source_format, SANITIZED, len(context.eyes), (width, height))
        Metrics.counter(NAMESPACE, SANITIZED).inc()
        Metrics.counter(NAMESPACE, "faces_sanitized").inc(len(context.eyes))
        yield value if kind == "row" else beam.pvalue.TaggedOutput(self.RECORDS, value)


class RecordProgress(beam.DoFn):
    """Flushes finished rows to _progress/part-<uuid>-n<rows>.parquet every `flush_rows` rows or
    `flush_s` seconds and at the end of each bundle (each part written atomically)."""

    def __init__(self, plan: JobPlan, flush_rows: int = 32, flush_s: float = 15.0, tag: str = ""):
        self._plan = plan
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._tag = tag  # "shard-": rows of inputs written into shards (told apart by the progress line)

    def start_bundle(self):
        self._rows = []
        self._since = time.monotonic()

    def process(self, row):
        self._rows.append(row)
        if len(self._rows) >= self._flush_rows or time.monotonic() - self._since > self._flush_s:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def _flush(self):
        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            name = f"part-{self._tag}{uuid.uuid4().hex}-n{len(self._rows):06d}.parquet"
            write_atomically(self._plan.out(PROGRESS_DIR, name), sink.getvalue().to_pybytes(),
                             self._plan.out(TMP_DIR))
        self._rows = []
        self._since = time.monotonic()


class MarkStaged(beam.DoFn):
    """Container output: empty marker files _progress/staged-<uuid>-n<count> for the progress line
    (staged inputs have no manifest row until their shard is written); hints only."""

    def __init__(self, plan: JobPlan, flush_every: int = 32, flush_s: float = 15.0):
        self._plan, self._every, self._flush_s = plan, flush_every, flush_s

    def start_bundle(self):
        self._count, self._since = 0, time.monotonic()

    def process(self, element):
        self._count += 1
        if self._count >= self._every or time.monotonic() - self._since > self._flush_s:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def _flush(self):
        if self._count:
            with FileSystems.create(self._plan.out(PROGRESS_DIR, f"staged-{uuid.uuid4().hex}-n{self._count:06d}")):
                pass
        self._count, self._since = 0, time.monotonic()


def progress_file_count(path: str) -> int:
    """The number of inputs a _progress/ file stands for (its name ends in -n<count>[.parquet])."""
    return int(posixpath.basename(path).rsplit("-n", 1)[1].split(".")[0])


def existing_row_files(plan: JobPlan) -> list[str]:
    """Manifest shards and unconsolidated progress parts already in the output."""
    patterns = [plan.out(MANIFEST_DIR, "*.parquet"), plan.out(PROGRESS_DIR, "part-*.parquet")]
    return sorted(meta.path for result in FileSystems.match(patterns) for meta in result.metadata_list)


def build_sanitize(pipeline, plan: JobPlan, done_files: Sequence[str]):
    """The sanitizing pipeline; `done_files` hold rows of inputs finished by earlier runs."""
    inputs = pipeline | "ListInputs" >> ListInputs(plan)
    inputs = inputs | "CountInputs" >> beam.Map(_count("inputs_listed"))
    if done_files:
        done = (pipeline
                | "DoneFiles" >> beam.Create(list(done_files))
                | "ReadDone" >> beam.io.ReadAllFromParquet(columns=["input_key"])
                | "KeyDone" >> beam.Map(lambda row: (row["input_key"], True)))
    else:
        done = pipeline | "NothingDone" >> beam.Create([])
    todo = ({"input": inputs, "done": done}
            | "JoinDone" >> beam.CoGroupByKey()
            | "SkipDone" >> beam.FlatMap(_skip_done)
            | "Spread" >> beam.Reshuffle())
    prepared = todo | "PrepareFaces" >> beam.ParDo(PrepareFaces(plan)).with_outputs(
        PrepareFaces.ROWS, PrepareFaces.RECORDS, main="faces")
    handler = KeyedModelHandler(SanitizerModelHandler(plan.model.path, plan.settings.batch_size,
                                                      tf_threads=plan.settings.tf_threads))
    composed = (prepared.faces
                | "Sanitize" >> RunInference(handler)
                | "ComposeAndWrite" >> beam.ParDo(ComposeAndWrite(plan)).with_outputs(
                    ComposeAndWrite.RECORDS, main="rows"))
    # Recorded on each branch, not after a Flatten: a runner may materialize a Flatten's inputs
    # before its consumer runs, and rows must reach _progress/ while the work goes on.
    _ = composed.rows | "RecordSanitized" >> beam.ParDo(RecordProgress(plan))
    _ = prepared[PrepareFaces.ROWS] | "RecordOthers" >> beam.ParDo(RecordProgress(plan))
    if plan.output_kind != "images":
        # Sanitized inputs are staged (one file each, under _staging/) and only references go
        # through the shuffle that groups a shard, so its memory does not hold the images and a
        # killed run keeps the inputs it sanitized.
        _ = composed[ComposeAndWrite.RECORDS] | "MarkStaged" >> beam.ParDo(MarkStaged(plan))
        _ = prepared[PrepareFaces.RECORDS] | "MarkOthersStaged" >> beam.ParDo(MarkStaged(plan))
        _ = ((composed[ComposeAndWrite.RECORDS], prepared[PrepareFaces.RECORDS])
             | "AllRecords" >> beam.Flatten()
             | "GroupByShard" >> beam.GroupByKey()
             | "WriteShards" >> beam.ParDo(WriteShards(plan))
             | "RecordShards" >> beam.ParDo(RecordProgress(plan, tag="shard-")))


def _count(name):
    counter = Metrics.counter(NAMESPACE, name)

    def count(element):
        counter.inc()
        return element

    return count


# ---------------------------------------------------------------------------------------------
# Consolidation

def _pick(element):
    """One row per input key; duplicates (a row recorded twice) are identical but for chance, so the
    smallest by value is kept, the same whichever order they arrive in."""
    key, rows = element
    return min(rows, key=lambda row: json.dumps(row, sort_keys=True))


def dead_letter_json(row: dict) -> str:
    return json.dumps({name: row[name] for name in ("input_key", "input_uri", "reason", "detail")}, sort_keys=True)


def build_consolidate(pipeline, plan: JobPlan, row_files: Sequence[str]):
    """manifest/ and dead_letter/ rewritten from the old manifest plus the progress parts."""
    rows = (pipeline
            | "RowFiles" >> beam.Create(list(row_files))
            | "ReadRows" >> beam.io.ReadAllFromParquet()
            | "KeyRows" >> beam.Map(lambda row: (row["input_key"], row))
            | "GroupByInput" >> beam.GroupByKey()
            | "OneRowPerInput" >> beam.Map(_pick))
    _ = rows | "WriteManifest" >> beam.io.WriteToParquet(
        plan.out(MANIFEST_DIR, "manifest"), MANIFEST_SCHEMA, file_name_suffix=".parquet",
        num_shards=plan.settings.manifest_shards)
    _ = (rows
         | "Rejected" >> beam.Filter(lambda row: row["status"] == REJECTED)
         | "DeadLetterJson" >> beam.Map(dead_letter_json)
         | "WriteDeadLetter" >> beam.io.WriteToText(plan.out(DEAD_LETTER_DIR, "dead_letter"), file_name_suffix=".jsonl",
                                                    num_shards=1))


def read_manifest(output: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The consolidated manifest of an output folder, as one Arrow table."""
    paths = sorted(meta.path for meta in FileSystems.match([FileSystems.join(output, MANIFEST_DIR, "*.parquet")])[0]
                   .metadata_list)
    tables = []
    for path in paths:
        with FileSystems.open(path) as handle:
            tables.append(pq.read_table(handle, columns=columns))
    if not tables:
        return MANIFEST_SCHEMA.empty_table() if columns is None else pa.table(
            {name: pa.array([], MANIFEST_SCHEMA.field(name).type) for name in columns})
    return pa.concat_tables(tables)


def read_dead_letter(output: str) -> list[dict]:
    rows = []
    for meta in FileSystems.match([FileSystems.join(output, DEAD_LETTER_DIR, "*.jsonl")])[0].metadata_list:
        with FileSystems.open(meta.path) as handle:
            rows += [json.loads(line) for line in handle.read().decode().splitlines() if line.strip()]
    return rows


logging.getLogger(__name__).addHandler(logging.NullHandler())
