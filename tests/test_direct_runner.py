"""pipelines/direct_runner.py: with the bulk job's DirectRunner settings (multi_threading, a worker
per core), a stage that writes its outputs for several seconds keeps every element whole.

Without flush_whole_elements() this test failed in every run on the 2-core build machine
(2026-12-07, Beam 2.59: a decode error in the GroupByKey, or keys whose "listed" side was lost),
as the bulk job over 200,000 inputs did; with it, no run failed."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.testing.util import assert_that, equal_to

from pipelines.sanitize.job import beam_options

KEYS = 200_000  # about 8 MB per branch: the stages write for more than the 1 s flush period


def _not_one_of_each(element) -> bool:
    _, tags = element
    return sorted(tags) != ["listed", "row"]


def test_a_large_flatten_and_group_by_key_keeps_every_element_under_the_jobs_direct_runner():
    options, args = beam_options([])
    assert "--direct_running_mode=multi_threading" in args  # the job's local default, where the bug lives
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS <= 0  # size-based flushing only
    with beam.Pipeline(options=options) as pipeline:
        listed = (pipeline
                  | "Listed" >> beam.Create([f"{index:07d}.jpg" for index in range(KEYS)])
                  | "TagListed" >> beam.Map(lambda key: (key, "listed")))
        rows = (pipeline
                | "Rows" >> beam.Create([f"{index:07d}.jpg" for index in range(KEYS)])
                | "TagRow" >> beam.Map(lambda key: (key, "row")))
        grouped = (listed, rows) | beam.Flatten() | beam.GroupByKey()
        keys = grouped | "Keys" >> beam.combiners.Count.Globally()
        wrong = (grouped
                 | "NotOneOfEach" >> beam.Filter(_not_one_of_each)
                 | "Wrong" >> beam.combiners.Count.Globally())
        assert_that(keys, equal_to([KEYS]), label="EveryKey")
        assert_that(wrong, equal_to([0]), label="EachKeyOnceFromEachSide")
