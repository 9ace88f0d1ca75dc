"""The bulk job's composite PTransforms: SanitizeInputs (list, skip what is done, prepare, run
the model, compose and write, record) and ConsolidateManifest (progress parts -> manifest).

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

from pipelines.sanitize.containers import WriteShards
from pipelines.sanitize.faces import ComposeAndWrite, PrepareFaces
from pipelines.sanitize.inputs import ListInputs
from pipelines.sanitize.layout import DEAD_LETTER_DIR, MANIFEST_DIR, NAMESPACE, REJECTED, JobPlan
from pipelines.sanitize.manifest import (
    MANIFEST_SCHEMA, MarkStaged, RecordProgress, dead_letter_json, pick_one_row,
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
    progress parts of earlier runs) do not already hold; rows go to _progress/ as they finish."""

    def __init__(self, plan: JobPlan, done_files: Sequence[str]):
        super().__init__()
        self._plan = plan
        self._done_files = list(done_files)

    def expand(self, pipeline):
        plan = self._plan
        inputs = (pipeline
                  | "ListInputs" >> ListInputs(plan)
                  | "CountInputs" >> beam.Map(_count("inputs_listed")))
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
                 | "RecordShards" >> beam.ParDo(RecordProgress(plan, in_shards=True)))
        return beam.pvalue.PDone(pipeline.pipeline)  # everything is written by the DoFns


class ConsolidateManifest(beam.PTransform):
    """Root transform: manifest/ and dead_letter/ rewritten from `row_files` (the old manifest plus
    the progress parts), one row per input key."""

    def __init__(self, plan: JobPlan, row_files: Sequence[str]):
        super().__init__()
        self._plan = plan
        self._row_files = list(row_files)

    def expand(self, pipeline):
        plan = self._plan
        rows = (pipeline
                | "RowFiles" >> beam.Create(self._row_files)
                | "ReadRows" >> beam.io.ReadAllFromParquet()
                | "KeyRows" >> beam.Map(lambda row: (row["input_key"], row))
                | "GroupByInput" >> beam.GroupByKey()
                | "OneRowPerInput" >> beam.Map(pick_one_row))
        _ = rows | "WriteManifest" >> beam.io.WriteToParquet(
            plan.out(MANIFEST_DIR, "manifest"), MANIFEST_SCHEMA, file_name_suffix=".parquet",
            num_shards=plan.settings.manifest_shards)
        return (rows
                | "Rejected" >> beam.Filter(lambda row: row["status"] == REJECTED)
                | "DeadLetterJson" >> beam.Map(dead_letter_json)
                | "WriteDeadLetter" >> beam.io.WriteToText(plan.out(DEAD_LETTER_DIR, "dead_letter"),
                                                           file_name_suffix=".jsonl", num_shards=1))
