"""Bulk sanitization: run a pushed sanitizer over a face database with Beam, losing nothing.

    python -m pipelines.sanitize --input photos/ --output sanitized/ [--faces wild]
    python -m pipelines.sanitize --model gs://b/serving_model/1732 --input 'gs://b/db/**.jpg' \\
        --output gs://b/db_sanitized --runner DataflowRunner --project P --region R \\
        --temp_location gs://b/tmp --sdk_container_image REGION-docker.pkg.dev/P/facesan/pipeline:TAG

Without --model the newest model that the local training pipeline pushed (only blessed models are
pushed) under Config().serving_dir is used, and the job says which. Arguments this parser does
not know are Beam pipeline options. Every input ends up in the manifest as sanitized, copied
(no face) or rejected with a reason; a re-run over the same --output completes what is missing and
rewrites nothing that is done. See components/bulk_sanitize.py for the output layout.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import posixpath
import sys
import threading
import time
from collections import Counter

from pipelines.config import Config, SanitizeJobConfig

BEAM_HELP = """Beam options (passed through; the most used):
  --runner DirectRunner|DataflowRunner|...   where the job runs (default DirectRunner)
  --direct_running_mode multi_threading|multi_processing --direct_num_workers N
                         local parallelism. Default with DirectRunner: multi_threading with N = CPU
                         cores (one process, one model shared by the worker threads, TensorFlow on
                         every core: measured fastest on 2 cores, see README); multi_processing
                         runs N worker processes with a model each and cores/N TensorFlow threads
  Dataflow: --project --region --temp_location gs://... --machine_type --max_num_workers, and the
  worker software: --sdk_container_image=<the image built from infra/Dockerfile> (the locked
  environment with the faces extra, i.e. dlib and its models, and this project at /facesan).
  The model is read by the workers from --model, so give a gs:// path on Dataflow.
  Any portable runner's job service: --runner PortableRunner --job_endpoint HOST:PORT
  --environment_type EXTERNAL --environment_config HOST:PORT (an SDK worker pool:
  python -m apache_beam.runners.worker.worker_pool_main --service_port=PORT) or DOCKER with
  --environment_config=<the image from infra/Dockerfile>.
"""


def build_parser() -> argparse.ArgumentParser:
    d = SanitizeJobConfig()
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.sanitize",
        description="Sanitize every face of a face database with a pushed SAN model (Beam job). Each input is "
                    "sanitized, copied (no face) or rejected with a reason, all listed in a Parquet manifest.",
        epilog=BEAM_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True,
                        help="a folder (every file below it), a glob ('db/**.jpg', 'gs://b/db/*.png'), TFRecord "
                             "file(s) of tf.Example, or Parquet file(s); local or gs://")
    parser.add_argument("--output", required=True,
                        help="folder or gs:// prefix: images/ (image files, the input's format and relative layout) "
                             "or records/ (TFRecord/Parquet shards), manifest/*.parquet, dead_letter/*.jsonl, "
                             "job.json. Re-running over it completes it")
    parser.add_argument("--model", default=None,
                        help="pushed sanitizer SavedModel dir (or a folder of versioned ones: the newest is used), "
                             "local or gs://. Default: the newest model pushed by the local pipeline under "
                             f"{Config().serving_dir}")
    parser.add_argument("--runner", default="DirectRunner", help="Beam runner (see below)")
    parser.add_argument("--input-format", choices=("auto", "images", "tfrecord", "parquet"), default=d.input_format,
                        help="auto: by file name (.parquet, .tfrecord/.gz, else images)")
    parser.add_argument("--output-format", choices=("same", "images", "tfrecord", "parquet"), default=d.output_format,
                        help="same: image inputs become image files (JPEG/PNG as the input, same relative paths), "
                             "TFRecord inputs TFRecord shards and Parquet inputs Parquet shards, with the input "
                             "records' other features/columns passed through; images|tfrecord|parquet: that, whatever "
                             "the input. Records carry the sanitized image (--image-field) and facesan_input_key, "
                             "facesan_status, facesan_faces, facesan_format, facesan_width, facesan_height "
                             "(default %(default)s)")
    parser.add_argument("--records-per-shard", type=int, default=d.records_per_shard,
                        help="TFRecord/Parquet output: records per output shard; record inputs keep one series of "
                             "shards per input file. A shard is assembled in one worker's memory, so keep R x image "
                             "size to a few hundred MB (e.g. 100 for multi-megapixel photos) (default %(default)s)")
    parser.add_argument("--image-field", default=d.image_field,
                        help="tf.Example bytes feature / Parquet column with the encoded image (default %(default)s)")
    parser.add_argument("--faces", choices=("aligned", "wild"), default=d.faces,
                        help="aligned: each image is one eye-aligned face crop (CelebA style); wild: photos, faces "
                             "found with dlib's HOG detector and 5-point landmarks, every face sanitized "
                             "(default %(default)s)")
    parser.add_argument("--aligned-eyes", type=float, nargs=4, default=list(d.aligned_eyes),
                        metavar=("LX", "LY", "RX", "RY"),
                        help="aligned mode: eye centres as fractions of the image width/height (default CelebA's "
                             "aligned crops: %(default)s; the TFX pipeline's examples: 0.35 0.40 0.65 0.40)")
    parser.add_argument("--no-face", choices=("copy", "reject"), default=d.no_face,
                        help="wild mode, a photo without a detected face: copy it (re-encoded, metadata removed) "
                             "or reject it to the dead letter (default %(default)s)")
    parser.add_argument("--color", choices=("gray", "keep-chroma"), default=d.color,
                        help="the SAN outputs gray faces. gray: the face region becomes gray (original colour, which "
                             "can carry gender cues, is dropped); keep-chroma: only the luminance is replaced "
                             "(default %(default)s)")
    parser.add_argument("--feather", type=float, default=d.feather,
                        help="seam blend width as a fraction of the aligned face side (default %(default)s)")
    parser.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality, help="(default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels,
                        help="reject images whose declared size exceeds this many pixels (default %(default)s)")
    parser.add_argument("--min-side", type=int, default=d.min_side,
                        help="reject images with a side shorter than this (default %(default)s)")
    parser.add_argument("--detect-upsample", type=int, default=d.detect_upsample,
                        help="dlib detector upsampling; 1 finds faces from about 40 px (default %(default)s)")
    parser.add_argument("--detect-max-side", type=int, default=d.detect_max_side,
                        help="larger photos are searched for faces at this size (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="at most this many images per model call (default %(default)s)")
    parser.add_argument("--tf-threads", type=int, default=None,
                        help="TensorFlow threads per worker process (default: cores / workers with the local "
                             "DirectRunner, TensorFlow's own choice elsewhere)")
    parser.add_argument("--manifest-shards", type=int, default=d.manifest_shards,
                        help="number of manifest Parquet files (default %(default)s)")
    parser.add_argument("--progress-every", type=float, default=d.progress_every_s,
                        help="seconds between progress lines (default %(default)s)")
    return parser


def hyphenate_known_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--input_format=x` -> `--input-format=x` for this job's own flags.

    The Dataflow flex-template launcher passes its parameters (infra/dataflow/sanitize_metadata.json)
    as `--name=value` with underscore names; Beam's own options (also underscores) stay as they are.
    """
    known = {option for action in parser._actions for option in action.option_strings}
    rewritten = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        hyphenated = flag.replace("_", "-")
        rewritten.append(hyphenated + sep + value if flag.startswith("--") and flag not in known
                         and hyphenated in known else arg)
    return rewritten


def config_from_args(argv=None) -> SanitizeJobConfig:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, beam_args = parser.parse_known_args(hyphenate_known_flags(parser, argv))
    return SanitizeJobConfig(
        input=args.input, output=args.output.rstrip("/"), model=args.model, input_format=args.input_format,
        image_field=args.image_field, faces=args.faces, aligned_eyes=tuple(args.aligned_eyes), no_face=args.no_face,
        color=args.color, feather=args.feather, jpeg_quality=args.jpeg_quality, max_pixels=args.max_pixels,
        min_side=args.min_side, detect_upsample=args.detect_upsample, detect_max_side=args.detect_max_side,
        batch_size=args.batch_size, manifest_shards=args.manifest_shards, output_format=args.output_format,
        records_per_shard=args.records_per_shard, progress_every_s=args.progress_every,
        tf_threads=args.tf_threads or 0,
        beam_pipeline_args=[f"--runner={args.runner}", *beam_args])


# ---------------------------------------------------------------------------------------------
# Model

def _saved_models_under(folder: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    found = FileSystems.match([FileSystems.join(folder, "*", "saved_model.pb")])[0].metadata_list
    return [posixpath.dirname(meta.path) if "://" in meta.path else os.path.dirname(meta.path) for meta in found]


def _newest(model_dirs: list[str]) -> str:
    def version_key(path):
        name = os.path.basename(path.rstrip("/"))
        return (0, int(name), name) if name.isdigit() else (1, 0, name)

    return max(model_dirs, key=version_key)


def resolve_model(model: str | None) -> tuple[str, str]:
    """(model dir, how it was chosen)."""
    from apache_beam.io.filesystems import FileSystems

    if model is None:
        serving_dir = Config().serving_dir
        candidates = _saved_models_under(serving_dir)
        if not candidates:
            raise SystemExit(f"error: no --model given and no pushed model under {serving_dir}. Train and push one "
                             "(python -m pipelines.run --runner DirectRunner; only blessed models are pushed) or "
                             "pass --model <SavedModel dir>.")
        return _newest(candidates), f"newest blessed model pushed by the local pipeline under {serving_dir}"
    model = model.rstrip("/")
    if FileSystems.exists(FileSystems.join(model, "saved_model.pb")):
        return model, "--model"
    candidates = _saved_models_under(model)
    if candidates:
        return _newest(candidates), f"newest version under --model {model}"
    raise SystemExit(f"error: --model {model} is not a SavedModel (no saved_model.pb) nor a folder of versioned "
                     "SavedModels. Pass the Pusher's output (serving_model/<version>) or the folder holding them.")


def model_facts(model_dir: str):
    """Version (the pushed version folder's name), SHA-256 over all of its files, face size."""
    from apache_beam.io.filesystems import FileSystems

    from components.bulk_sanitize import ModelFacts
    from trainer.export import load_metadata

    files = sorted(meta.path for meta in FileSystems.match([FileSystems.join(model_dir, "**")])[0].metadata_list)
    digest = hashlib.sha256()
    for path in files:
        file_digest = hashlib.sha256()
        with FileSystems.open(path) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(f"{path[len(model_dir):].lstrip('/')}\0{file_digest.hexdigest()}\n".encode())
    try:
        image_size = int(load_metadata(model_dir)["image_size"])
    except Exception as error:
        raise SystemExit(f"error: cannot read the sanitizer metadata of {model_dir} ({error}); is it a model "
                         "exported by trainer.export (the pipeline's SanTrainer/Pusher)?") from None
    return ModelFacts(model_dir, os.path.basename(model_dir.rstrip("/")), digest.hexdigest(), image_size)


# ---------------------------------------------------------------------------------------------
# Job

def plan_job(settings: SanitizeJobConfig, model_dir: str | None = None):
    from components.bulk_sanitize import JobPlan, detect_input_kind, input_pattern

    if not settings.input or not settings.output:
        raise SystemExit("error: --input and --output are required")
    if settings.records_per_shard < 1:
        raise SystemExit(f"error: --records-per-shard {settings.records_per_shard} must be at least 1")
    pattern, base = input_pattern(settings.input)
    kind = detect_input_kind(pattern, settings.input_format)
    output = settings.output.rstrip("/")
    listed_below = any(char in pattern for char in "*?[")
    if listed_below and base and (output == base or output.startswith(base.rstrip("/") + "/")):
        raise SystemExit(f"error: --output {output} is inside --input {settings.input}; its files would be read as "
                         "inputs. Choose an output folder outside the input.")
    path = model_dir or resolve_model(settings.model)[0]
    return JobPlan(dataclasses.replace(settings, output=output), model_facts(path), kind, pattern, base)


def job_record(plan) -> dict:
    settings = plan.settings
    pinned = {name: getattr(settings, name) for name in SanitizeJobConfig.PINNED}
    pinned["aligned_eyes"] = list(pinned["aligned_eyes"])
    return {"format_version": 1, "settings": pinned, "input_kind": plan.input_kind,
            "model": {"version": plan.model.version, "sha256": plan.model.sha256,
                      "image_size": plan.model.image_size},
            "layout": {"output_kind": plan.output_kind, "output_shards": plan.output_shards}}


def claim_output(plan):
    """First run: fixes the output's layout and writes job.json. Later runs: the same settings and
    model, or a clear refusal. Returns the plan with the layout of this output."""
    from apache_beam.io.filesystems import FileSystems

    from components.bulk_sanitize import JOB_FILE, TMP_DIR, output_shards_for, write_atomically

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
        count = len(FileSystems.match([plan.pattern])[0].metadata_list)
        plan = dataclasses.replace(plan, output_shards=output_shards_for(count, plan.settings.records_per_shard))
    write_atomically(path, (json.dumps(job_record(plan), indent=2, sort_keys=True) + "\n").encode(),
                     plan.out(TMP_DIR))
    return plan


def beam_options(args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(args)
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), "DirectRunner")
    if runner in ("DirectRunner", "direct") and not any(a.startswith("--direct_running_mode") for a in args):
        # One process whose worker threads share one model: TensorFlow and Pillow release the GIL,
        # and no process start-up or inter-process transfer (measured: README, "Bulk sanitization").
        args += ["--direct_running_mode=multi_threading", f"--direct_num_workers={os.cpu_count() or 1}"]
    return PipelineOptions(args), args


def _local_threads_per_worker(args: list[str]) -> int:
    """cores // workers for DirectRunner multi-processing on this machine; 0 (TF default) otherwise."""
    values = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    if values.get("runner", "DirectRunner") not in ("DirectRunner", "direct"):
        return 0
    if values.get("direct_running_mode") != "multi_processing":
        return 0
    workers = int(values.get("direct_num_workers", "0") or 0) or (os.cpu_count() or 1)
    return max(1, (os.cpu_count() or 1) // workers)


class Progress:
    """Prints finished inputs and throughput while the pipeline runs (from the rows flushed to
    _progress/, so it works for any runner whose workers write where the driver can list)."""

    def __init__(self, plan, every_s: float, already: int):
        self._plan, self._every, self._already = plan, every_s, already
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start = time.monotonic()

    def counts(self) -> tuple[int, int]:
        """(inputs through this run, of them written into container shards)."""
        from apache_beam.io.filesystems import FileSystems

        from components.bulk_sanitize import PROGRESS_DIR, progress_file_count

        through = in_shards = 0
        for meta in FileSystems.match([self._plan.out(PROGRESS_DIR, "*-n*")])[0].metadata_list:
            name = posixpath.basename(meta.path)
            count = progress_file_count(name)
            if name.startswith("part-shard-"):
                in_shards += count  # these inputs were counted when they were staged
            elif name.startswith(("part-", "staged-")):
                through += count
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


def _counters(result) -> Counter:
    from apache_beam.metrics.metric import MetricsFilter

    from components.bulk_sanitize import NAMESPACE

    totals = Counter()
    try:
        for counter in result.metrics().query(MetricsFilter())["counters"]:
            if counter.key.metric.namespace.startswith(NAMESPACE):
                value = counter.committed if counter.committed is not None else counter.attempted
                totals[counter.key.metric.name] += value or 0
    except Exception as error:  # some runners do not report metrics
        print(f"note: the runner reported no metrics ({error})")
    return totals


def _delete_matching(pattern: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    paths = [meta.path for meta in FileSystems.match([pattern])[0].metadata_list]
    if paths:
        FileSystems.delete(paths)


def run_job(settings: SanitizeJobConfig, model_dir: str | None = None, announce: bool = True) -> dict:
    """Runs the job (sanitize, then consolidate the manifest); returns the summary it prints."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from components import bulk_sanitize as bulk

    if model_dir is None:
        model_dir, how = resolve_model(settings.model)
    else:
        how = "given"
    options, args = beam_options(settings.beam_pipeline_args)
    if not settings.tf_threads:
        settings = dataclasses.replace(settings, tf_threads=_local_threads_per_worker(args))
    plan = plan_job(settings, model_dir)
    if announce:
        print(f"model: {plan.model.path} (version {plan.model.version}, sha256 {plan.model.sha256[:16]}…, "
              f"{plan.model.image_size}x{plan.model.image_size}; {how})")
        print(f"input: {plan.pattern} ({plan.input_kind}, faces: {settings.faces}); output: {plan.settings.output}")
    plan = claim_output(plan)
    done_files = bulk.existing_row_files(plan)
    already_parts = sum(bulk.progress_file_count(p) for p in done_files
                        if posixpath.basename(posixpath.dirname(p)) == bulk.PROGRESS_DIR
                        and not posixpath.basename(p).startswith("part-shard-"))
    _delete_matching(plan.out(bulk.PROGRESS_DIR, "staged-*"))  # progress hints of an earlier run
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    bulk.build_sanitize(pipeline, plan, done_files)
    with Progress(plan, settings.progress_every_s, already_parts):
        result = pipeline.run()
        result.wait_until_finish()
    elapsed = time.monotonic() - started
    counters = _counters(result)

    parts = [meta.path for meta in FileSystems.match([plan.out(bulk.PROGRESS_DIR, "part-*.parquet")])[0].metadata_list]
    has_manifest = bool(FileSystems.match([plan.out(bulk.MANIFEST_DIR, "*.parquet")])[0].metadata_list)
    if parts or not has_manifest:
        consolidation = beam.Pipeline(options=options)
        bulk.build_consolidate(consolidation, plan, bulk.existing_row_files(plan))
        consolidation.run().wait_until_finish()
        FileSystems.delete(parts) if parts else None
    # Temporary files of a killed run (nothing refers to them), progress hints, and staged inputs
    # (every shard is written now, so there are none unless inputs vanished since they were staged).
    for pattern in (plan.out(bulk.TMP_DIR, "*"), plan.out(bulk.PROGRESS_DIR, "staged-*"),
                    plan.out(bulk.STAGING_DIR, "**")):
        _delete_matching(pattern)

    table = bulk.read_manifest(plan.settings.output, ["status", "reason"])
    statuses = Counter(table.column("status").to_pylist())
    reasons = Counter(r for s, r in zip(table.column("status").to_pylist(), table.column("reason").to_pylist())
                      if s == bulk.REJECTED)
    listed = counters.get("inputs_listed")
    summary = {
        "output": plan.settings.output, "model_version": plan.model.version, "model_sha256": plan.model.sha256,
        "inputs": table.num_rows, **{status: statuses.get(status, 0) for status in bulk.STATUSES},
        "rejected_by_reason": dict(sorted(reasons.items())), "inputs_listed_this_run": listed,
        "already_done": counters.get("inputs_already_done", 0),
        "this_run": {name: counters.get(name, 0) for name in (
            "images_read", "faces", "faces_sanitized", "sanitized", "copied_no_face", "rejected", "images_written",
            "images_already_present", "inputs_staged", "inputs_already_staged", "records_written",
            "records_already_present", "containers_written")},
        "seconds": round(elapsed, 1),
    }
    processed = summary["this_run"]["sanitized"] + summary["this_run"]["copied_no_face"] + summary["this_run"]["rejected"]
    if announce:
        print(f"inputs {summary['inputs']} = sanitized {summary[bulk.SANITIZED]} + copied without a face "
              f"{summary[bulk.COPIED_NO_FACE]} + rejected {summary[bulk.REJECTED]}"
              + (f" (rejected by reason: {', '.join(f'{k} {v}' for k, v in summary['rejected_by_reason'].items())})"
                 if reasons else ""))
        staged_before = summary["this_run"]["inputs_already_staged"]
        print(f"this run: {processed} inputs processed in {elapsed:.1f} s ({processed / max(elapsed, 1e-9):.1f}/s), "
              f"{summary['already_done']} already done by earlier runs"
              + (f" ({staged_before} more sanitized by an earlier run and kept in _staging/)" if staged_before else "")
              + f", {summary['this_run']['faces_sanitized']} faces "
              f"sanitized, " + (f"{summary['this_run']['images_written']} images written" if plan.output_kind == "images"
                                else f"{summary['this_run']['records_written']} records written in "
                                     f"{summary['this_run']['containers_written']} {plan.output_kind} shards"))
        written_to = bulk.IMAGES_DIR if plan.output_kind == "images" else bulk.RECORDS_DIR
        print(f"sanitized: {plan.out(written_to)}  manifest: {plan.out(bulk.MANIFEST_DIR)}  "
              f"dead letter: {plan.out(bulk.DEAD_LETTER_DIR)}")
    if listed is not None and listed != table.num_rows:
        raise SystemExit(f"error: {listed} inputs were listed but the manifest has {table.num_rows} rows; "
                         "re-run the same command to complete the output (inputs added or removed since an earlier "
                         "run also cause this).")
    return summary


def main(argv=None) -> int:
    run_job(config_from_args(argv))
    return 0


if __name__ == "__main__":
    try:
        exit_code = main()
    except SystemExit as error:
        if isinstance(error.code, str):
            print(error.code, file=sys.stderr)
        exit_code = error.code if isinstance(error.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and closed by now. Skipping the interpreter's teardown avoids an
    # intermittent std::terminate ("terminate called without an active exception", SIGABRT) from
    # native thread pools (TensorFlow's, started in Beam's worker threads when the model runs in
    # this process) being destroyed at exit, which turned a finished job into a failed command.
    os._exit(exit_code)
