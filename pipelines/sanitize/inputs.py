"""What the bulk job reads: --input as a file pattern, its kind, and one element per input.

An input is an image file (image inputs) or one record of a TFRecord (tf.Example) or Parquet file
(record inputs). Each becomes `(input key, source)`: the key is the input's relative path (records:
"<relative file>#<index>"), stable across runs, which is what makes re-runs idempotent; the
source says where the bytes are (or holds them, for records) and how the output is named.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, Iterable

import apache_beam as beam
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from pipelines.sanitize.layout import JobPlan, is_local

RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr", ".tfrecord.gz", ".tfrecords.gz", ".gz")
WILDCARDS = "*?["


def input_pattern(path: str) -> tuple[str, str]:
    """(pattern, base) for --input: a folder means everything below it, recursively."""
    if any(char in path for char in WILDCARDS):
        first = min(path.index(char) for char in WILDCARDS if char in path)
        return path, path[: path.rfind("/", 0, first)] if "/" in path[:first] else ""
    is_dir = os.path.isdir(path) if is_local(path) else (path.endswith("/") or not FileSystems.exists(path))
    if is_dir:
        root = path.rstrip("/")
        return root + "/**", root
    return path, posixpath.dirname(path)


def kind_by_name(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(RECORD_SUFFIXES) or "tfrecord" in posixpath.basename(lower):
        return "tfrecord"
    return "images"


def detect_input_kind(pattern: str, requested: str, sample: int = 1000) -> str:
    """--input-format auto: by the pattern's name, else by the names of (up to `sample`) files it
    matches; a folder mixing containers and other files is refused (say --input-format)."""
    if requested != "auto":
        return requested
    kind = kind_by_name(pattern)
    if kind != "images" or not any(char in pattern for char in WILDCARDS):
        return kind
    try:
        matched = FileSystems.match([pattern], limits=[sample])[0].metadata_list
    except Exception:  # nothing matched (the job then reports 0 inputs) or the listing failed
        return kind
    kinds = {kind_by_name(meta.path) for meta in matched}
    if len(kinds) > 1:
        examples = {k: next(m.path for m in matched if kind_by_name(m.path) == k) for k in sorted(kinds)}
        raise SystemExit(f"error: --input {pattern} holds both {' and '.join(sorted(kinds))} files (e.g. "
                         f"{', '.join(examples.values())}). Pass --input-format images|tfrecord|parquet, or a glob "
                         "that matches one kind.")
    return kinds.pop() if kinds else kind


def relative_to(path: str, base: str) -> str:
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1:]
    return posixpath.basename(path)


def make_source(uri: str, out_rel: str, append_ext: bool, data: bytes | None = None,
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
            return key, make_source(f"{path}#{index}", f"{rel}/{index:09d}", True, data, problem,
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
            yield f"{rel}#{index:09d}+", make_source(
                path, "", False, b"", (reason, f"records from index {index} on could not be read: "
                                              f"{type(error).__name__}: {error}"))

    def _records(self, path: str, field: str):
        if self._plan.input_kind == "tfrecord":
            compression = "GZIP" if path.endswith(".gz") else ""
            for raw in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
                example = tf.train.Example.FromString(raw)
                features = example.features.feature
                values = features[field].bytes_list.value if field in features else []
                data = values[0] if values else None
                if not self._plan.passthrough:  # the other features are not needed: no re-serializing
                    yield data, None
                    continue
                kept = tf.train.Example()
                for name in self._plan.settings.keep_fields:
                    if name in features and name != field:
                        kept.features.feature[name].CopyFrom(features[name])
                yield data, kept.SerializeToString(deterministic=True)
        else:
            with FileSystems.open(path) as handle:
                parquet = pq.ParquetFile(handle)
                if field not in parquet.schema_arrow.names:
                    raise KeyError(f"no column {field!r} (columns: {', '.join(parquet.schema_arrow.names)})")
                keep = self._plan.settings.keep_fields if self._plan.passthrough else ()
                columns = [field] + [name for name in keep if name in parquet.schema_arrow.names and name != field]
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
                              make_source(metadata.path, relative_to(metadata.path, plan.base), False)))
    return (matched
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadRecords" >> beam.ParDo(ReadRecords(plan)))


def split_container_name(name: str) -> tuple[str, str]:
    """("db/part-0", ".tfrecord.gz") for "db/part-0.tfrecord.gz"; the extension may be empty."""
    lower = name.lower()
    for suffix in sorted(set(RECORD_SUFFIXES) | {".parquet"}, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return name, ""
