"""The manifest and the progress files: one row per input, written and read back here only.

Every finished input becomes one manifest row (MANIFEST_SCHEMA). While the job runs, rows are
flushed in small Parquet parts to _progress/ (RecordProgress), so a killed run loses at most the
unflushed rows and the driver can print progress from the parts' names; container output also
drops empty markers there for inputs staged for a shard but not yet in one (MarkStaged). The
file names carry their counts:

    _progress/part-<uuid>-n<count>.parquet        rows of inputs finished outside containers
    _progress/part-shard-<uuid>-n<count>.parquet  rows of inputs written into container shards
    _progress/staged-<uuid>-n<count>              markers of inputs staged for a shard (hints)

Consolidation, in the same Beam graph, folds manifest/, the parts of earlier runs and this run's
rows into manifest/ with one row per input key (ShardTable, WriteManifestShard), and the rejected
rows into dead_letter/; then the parts are deleted.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
import zlib
from typing import Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipelines.sanitize.layout import (
    DEAD_LETTER_DIR, MANIFEST_DIR, NAMESPACE, PROGRESS_DIR, REJECTED, TMP_DIR, JobPlan, matching, replace_atomically,
    write_atomically,
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
    ("privacy_policy", pa.string()),  # the model's policy, JSON: {"name", "suppress", "preserve"}
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


def manifest_row(plan: JobPlan, key: str, source: dict, status: str, *, output_key: str = "", faces: int = 0,
                 reason: str = "", detail: str = "", size=(0, 0), input_format: str = "") -> dict:
    return {"input_key": key, "input_uri": source["uri"], "output_key": output_key, "status": status,
            "faces": faces, "reason": reason, "detail": detail, "width": int(size[0]), "height": int(size[1]),
            "input_format": input_format, "model_version": plan.model.version, "model_sha256": plan.model.sha256,
            "privacy_policy": plan.model.policy}


def reject(plan, key, source, reason, detail, size=(0, 0), input_format=""):
    Metrics.counter(NAMESPACE, f"rejected_{reason}").inc()
    Metrics.counter(NAMESPACE, "rejected").inc()
    return manifest_row(plan, key, source, REJECTED, reason=reason, detail=detail, size=size,
                        input_format=input_format)


class _FlushedInBatches(beam.DoFn):
    """Buffers elements and hands every `flush_every` of them to `_write`, also every `flush_s`
    seconds and at the end of each bundle; emits what `_write` returns (the progress files: the
    path of every file written, so that the clean-up can wait for all of them)."""

    def __init__(self, plan: JobPlan, flush_every: int = 32, flush_s: float = 15.0):
        self._plan, self._flush_every, self._flush_s = plan, flush_every, flush_s

    def start_bundle(self):
        self._items, self._since = [], time.monotonic()

    def process(self, element):
        self._items.append(element)
        if len(self._items) >= self._flush_every or time.monotonic() - self._since > self._flush_s:
            yield from self._flush()

    def finish_bundle(self):
        for path in self._flush():
            yield GlobalWindows.windowed_value(path)

    def _flush(self):
        if self._items:
            yield self._write(self._items)
        self._items, self._since = [], time.monotonic()

    def _write(self, items: list):
        """Writes one _progress/ file standing for `items` and returns its path, or makes what
        stands for them (BatchRows)."""
        raise NotImplementedError  # each subclass writes (or makes) its own kind of batch


class RecordProgress(_FlushedInBatches):
    """Flushes finished rows to _progress/part-<uuid>-n<rows>.parquet (each part written atomically)."""

    def __init__(self, plan: JobPlan, flush_rows: int = 32, flush_s: float = 15.0, in_shards: bool = False):
        super().__init__(plan, flush_rows, flush_s)
        self._in_shards = in_shards  # rows of inputs written into shards (told apart by the progress line)

    def _write(self, rows: list) -> str:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), sink)
        path = self._plan.out(PROGRESS_DIR, part_name(len(rows), self._in_shards))
        write_atomically(path, sink.getvalue().to_pybytes(), self._plan.out(TMP_DIR))
        return path


class MarkStaged(_FlushedInBatches):
    """Container output: empty marker files _progress/staged-<uuid>-n<count> for the progress line
    (staged inputs have no manifest row until their shard is written); hints only."""

    def _write(self, refs: list) -> str:
        path = self._plan.out(PROGRESS_DIR, staged_marker_name(len(refs)))
        with FileSystems.create(path):
            pass
        return path


def pick_one_row(element) -> tuple[bool, dict]:
    """(key, [(unconsolidated, row), ...]) -> (whether the manifest lacks it, one row per input key).

    Duplicates (a row recorded twice, e.g. by a retried bundle) are identical but for chance, so
    the smallest by value is kept, the same whichever order they arrive in."""
    _, tagged = element
    tagged = list(tagged)
    row = min((row for _, row in tagged), key=lambda row: json.dumps(row, sort_keys=True))
    return any(unconsolidated for unconsolidated, _ in tagged), row


UNCONSOLIDATED = "_unconsolidated"  # a column only while consolidating: the row is in no manifest yet
TAGGED_SCHEMA = MANIFEST_SCHEMA.append(pa.field(UNCONSOLIDATED, pa.bool_()))


def one_row_per_key(tagged: pa.Table) -> tuple[pa.Table, int]:
    """Rows of one manifest shard (TAGGED_SCHEMA) -> (one row per input key, sorted by key, in
    MANIFEST_SCHEMA; how many keys have an unconsolidated row). Keys recorded more than once keep
    the row pick_one_row picks."""
    keys = tagged["input_key"]
    unconsolidated = len(pc.unique(pc.filter(keys, tagged[UNCONSOLIDATED])))
    counts = pc.value_counts(keys)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        is_repeated = pc.is_in(keys, value_set=repeated)
        groups: dict[str, list] = {}
        for row in tagged.filter(is_repeated).to_pylist():
            groups.setdefault(row["input_key"], []).append((row.pop(UNCONSOLIDATED), row))
        picked = [pick_one_row(element)[1] for element in groups.items()]
        tagged = pa.concat_tables([tagged.filter(pc.invert(is_repeated)).drop([UNCONSOLIDATED]),
                                   pa.Table.from_pylist(picked, schema=MANIFEST_SCHEMA)])
    else:
        tagged = tagged.drop([UNCONSOLIDATED])
    return tagged.sort_by("input_key"), unconsolidated


BATCH_ROWS = 1024  # rows per Arrow record batch on their way to the manifest


class BatchRows(_FlushedInBatches):
    """Manifest rows (dicts) -> Arrow record batches (MANIFEST_SCHEMA) of up to BATCH_ROWS rows,
    made in the stage that makes the rows (the rest at the end of each bundle).

    Applied to each branch of rows before they are flattened: a runner may materialize a
    Flatten's inputs until its consumer runs (Beam's FnApiRunner does, the local runner here), so
    what waits there for the last image is a few record batches, not one pickled dict per input
    (with one dict per input, 20,000 of them were decoded at once at the end of the job)."""

    def __init__(self, rows: int = BATCH_ROWS):
        super().__init__(plan=None, flush_every=rows, flush_s=float("inf"))

    def _write(self, rows: list) -> pa.RecordBatch:
        return pa.RecordBatch.from_pylist(rows, schema=MANIFEST_SCHEMA)


def in_manifest_schema(table) -> pa.Table:
    """A table or record batch of manifest rows read back or made -> MANIFEST_SCHEMA exactly (a
    column an older manifest lacks comes back empty, as a missing dict key did)."""
    table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    columns = [table[field.name].cast(field.type) if field.name in table.column_names
               else pa.nulls(table.num_rows, field.type) for field in MANIFEST_SCHEMA]
    return pa.Table.from_arrays(columns, schema=MANIFEST_SCHEMA)


def tag_by_shard(rows, unconsolidated: bool, shards: int):
    """Manifest rows (an Arrow table or record batch) -> (manifest shard, record batch in
    TAGGED_SCHEMA) for each shard they touch; `unconsolidated`: the rows are in no manifest yet."""
    table = in_manifest_schema(rows)
    if not table.num_rows:
        return
    table = table.append_column(UNCONSOLIDATED, pa.array([unconsolidated] * table.num_rows, pa.bool_()))
    if shards == 1:
        parts = [(0, table)]
    else:
        of_shard = pa.array([manifest_shard_of(key, shards) for key in table["input_key"].to_pylist()], pa.int32())
        parts = [(shard, table.filter(pc.equal(of_shard, shard))) for shard in pc.unique(of_shard).to_pylist()]
    for shard, part in parts:
        for batch in part.combine_chunks().to_batches():
            yield shard, batch


class ShardTable(beam.CombineFn):
    """Record batches (TAGGED_SCHEMA) of one manifest shard -> one_row_per_key of them: (Arrow
    table, unconsolidated count).

    A runner lifts a CombineFn into the stage that reads its input (Beam's combiner lifting), so
    the rows cross the shuffle, and wait for the last of them, as Arrow record batches, not as
    Python objects: the consolidation's memory grows with the rows' bytes. None (the placeholder
    that makes every shard exist, rows or not) adds nothing."""

    def create_accumulator(self):
        return []  # record batches

    def add_input(self, accumulator, batch):
        if batch is not None and batch.num_rows:
            accumulator.append(batch)
        return accumulator

    def compact(self, accumulator):
        """One record batch (what crosses the shuffle), however many came in."""
        if len(accumulator) < 2:
            return accumulator
        return pa.Table.from_batches(accumulator, schema=TAGGED_SCHEMA).combine_chunks().to_batches()

    def merge_accumulators(self, accumulators):
        return [batch for accumulator in accumulators for batch in accumulator]

    def extract_output(self, accumulator):
        return one_row_per_key(pa.Table.from_batches(accumulator, schema=TAGGED_SCHEMA))


def dead_letter_json(row: dict) -> str:
    return json.dumps({name: row[name] for name in ("input_key", "input_uri", "reason", "detail")}, sort_keys=True)


def manifest_shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode()) % shards


def manifest_file(plan: JobPlan, index: int) -> str:
    return plan.out(MANIFEST_DIR, f"manifest-{index:05d}-of-{plan.settings.manifest_shards:05d}.parquet")


def dead_letter_file(plan: JobPlan, index: int) -> str:
    return plan.out(DEAD_LETTER_DIR, f"dead_letter-{index:05d}-of-{plan.settings.manifest_shards:05d}.jsonl")


class WriteManifestShard(beam.DoFn):
    """(shard index, (rows as one Arrow table sorted by input key, its unconsolidated count)) ->
    manifest/manifest-<i>-of-<N>.parquet and its rejected rows in
    dead_letter/dead_letter-<i>-of-<N>.jsonl, each replaced atomically; emits the manifest path.
    Nothing is written when no row anywhere is new (`unconsolidated` == 0) and the file exists: a
    re-run over a complete output writes nothing."""

    def __init__(self, plan: JobPlan):
        self._plan = plan

    def process(self, element, unconsolidated: int):
        index, (rows, _) = element
        path = manifest_file(self._plan, index)
        if not unconsolidated and FileSystems.exists(path):
            return
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        replace_atomically(path, sink.getvalue().to_pybytes(), self._plan.out(TMP_DIR))
        rejected = rows.filter(pc.equal(rows["status"], REJECTED)).to_pylist()
        dead = "".join(dead_letter_json(row) + "\n" for row in rejected)
        replace_atomically(dead_letter_file(self._plan, index), dead.encode(), self._plan.out(TMP_DIR))
        yield path


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
