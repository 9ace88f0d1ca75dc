"""What each independent judge reads on a run's sanitized test faces, by true value and target.

    python benchmarks/judges_by_target.py --work-dir outputs

For every attribute the run's model suppresses (Male and the policy's others) and every judge of it
(the JudgeTrainer's, SYNTHETIC data), the share of sanitized test faces the judge reads as showing
the attribute, in four cells: true value 0/1 x target 0/1 (the target the exported model drew for
the face: its hashed target, or the constant of TrainingConfig.constant_targets). A sanitizer that
works reads 0 where the target is 0 and 1 where it is 1, whatever the truth; where one direction
fails (a cue hard to add or to remove), the judge's error stays low, and this table shows which.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ml_metadata import metadata_store  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from components.evaluation.judges import load_synthetic_judges  # noqa: E402
from pipelines.san_effect import latest_uri  # noqa: E402
from trainer.config import TrainingConfig  # noqa: E402
from trainer.data import aligned_face_batches  # noqa: E402
from trainer.export import hashed_targets, load_metadata  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True, help="a finished pipeline run's work dir (synthetic judges)")
    args = parser.parse_args(argv)
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(args.work_dir, "metadata.sqlite")))
    serving = os.path.join(latest_uri(store, "Model", "SanTrainer"), "Format-Serving")
    config = TrainingConfig.from_custom_config(load_metadata(serving)["training_config"])
    if config.architecture != "residual" or config.policy.obfuscates:
        raise SystemExit(f"{serving}: a {config.architecture} sanitizer of policy {config.policy.describe()} draws no "
                         "per-face targets (the paper SAN serves the opposite gender); this table is for the "
                         "residual sanitizer's attribute policies")
    suppressed = [name for name in config.policy.suppress if name != "identity"]
    others = tuple(name for name in suppressed if name != "Male")
    batches = list(aligned_face_batches([os.path.join(latest_uri(store, "Examples", "CelebAExampleGen"),
                                                      "Split-test", "*")], config.image_size, 256, others))
    faces = np.concatenate([batch["face"].numpy() for batch in batches])
    truth = {name: np.concatenate([batch["male" if name == "Male" else name].numpy() for batch in batches])
             for name in suppressed}
    model = tf.saved_model.load(serving)
    sanitize = model.signatures["sanitize_only"]
    sanitized, drawn = [], []
    for start in range(0, len(faces), 256):
        chunk = tf.constant(faces[start:start + 256])
        sanitized.append(sanitize(chunk)["sanitized"].numpy())
        drawn.append(tf.reshape(hashed_targets(chunk, len(config.policy.suppress)), [len(chunk), -1]).numpy())
    sanitized, drawn = np.concatenate(sanitized), np.concatenate(drawn)
    constants = config.constant_target_values()
    judges = load_synthetic_judges(latest_uri(store, "Model", "JudgeTrainer"))
    print(f"{serving}: policy {config.policy.describe()}, constant targets {constants or 'none'}; "
          f"test split {len(faces)} faces (SYNTHETIC unless the run had --data)")
    for column, name in enumerate(config.policy.suppress):
        if name == "identity":
            continue
        target = np.full(len(faces), constants[name]) if name in constants else drawn[:, column]
        group = judges.gender if name == "Male" else judges.attributes[name]["judges"]
        print(f"\n{name}: share of sanitized faces each judge reads as {name}")
        print("| judge | true 0, target 0 | true 0, target 1 | true 1, target 0 | true 1, target 1 | error |")
        print("|---|---|---|---|---|---|")
        for judge in group:
            reads = judge.male_probability(sanitized) >= 0.5
            cells = []
            for true in (0, 1):
                for wanted in (0, 1):
                    chosen = (truth[name] == true) & (target == wanted)
                    cells.append(f"{reads[chosen].mean():.2f} (n={chosen.sum()})" if chosen.any() else "-")
            error = float(np.mean(reads.astype(int) != truth[name]))
            print(f"| {judge.name} | " + " | ".join(cells) + f" | {100 * error:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
