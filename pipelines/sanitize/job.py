"""The bulk job itself: plan it, claim its output, run the Beam graph, account for every input.

`run_job(settings)` is the library entry point (the CLI and the TFX BulkSanitizer component call
it): it resolves the model, plans the job (input pattern and kind, output layout), claims the
output (job.json pins settings and model, so a re-run completes the same job or is refused),
runs one Beam graph (SanitizeInputs, then ConsolidateManifest, which also removes what a killed
run left behind, and checks key by key that every listed input has exactly one manifest row).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from collections import Counter

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from threadpoolctl import threadpool_limits

from components.faces.imaging import COLOR_MODES, MASK_SHAPES, PASTE_MODES
from pipelines.config import Config
from pipelines.direct_runner import flush_whole_elements
from pipelines.sanitize.config import SanitizeJobConfig
from pipelines.sanitize.containers import output_shards_for
from pipelines.sanitize.faces import DETECTORS, HeapReleaser
from pipelines.sanitize.inputs import WILDCARDS, detect_input_kind, input_pattern
from pipelines.sanitize.layout import (
    COPIED_NO_FACE, DEAD_LETTER_DIR, IMAGES_DIR, JOB_FILE, MANIFEST_DIR, NAMESPACE, PROGRESS_DIR, RECORDS_DIR,
    REJECTED, SANITIZED, STATUSES, TMP_DIR, JobPlan, delete_matching, matching, write_atomically,
)
from pipelines.sanitize.manifest import (
    PART_PREFIX, STAGED_PREFIX, finished_outside_shards, progress_counts, read_manifest,
)
from pipelines.sanitize.model import model_facts, resolve_model
from pipelines.sanitize.transforms import ACCOUNTING_ERROR, ConsolidateManifest, SanitizeInputs

THIS_RUN_COUNTERS = (
    "images_read", "faces", "faces_sanitized", "sanitized", "copied_no_face", "rejected", "images_written",
    "images_already_present", "inputs_staged", "inputs_already_staged", "records_written", "records_already_present",
    "containers_written", "photos_flagged_small_faces")


def plan_job(settings: SanitizeJobConfig, model_dir: str | None = None) -> JobPlan:
    if not settings.input or not settings.output:
        raise SystemExit("error: --input and --output are required")
    if settings.records_per_shard < 1:
        raise SystemExit(f"error: --records-per-shard {settings.records_per_shard} must be at least 1")
    for flag, value, choices in (("--paste", settings.paste, PASTE_MODES), ("--mask", settings.mask, MASK_SHAPES),
                                 ("--color", settings.color, COLOR_MODES),
                                 ("--detector", settings.detector, DETECTORS)):
        if value not in choices:
            raise SystemExit(f"error: {flag} {value!r} is not one of {', '.join(choices)}")
    if not settings.min_face > 0 or not 0 <= settings.feather <= 0.5:
        raise SystemExit(f"error: --min-face {settings.min_face} must be positive and --feather {settings.feather} "
                         "between 0 and 0.5")
    if not settings.heap_mmap_threshold_mib >= 0:
        raise SystemExit(f"error: --heap-mmap-threshold-mib {settings.heap_mmap_threshold_mib} must be 0 (glibc's "
                         "adaptive threshold) or a positive size in MiB")
    pattern, base = input_pattern(settings.input)
    kind = detect_input_kind(pattern, settings.input_format)
    output = settings.output.rstrip("/")
    listed_below = any(char in pattern for char in WILDCARDS)
    if listed_below and base and (output == base or output.startswith(base.rstrip("/") + "/")):
        raise SystemExit(f"error: --output {output} is inside --input {settings.input}; its files would be read as "
                         "inputs. Choose an output folder outside the input.")
    path = model_dir or resolve_model(settings.model, Config().serving_dir)[0]
    model = model_facts(path)
    if settings.precision not in model.precisions:
        raise SystemExit(f"error: --precision {settings.precision}: the model {path} was exported in "
                         f"{', '.join(model.precisions)} only (TrainingConfig.serving_precisions); pick one of those "
                         "or export the model again")
    check_kept_fields(settings, model.suppressed)
    return JobPlan(dataclasses.replace(settings, output=output), model, kind, pattern, base)


# Names under which a suppressed CelebA attribute may travel in a user's records.
ATTRIBUTE_ALIASES = {"male": {"gender", "sex", "ismale", "female"}, "young": {"age", "isyoung", "old"},
                     # identity suppressed (de-identification): a field naming the person undoes it
                     "identity": {"id", "identityid", "person", "personid", "subject", "subjectid", "name",
                                  "fullname", "celebrity", "celebrityid"}}


def _normalized(name: str) -> str:
    name = re.sub(r"[^a-z0-9]", "", name.lower())
    return name[len("attr"):] if name.startswith("attr") and len(name) > len("attr") else name


def check_kept_fields(settings: SanitizeJobConfig, suppressed) -> None:
    """--keep-fields may not carry an attribute the model's policy hides (e.g. a Male or gender
    column next to the sanitized face), unless --force-keep-suppressed-fields says so."""
    if settings.force_keep_suppressed_fields:
        return
    for attribute in suppressed:
        names = {_normalized(attribute)} | ATTRIBUTE_ALIASES.get(_normalized(attribute), set())
        refused = [field for field in settings.keep_fields if _normalized(field) in names]
        if refused:
            raise SystemExit(
                f"error: --keep-fields {', '.join(refused)}: the model's privacy policy suppresses {attribute}, "
                "so a field carrying it would undo the sanitization. Leave it out, or pass "
                "--force-keep-suppressed-fields if you really mean to publish it beside the sanitized faces.")


def job_record(plan: JobPlan) -> dict:
    settings = plan.settings
    pinned = {name: getattr(settings, name) for name in SanitizeJobConfig.PINNED}
    pinned = {name: list(value) if isinstance(value, tuple) else value for name, value in pinned.items()}  # as JSON
    return {"format_version": 1, "settings": pinned, "input_kind": plan.input_kind,
            "model": {"version": plan.model.version, "sha256": plan.model.sha256,
                      "image_size": plan.model.image_size, "policy": json.loads(plan.model.policy)},
            "layout": {"output_kind": plan.output_kind, "output_shards": plan.output_shards}}


def claim_output(plan: JobPlan) -> JobPlan:
    """First run: fixes the output's layout and writes job.json. Later runs: the same settings and
    model, or a clear refusal. Returns the plan with the layout of this output."""
    path = plan.out(JOB_FILE)
    if FileSystems.exists(path):
        with FileSystems.open(path) as handle:
            recorded = json.loads(handle.read().decode())
        layout = recorded.get("layout", {})
        plan = dataclasses.replace(plan, output_shards=int(layout.get("output_shards", 0)))
        wanted = job_record(plan)
        if recorded != wanted:
            differences = [f"{name}: output has {recorded.get(group, {}).get(name)!r}, this run {value!r}"
                           for group in ("settings", "model") for name, value in wanted[group].items()
                           if recorded.get(group, {}).get(name) != value]
            raise SystemExit(
                f"error: {plan.settings.output} holds the output of a job with other settings or another model "
                f"({'; '.join(differences) or 'format'}). Re-run with the same settings and model to complete it, or "
                "choose a new --output.")
        return plan
    if plan.input_kind == "images" and plan.output_kind != "images":
        # Image inputs are hashed into shards; their number is fixed now, for every later run.
        count = len(matching(plan.pattern))
        plan = dataclasses.replace(plan, output_shards=output_shards_for(count, plan.settings.records_per_shard))
    write_atomically(path, (json.dumps(job_record(plan), indent=2, sort_keys=True) + "\n").encode(),
                     plan.out(TMP_DIR))
    return plan


def beam_options(args: list[str]):
    args = list(args)
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), "DirectRunner")
    if runner in ("DirectRunner", "direct") and not any(a.startswith("--direct_running_mode") for a in args):
        # One process whose worker threads share one model: TensorFlow and Pillow release the GIL;
        # about half the memory of a process per worker for about 4% less speed on 20,000 faces
        # (measured: README, "Bulk sanitization").
        args += ["--direct_running_mode=multi_threading", f"--direct_num_workers={os.cpu_count() or 1}"]
    flush_whole_elements()  # multi_threading's data channel would split elements (direct_runner.py says why)
    return PipelineOptions(args), args


def local_threads_per_worker(args: list[str]) -> int:
    """cores // workers for DirectRunner multi-processing on this machine; 0 (TF default) otherwise."""
    values = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    if values.get("runner", "DirectRunner") not in ("DirectRunner", "direct"):
        return 0
    if values.get("direct_running_mode") != "multi_processing":
        return 0
    workers = int(values.get("direct_num_workers", "0") or 0) or (os.cpu_count() or 1)
    return max(1, (os.cpu_count() or 1) // workers)


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
            if count < last_count:
                # The manifest is being consolidated: its clean-up removes the _progress/ hints, so
                # the count would fall; the work is done, say so once and stop counting.
                print(f"progress: {last_count} inputs finished this run; writing the manifest", flush=True)
                return
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


def _counters(result) -> Counter:
    totals = Counter()
    try:
        for counter in result.metrics().query(MetricsFilter())["counters"]:
            if counter.key.metric.namespace.startswith(NAMESPACE):
                value = counter.committed if counter.committed is not None else counter.attempted
                totals[counter.key.metric.name] += value or 0
    except Exception as error:  # some runners do not report metrics
        print(f"note: the runner reported no metrics ({error})")
    return totals


def build_graph(pipeline: beam.Pipeline, plan: JobPlan, manifest_files: list[str], part_files: list[str]):
    """The job's one Beam graph: sanitize what earlier runs did not finish, then consolidate the
    manifest and clean up (the same graph on every runner, a flex template included)."""
    outputs = pipeline | "SanitizeInputs" >> SanitizeInputs(plan, sorted(manifest_files + part_files))
    return outputs | "ConsolidateManifest" >> ConsolidateManifest(plan, manifest_files, part_files)


def run_job(settings: SanitizeJobConfig, model_dir: str | None = None, announce: bool = True,
            test_pipeline: beam.Pipeline | None = None) -> dict:
    """Runs the job (one Beam pipeline: sanitize, consolidate the manifest, clean up); returns the
    summary it prints.

    `test_pipeline` (e.g. Beam's TestPipeline) receives the graph instead of a pipeline built from
    settings.beam_pipeline_args."""
    if model_dir is None:
        model_dir, how = resolve_model(settings.model, Config().serving_dir)
    else:
        how = "given"
    options, args = beam_options(settings.beam_pipeline_args)
    if not settings.tf_threads:
        settings = dataclasses.replace(settings, tf_threads=local_threads_per_worker(args))
    plan = plan_job(settings, model_dir)
    if announce:
        print(f"model: {plan.model.path} (version {plan.model.version}, sha256 {plan.model.sha256[:16]}…, "
              f"{plan.model.image_size}x{plan.model.image_size}; {how})")
        print(f"input: {plan.pattern} ({plan.input_kind}, faces: {settings.faces}); output: {plan.settings.output}")
    plan = claim_output(plan)
    # A local runner's workers are threads of this process: fix the mmap threshold before the model
    # loads (each remote worker process fixes its own in ComposeAndWrite.setup).
    HeapReleaser.fix_mmap_threshold_once(settings.heap_mmap_threshold_mib)
    manifest_files = matching(plan.out(MANIFEST_DIR, "*.parquet"))
    part_files = matching(plan.out(PROGRESS_DIR, PART_PREFIX + "*.parquet"))  # left by a killed run
    delete_matching(plan.out(PROGRESS_DIR, STAGED_PREFIX + "*"))  # progress hints of an earlier run
    started = time.monotonic()
    pipeline = test_pipeline if test_pipeline is not None else beam.Pipeline(options=options)
    build_graph(pipeline, plan, manifest_files, part_files)
    try:
        # numpy's BLAS at one thread while the job runs (faces.one_blas_thread says why): set here for a
        # local runner, whose workers are threads of this process (threadpoolctl lets one thread
        # control OpenBLAS), and given back afterwards; remote workers set it themselves.
        with ProgressLine(plan, settings.progress_every_s, finished_outside_shards(part_files)), \
                threadpool_limits(limits=1, user_api="blas"):
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as error:  # the in-graph accounting check (transforms.check_accounting) failed
        found = re.search(f"{ACCOUNTING_ERROR}: [^\n]*", str(error))
        if found is None:
            raise
        raise SystemExit(f"error: {found.group(0)}") from None
    elapsed = time.monotonic() - started
    counters = _counters(result)

    summary = summarize(plan, counters, elapsed)
    if announce:
        print_summary(plan, summary)
    return summary


def summarize(plan: JobPlan, counters: Counter, elapsed: float) -> dict:
    """The job's outcome: the whole manifest by status and reason, and this run's counters."""
    table = read_manifest(plan.settings.output, ["status", "reason"])
    statuses = table.column("status").to_pylist()
    reasons = Counter(reason for status, reason in zip(statuses, table.column("reason").to_pylist())
                      if status == REJECTED)
    by_status = Counter(statuses)
    return {
        "output": plan.settings.output, "model_version": plan.model.version, "model_sha256": plan.model.sha256,
        "privacy_policy": json.loads(plan.model.policy), "inputs": table.num_rows, **{status: by_status.get(status, 0) for status in STATUSES},
        "rejected_by_reason": dict(sorted(reasons.items())), "inputs_listed_this_run": counters.get("inputs_listed"),
        "already_done": counters.get("inputs_already_done", 0),
        "this_run": {name: counters.get(name, 0) for name in THIS_RUN_COUNTERS},
        "seconds": round(elapsed, 1),
    }


def print_summary(plan: JobPlan, summary: dict) -> None:
    this_run, elapsed = summary["this_run"], summary["seconds"]
    processed = this_run["sanitized"] + this_run["copied_no_face"] + this_run["rejected"]
    reasons = summary["rejected_by_reason"]
    print(f"inputs {summary['inputs']} = sanitized {summary[SANITIZED]} + copied without a face "
          f"{summary[COPIED_NO_FACE]} + rejected {summary[REJECTED]}"
          + (f" (rejected by reason: {', '.join(f'{k} {v}' for k, v in reasons.items())})" if reasons else ""))
    staged_before = this_run["inputs_already_staged"]
    written = (f"{this_run['images_written']} images written" if plan.output_kind == "images" else
               f"{this_run['records_written']} records written in {this_run['containers_written']} "
               f"{plan.output_kind} shards")
    print(f"this run: {processed} inputs processed in {elapsed:.1f} s ({processed / max(elapsed, 1e-9):.1f}/s), "
          f"{summary['already_done']} already done by earlier runs"
          + (f" ({staged_before} more sanitized by an earlier run and kept in _staging/)" if staged_before else "")
          + f", {this_run['faces_sanitized']} faces sanitized, {written}")
    if this_run["photos_flagged_small_faces"]:
        print(f"FLAGGED: in {this_run['photos_flagged_small_faces']} photos the detector could not search for faces "
              f"down to --min-face {plan.settings.min_face:g} px between the eyes; their manifest rows say so "
              f"(the default detector, centerface, searches large photos in tiles down to it)")
    written_to = IMAGES_DIR if plan.output_kind == "images" else RECORDS_DIR
    print(f"sanitized: {plan.out(written_to)}  manifest: {plan.out(MANIFEST_DIR)}  "
          f"dead letter: {plan.out(DEAD_LETTER_DIR)}")
