"""benchmarks/bulk_throughput.py: the job's rate while sanitizing, read off its progress lines."""

from benchmarks.bulk_throughput import while_sanitizing

JOB_OUTPUT = """model: /m (version 1, sha256 ab…, 224x224; --model)
progress: 640 inputs finished this run, 64.0/s now, 64.0/s since start
progress: 1728 inputs finished this run, 108.8/s now, 86.4/s since start
progress: 1696 inputs finished this run (12 of them written into shards so far), 102.0/s now, 91.7/s since start
progress: 3776 inputs finished this run, 50.0/s now, 94.4/s since start
progress: 3776 inputs finished this run; writing the manifest
this run: 4000 inputs processed in 42.9 s (93.2/s), 0 already done by earlier runs
"""


def test_the_rate_while_sanitizing_leaves_out_the_first_and_last_progress_lines():
    assert while_sanitizing(JOB_OUTPUT) == (108.8 + 102.0) / 2


def test_a_run_too_short_for_three_progress_lines_has_no_such_rate():
    lines = JOB_OUTPUT.splitlines()
    assert while_sanitizing("\n".join(lines[:3])) is None
    assert while_sanitizing("") is None
