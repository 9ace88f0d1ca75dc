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


def test_cpu_per_input_while_sanitizing_is_taken_between_the_first_and_second_to_last_progress_lines():
    import os

    from benchmarks.bulk_throughput import cpu_while_sanitizing

    lines = [(0.5, "model: /m"), (10.0, "progress: 100 inputs finished this run, 10.0/s now, 10.0/s since start"),
             (15.0, "progress: 400 inputs finished this run, 60.0/s now, 26.7/s since start"),
             (20.0, "progress: 700 inputs finished this run, 60.0/s now, 35.0/s since start"),
             (22.0, "progress: 760 inputs finished this run, 30.0/s now, 34.5/s since start"),
             (23.0, "progress: 760 inputs finished this run; writing the manifest")]
    # CPU seconds of the tree every 0.2 s would do; a few samples suffice: nearest to 10.0 and 20.0
    cpu = [(0.2, 0.1), (9.9, 12.0), (10.3, 12.5), (19.8, 30.0), (20.4, 31.0), (22.0, 34.0)]
    got = cpu_while_sanitizing(lines, cpu)
    # window 10.0 -> 20.0 s: 600 inputs, CPU 12.0 -> 30.0 s (the samples at 9.9 and 19.8 are nearest)
    assert got["inputs"] == 600 and got["seconds"] == 10.0
    assert abs(got["cpu_ms_per_input"] - 1000 * 18.0 / 600) < 1e-9
    assert abs(got["busy_cores"] - 1.8) < 1e-9
    assert got["cores"] == os.cpu_count()
    assert cpu_while_sanitizing(lines[:3], cpu) is None  # too short a run
    assert cpu_while_sanitizing(lines, []) is None


def test_the_ratio_to_raw_splits_into_a_cpu_share_and_a_busy_share():
    from benchmarks.bulk_throughput import cpu_split

    # raw: 100 images/s at 19 ms of CPU each = 1.9 busy cores; the job: 25 ms per image on 1.8 cores = 72 images/s
    split = cpu_split({"cpu_ms_per_input": 25.0, "busy_cores": 1.8, "cores": 2}, 100.0, 19.0)
    assert abs(split["rest_cpu_ms"] - 6.0) < 1e-9
    assert abs(split["cpu_share"] - 0.76) < 1e-9 and abs(split["busy_share"] - 1.8 / 1.9) < 1e-9
    job_rate = 1000 * 1.8 / 25.0
    assert abs(split["cpu_share"] * split["busy_share"] - job_rate / 100.0) < 1e-9
    assert cpu_split(None, 100.0, 19.0) is None
