"""Evaluate a run's sanitizer(s) again with the evaluator as it is now, the run's own judges and
splits, without re-training anything: after a change to the evaluator, or to compare models.

    python benchmarks/evaluate_again.py --work-dir /tmp/run2 --out /tmp/again
        (every SanTrainer model of the run; each gets <out>/<model id>/metrics.json and report/)
    python benchmarks/evaluate_again.py --work-dir /tmp/run2 --out /tmp/again_bf16 --precision bfloat16
        (the same, judging the models' bfloat16 signatures; models exported before reduced precision
        existed are exported again first, from their own weights, into <out>/<model id>/model)

Uses the laptop defaults of EvaluationConfig and GateConfig (pipelines/config.py) and the SYNTHETIC
judges trained by the run's JudgeTrainer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ml_metadata import metadata_store  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from pipelines.san_effect import latest_uri  # noqa: E402
from components.evaluation.config import SYNTHETIC  # noqa: E402
from components.evaluation.evaluator import run_evaluation  # noqa: E402
from pipelines.config import Config  # noqa: E402
from trainer.export import load_metadata  # noqa: E402


def export_again(serving: str, target: str, precision: str) -> str:
    """The model at `serving` exported again with a `precision` copy: its weights are read back
    into freshly built networks (architecture and sizes from its training config)."""
    import tensorflow as tf

    from trainer.config import TrainingConfig
    from trainer.export import SanitizerModule, save_sanitizer
    from trainer.models import build_gender_classifier, reduced_precision_networks
    from trainer.san import sanitizer_of

    metadata = load_metadata(serving)
    config = TrainingConfig.from_custom_config(metadata["training_config"])
    loaded = tf.saved_model.load(serving)

    def build_san():
        return sanitizer_of(config)

    san, classifier = build_san(), build_gender_classifier(config.image_size)
    for network, saved in ((san, loaded.san), (classifier, loaded.classifier)):
        values = {v.name: v for v in saved.variables}
        for variable in network.variables:
            variable.assign(values[variable.name])
    prototypes = {name: getattr(loaded, f"prototype_{name}") for name in ("male", "female", "neutral")}
    reduced = reduced_precision_networks(build_san, san, classifier, config.image_size, (precision,))
    extra = {k: v for k, v in metadata.items() if k not in ("format_version", "image_size", "exported_at", "precisions")}
    save_sanitizer(SanitizerModule(san, classifier, prototypes, config.image_size, reduced), target, extra)
    # The new export computes what the old one did, in float32.
    faces = tf.random.uniform((8, config.image_size, config.image_size, 1), seed=0)
    old = loaded.signatures["sanitize_faces"](faces=faces)["sanitized"].numpy()
    new = tf.saved_model.load(target).signatures["sanitize_faces"](faces=faces)["sanitized"].numpy()
    if abs(old - new).max() > 1e-5:
        raise SystemExit(f"re-export of {serving} does not reproduce it (max difference {abs(old - new).max():.2g})")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--precision", default="float32", help="which exported precision to judge")
    parser.add_argument("--models", nargs="*", default=None, help="only these SanTrainer model ids (e.g. 22)")
    args = parser.parse_args(argv)
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(args.work_dir, "metadata.sqlite")))
    examples = latest_uri(store, "Examples", "CelebAExampleGen")
    judges = latest_uri(store, "Model", "JudgeTrainer")
    [context] = [c for c in store.get_contexts_by_type("node") if c.name.split(".")[-1] == "SanTrainer"]
    model_type = store.get_artifact_type("Model").id
    models = sorted(a.uri for a in store.get_artifacts_by_context(context.id)
                    if a.type_id == model_type and "/SanTrainer/" in a.uri)  # not its input models
    if args.models:
        models = [m for m in models if os.path.basename(m.rstrip("/")) in args.models]
    config = Config()
    evaluation = dataclasses.replace(config.evaluation, serving_precision=args.precision)
    for model in models:
        serving = os.path.join(model, "Format-Serving")
        output = os.path.join(args.out, os.path.basename(model.rstrip("/")))
        os.makedirs(output, exist_ok=True)
        if args.precision not in load_metadata(serving).get("precisions", ["float32"]):
            serving = export_again(serving, os.path.join(output, "model"), args.precision)
        patterns = {split: [os.path.join(examples, f"Split-{split}", "*")] for split in config.evaluation.splits}
        result = run_evaluation(serving, patterns, judges, (SYNTHETIC,), "SYNTHETIC faces (evaluated again)",
                                evaluation, config.gate, output, model,
                                train_patterns=[os.path.join(examples, "Split-train", "*")])
        print(json.dumps({"model": model, "architecture": load_metadata(serving).get("architecture"),
                          "metrics": result["metrics_file"], "blessed": result["blessed"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
