"""The manifest and the progress files: one row per input, written and read back here only.

Every finished input becomes one manifest row (MANIFEST_SCHEMA). While the job runs, rows are
flushed in small Parquet parts to _progress/ (RecordProgress), so a killed run loses at most the
unflushed rows and the driver can print progress from the parts' names; container output also
drops empty markers there for inputs staged for a shard but not yet in one (MarkStaged). The
file names carry their counts:

    _progress/part-<uuid>-n<count>.parquet        rows of inputs finished outside containers
    _progress/part-shard-<uuid>-n<count>.parquet  rows of inputs written into container shards
    _progress/staged-<uuid>-n<count>              markers of inputs staged for a shard (hints)

Consolidation folds manifest/ and the parts into manifest/ with one row per input key, and the
rejected rows into dead_letter/.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
import uuid
from typing import Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.sanitize.layout import (
    DEAD_LETTER_DIR, MANIFEST_DIR, NAMESPACE, PROGRESS_DIR, REJECTED, TMP_DIR, JobPlan, matching, write_atomically,
)

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


PART_PREFIX = "part-"
SHARD_TAG = "shard-"  # parts of rows recorded once their container shard exists
STAGED_PREFIX = "staged-"


def part_name(count: int, in_shards: bool = False) -> str:
    return f"{PART_PREFIX}{SHARD_TAG if in_shards else ''}{uuid.uuid4().hex}-n{count:06d}.parquet"


def staged_marker_name(count: int) -> str:
    return f"{STAGED_PREFIX}{uuid.uuid4().hex}-n{count:06d}"


def progress_file_count(path: str) -> int:
    """The number of inputs a _progress/ file stands for (its name ends in -n<count>[.parquet])."""
    return int(posixpath.basename(path).rsplit("-n", 1)[1].split(".")[0])


def is_shard_part(path: str) -> bool:
    return posixpath.basename(path).startswith(PART_PREFIX + SHARD_TAG)


def finished_outside_shards(paths: Sequence[str]) -> int:
    """Inputs whose rows are in these _progress/ parts and were not written into shards."""
    return sum(progress_file_count(path) for path in paths
               if posixpath.basename(posixpath.dirname(path)) == PROGRESS_DIR
               and posixpath.basename(path).startswith(PART_PREFIX) and not is_shard_part(path))


def progress_counts(plan: JobPlan) -> tuple[int, int]:
    """(inputs finished so far, of them written into container shards), from _progress/ names.

    A staged input is counted once, when its marker appears; the rows of shard members, recorded
    when their shard is written, are counted apart so that no input counts twice."""
    through = in_shards = 0
    for path in matching(plan.out(PROGRESS_DIR, "*-n*")):
        name, count = posixpath.basename(path), progress_file_count(path)
        if is_shard_part(path):
            in_shards += count
        elif name.startswith((PART_PREFIX, STAGED_PREFIX)):
            through += count
    return through, in_shards


def existing_row_files(plan: JobPlan) -> list[str]:
    """Manifest shards and unconsolidated progress parts already in the output."""
    return sorted(matching(plan.out(MANIFEST_DIR, "*.parquet"))
                  + matching(plan.out(PROGRESS_DIR, PART_PREFIX + "*.parquet")))


def manifest_row(plan: JobPlan, key: str, source: dict, status: str, *, output_key: str = "", faces: int = 0,
                 reason: str = "", detail: str = "", size=(0, 0), input_format: str = "") -> dict:
    return {"input_key": key, "input_uri": source["uri"], "output_key": output_key, "status": status,
            "faces": faces, "reason": reason, "detail": detail, "width": int(size[0]), "height": int(size[1]),
            "input_format": input_format, "model_version": plan.model.version, "model_sha256": plan.model.sha256}


def reject(plan, key, source, reason, detail, size=(0, 0), input_format=""):
    Metrics.counter(NAMESPACE, f"rejected_{reason}").inc()
    Metrics.counter(NAMESPACE, "rejected").inc()
    return manifest_row(plan, key, source, REJECTED, reason=reason, detail=detail, size=size,
                        input_format=input_format)


class RecordProgress(beam.DoFn):
    """Flushes finished rows to _progress/part-<uuid>-n<rows>.parquet every `flush_rows` rows or
    `flush_s` seconds and at the end of each bundle (each part written atomically)."""

    def __init__(self, plan: JobPlan, flush_rows: int = 32, flush_s: float = 15.0, in_shards: bool = False):
        self._plan = plan
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._in_shards = in_shards  # rows of inputs written into shards (told apart by the progress line)

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
            name = part_name(len(self._rows), self._in_shards)
            write_atomically(self._plan.out(PROGRESS_DIR, name), sink.getvalue().to_pybytes(), self._plan.out(TMP_DIR))
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
            with FileSystems.create(self._plan.out(PROGRESS_DIR, staged_marker_name(self._count))):
                pass
        self._count, self._since = 0, time.monotonic()


def pick_one_row(element):
    """One row per input key; duplicates (a row recorded twice) are identical but for chance, so the
    smallest by value is kept, the same whichever order they arrive in."""
    key, rows = element
    return min(rows, key=lambda row: json.dumps(row, sort_keys=True))


def dead_letter_json(row: dict) -> str:
    return json.dumps({name: row[name] for name in ("input_key", "input_uri", "reason", "detail")}, sort_keys=True)


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


class ProgressLine:
    """Prints finished inputs and throughput while the pipeline runs (from the rows flushed to
    _progress/, so it works for any runner whose workers write where the driver can list)."""

    def __init__(self, plan, every_s: float, already: int):
        self._plan, self._every, self._already = plan, every_s, already
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start = time.monotonic()

    def counts(self) -> tuple[int, int]:
        """(inputs through this run, of them written into container shards)."""
        through, in_shards = progress_counts(self._plan)
        return through - self._already, in_shards

    def count(self) -> int:
        return self.counts()[0]

    def _loop(self):
        last_time, last_count = self.start, 0
        while not self._stop.wait(self._every):
            try:
                count, in_shards = self.counts()
            except Exception:  # listing can fail transiently on object stores; try again next time
                continue
            now = time.monotonic()
            rate = (count - last_count) / max(now - last_time, 1e-9)
            shards = f" ({in_shards} of them written into shards so far)" if in_shards else ""
            print(f"progress: {count} inputs finished this run{shards}, {rate:.1f}/s now, "
                  f"{count / (now - self.start):.1f}/s since start", flush=True)
            last_time, last_count = now, count

    def __enter__(self):
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
