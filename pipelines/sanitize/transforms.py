"""The bulk job's composite PTransforms, applied one after the other in ONE Beam graph:
SanitizeInputs (list, skip what is done, prepare, run the model, compose and write, record) and
ConsolidateManifest (earlier manifest + unconsolidated parts + this run's rows -> manifest, then
the clean-up).

One element per input flows: list/read (inputs.py) -> skip what an earlier run finished -> decode,
find and align faces (faces.py) -> RunInference with the keyed sanitizer handler (model.py) ->
warp the sanitized faces back, re-encode (no metadata survives), write atomically (faces.py) or
stage for a container shard (containers.py) -> one manifest row (manifest.py). Every input that
cannot be sanitized becomes a row with status "rejected" and a reason instead; nothing is dropped.
"""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from trainer.export import signature_name
from pipelines.sanitize.containers import WriteShards
from pipelines.sanitize.faces import ComposeAndWrite, PrepareFaces
from pipelines.sanitize.inputs import ListInputs
from pipelines.sanitize.layout import (
    MANIFEST_DIR, NAMESPACE, PROGRESS_DIR, STAGING_DIR, TMP_DIR, JobPlan, delete_matching, matching,
)
from pipelines.sanitize.manifest import (
    BatchRows, MarkStaged, RecordProgress, ShardTable, WriteManifestShard, tag_by_shard,
)
from pipelines.sanitize.model import SanitizerModelHandler


def _count(name):
    counter = Metrics.counter(NAMESPACE, name)

    def count(element):
        counter.inc()
        return element

    return count


def _skip_done(element):
    """(key, source) of a listed input that no earlier run finished; a row of an input that is no
    longer listed is kept in the manifest and needs nothing."""
    key, grouped = element
    sources = list(grouped["input"])
    done = bool(list(grouped["done"]))
    if sources and done:
        Metrics.counter(NAMESPACE, "inputs_already_done").inc()
    return [(key, sources[0])] if sources and not done else []


class SanitizeInputs(beam.PTransform):
    """Root transform: sanitizes every listed input that `done_files` (manifest shards and
    progress parts of earlier runs) do not already hold; rows go to _progress/ as they finish.

    Returns {"rows": this run's manifest rows as Arrow record batches, "progress_files": the
    _progress/ files written, "listed": the key of every listed input}."""

    def __init__(self, plan: JobPlan, done_files: Sequence[str]):
        super().__init__()
        self._plan = plan
        self._done_files = list(done_files)

    def expand(self, pipeline):
        plan = self._plan
        inputs = (pipeline
                  | "ListInputs" >> ListInputs(plan)
                  | "CountInputs" >> beam.Map(_count("inputs_listed")))
        listed = inputs | "ListedKeys" >> beam.Keys()
        if self._done_files:
            done = (pipeline
                    | "DoneFiles" >> beam.Create(self._done_files)
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
        handler = KeyedModelHandler(SanitizerModelHandler(
            plan.model.path, plan.settings.batch_size, signature_name("sanitize_only", plan.settings.precision),
            tf_threads=plan.settings.tf_threads))
        composed = (prepared.faces
                    | "Sanitize" >> RunInference(handler)
                    | "ComposeAndWrite" >> beam.ParDo(ComposeAndWrite(plan)).with_outputs(
                        ComposeAndWrite.RECORDS, main="rows"))
        # Recorded on each branch, not after a Flatten: a runner may materialize a Flatten's inputs
        # before its consumer runs, and rows must reach _progress/ while the work goes on.
        rows = [composed.rows, prepared[PrepareFaces.ROWS]]
        progress = [composed.rows | "RecordSanitized" >> beam.ParDo(RecordProgress(plan)),
                    prepared[PrepareFaces.ROWS] | "RecordOthers" >> beam.ParDo(RecordProgress(plan))]
        if plan.output_kind != "images":
            # Sanitized inputs are staged (one file each, under _staging/) and only references go
            # through the shuffle that groups a shard, so its memory does not hold the images and a
            # killed run keeps the inputs it sanitized.
            progress += [composed[ComposeAndWrite.RECORDS] | "MarkStaged" >> beam.ParDo(MarkStaged(plan)),
                         prepared[PrepareFaces.RECORDS] | "MarkOthersStaged" >> beam.ParDo(MarkStaged(plan))]
            shard_rows = ((composed[ComposeAndWrite.RECORDS], prepared[PrepareFaces.RECORDS])
                          | "AllRecords" >> beam.Flatten()
                          | "GroupByShard" >> beam.GroupByKey()
                          | "WriteShards" >> beam.ParDo(WriteShards(plan)))
            rows.append(shard_rows)
            progress.append(shard_rows | "RecordShards" >> beam.ParDo(RecordProgress(plan, in_shards=True)))
        # Batched where they are made, before the Flatten (BatchRows says why).
        batches = [branch | f"BatchRows{index}" >> beam.ParDo(BatchRows()) for index, branch in enumerate(rows)]
        return {"rows": tuple(batches) | "RowsOfThisRun" >> beam.Flatten(),
                "progress_files": tuple(progress) | "ProgressFiles" >> beam.Flatten(),
                "listed": listed}


class ConsolidateManifest(beam.PTransform):
    """{"rows", "progress_files"} of SanitizeInputs -> manifest/ and dead_letter/ with one row per
    input key, from the manifest as it was, the progress parts earlier runs left unconsolidated
    and this run's rows; then the clean-up, once every manifest shard and progress file is written.
    Then the accounting check (check_accounting): the job fails if any listed input has no row."""

    def __init__(self, plan: JobPlan, manifest_files: Sequence[str], part_files: Sequence[str]):
        super().__init__()
        self._plan = plan
        self._manifest_files = list(manifest_files)
        self._part_files = list(part_files)

    def expand(self, outputs):
        plan, pipeline = self._plan, outputs["rows"].pipeline
        shards = plan.settings.manifest_shards
        recorded = (pipeline
                    | "ManifestFiles" >> beam.Create(self._manifest_files)
                    | "ReadManifest" >> beam.io.ReadAllFromParquetBatched()
                    | "TagRecorded" >> beam.FlatMap(tag_by_shard, False, shards))
        left = (pipeline
                | "EarlierParts" >> beam.Create(self._part_files)
                | "ReadEarlierParts" >> beam.io.ReadAllFromParquetBatched()
                | "TagEarlierParts" >> beam.FlatMap(tag_by_shard, True, shards))
        this_run = outputs["rows"] | "TagThisRun" >> beam.FlatMap(tag_by_shard, True, shards)
        every_shard = pipeline | "EveryShard" >> beam.Create([(index, None) for index in range(shards)])
        # One Arrow table per manifest shard, one row per input key: every row travels in Arrow
        # record batches, read as such or batched where it is made (ShardTable).
        tables = ((recorded, left, this_run, every_shard)
                  | "AllRows" >> beam.Flatten()
                  | "OneRowPerInput" >> beam.CombinePerKey(ShardTable()))
        unconsolidated = (tables
                          | "Unconsolidated" >> beam.Map(lambda shard: shard[1][1])
                          | "CountUnconsolidated" >> beam.CombineGlobally(sum))
        written = tables | "WriteManifest" >> beam.ParDo(WriteManifestShard(plan),
                                                         unconsolidated=beam.pvalue.AsSingleton(unconsolidated))
        cleaned = (written
                   | "ManifestWritten" >> beam.combiners.Count.Globally()
                   | "CleanUp" >> beam.Map(_clean_up, plan=plan,
                                           progress_files=beam.pvalue.AsList(outputs["progress_files"])))
        # Every input accounted for, key by key, against the manifest as written (read back once the
        # writing and clean-up are done): each listed input has one row and each row a listed input.
        manifest_keys = (cleaned
                         | "ManifestFilesWritten" >> beam.FlatMap(
                             lambda _, pattern: matching(pattern), pattern=plan.out(MANIFEST_DIR, "*.parquet"))
                         | "ReadWrittenManifest" >> beam.io.ReadAllFromParquet(columns=["input_key"])
                         | "KeyWritten" >> beam.Map(lambda row: (row["input_key"], True)))
        listed = outputs["listed"] | "KeyListed" >> beam.Map(lambda key: (key, True))
        return ({"listed": listed, "row": manifest_keys}
                | "ListedAgainstManifest" >> beam.CoGroupByKey()
                | "Discrepancies" >> beam.FlatMap(_discrepancy)
                | "CollectDiscrepancies" >> beam.combiners.ToList()
                | "CheckAccounting" >> beam.Map(check_accounting, plan=plan))


ACCOUNTING_ERROR = "facesan accounting"  # prefix of the error a mismatch raises (job.py reports it)


def _discrepancy(element):
    key, grouped = element
    listed, rows = len(list(grouped["listed"])), len(list(grouped["row"]))
    if listed and not rows:
        yield "missing", key
    elif rows and not listed:
        yield "extra", key
    elif rows > 1:
        yield "duplicated", key


def check_accounting(discrepancies, plan: JobPlan) -> int:
    """Raises when a listed input has no manifest row ("missing"), a row has no listed input
    ("extra": removed from the input since an earlier run) or an input has several rows, naming up
    to 20 keys of each."""
    if not discrepancies:
        return 0
    found = {kind: sorted(key for k, key in discrepancies if k == kind) for kind in ("missing", "extra", "duplicated")}

    def keys(kind):
        return ", ".join(found[kind][:20]) or "-"

    raise RuntimeError(
        f"{ACCOUNTING_ERROR}: {len(found['missing'])} listed inputs have no manifest row ({keys('missing')}), "
        f"{len(found['extra'])} manifest rows have no listed input ({keys('extra')}) and {len(found['duplicated'])} "
        f"inputs have several rows ({keys('duplicated')}) in {plan.settings.output}; re-run the same command to "
        "complete the output (inputs added or removed since an earlier run also cause this).")


def _clean_up(_, plan: JobPlan, progress_files) -> int:
    """After the manifest holds every row: the progress parts and markers (this run's, waited for
    through `progress_files`, and any earlier run left), staged inputs (all in shards now, unless
    they vanished from the input since) and temporary files of killed runs."""
    for pattern in (plan.out(PROGRESS_DIR, "*"), plan.out(STAGING_DIR, "**"), plan.out(TMP_DIR, "*")):
        delete_matching(pattern)
    return len(progress_files)
