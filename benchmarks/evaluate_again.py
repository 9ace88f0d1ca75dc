"""Evaluate a run's sanitizer(s) again with the evaluator as it is now, the run's own judges and
splits, without re-training anything: after a change to the evaluator, or to compare models.

    python benchmarks/evaluate_again.py --work-dir /tmp/run2 --out /tmp/again
        (every SanTrainer model of the run; each gets <out>/<model id>/metrics.json and report/)

Uses the laptop defaults of EvaluationConfig and GateConfig (pipelines/config.py) and the SYNTHETIC
judges trained by the run's JudgeTrainer.
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(args.work_dir, "metadata.sqlite")))
    examples = latest_uri(store, "Examples", "CelebAExampleGen")
    judges = latest_uri(store, "Model", "JudgeTrainer")
    [context] = [c for c in store.get_contexts_by_type("node") if c.name.split(".")[-1] == "SanTrainer"]
    model_type = store.get_artifact_type("Model").id
    models = sorted(a.uri for a in store.get_artifacts_by_context(context.id)
                    if a.type_id == model_type and "/SanTrainer/" in a.uri)  # not its input models
    config = Config()
    for model in models:
        serving = os.path.join(model, "Format-Serving")
        output = os.path.join(args.out, os.path.basename(model.rstrip("/")))
        os.makedirs(output, exist_ok=True)
        patterns = {split: [os.path.join(examples, f"Split-{split}", "*")] for split in config.evaluation.splits}
        result = run_evaluation(serving, patterns, judges, (SYNTHETIC,), "SYNTHETIC faces (evaluated again)",
                                config.evaluation, config.gate, output, model,
                                train_patterns=[os.path.join(examples, "Split-train", "*")])
        print(json.dumps({"model": model, "architecture": load_metadata(serving).get("architecture"),
                          "metrics": result["metrics_file"], "blessed": result["blessed"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
