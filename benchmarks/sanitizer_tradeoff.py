"""Privacy against utility over residual-sanitizer settings, judged by a finished run's own judges.

    python benchmarks/sanitizer_tradeoff.py --work-dir outputs \
        --points defaults matcher_loss_weight=8 ensemble_members=linear+mlp,ensemble_loss_weight=1 \
        --out components/evaluation/measured_tradeoff.json

Reads a finished pipeline run from its ML Metadata (`--work-dir`): the ingested train and test
splits, the trained auxiliary gender classifier and face matcher, and the JudgeTrainer's
independent judges. For each point (TrainingConfig fields, comma-separated key=value, over the
laptop defaults; "defaults" for none; a tuple field's items joined by "+") it trains the residual sanitizer with the product's own trainer
(`trainer.san.build_san_trainer`, the same ensemble members, hashed targets at test time, as the
exported model) and prints one table row: every unseen gender judge's error on the sanitized test
faces, the adaptive attacker (the evaluator's residual CNN trained on the sanitized train split),
the identity-leakage bound, the matcher judge's TMR at FMR 1e-2 (sanitized probes against the
original gallery), and SSIM. Gender errors carry 95% bootstrap intervals (identities resampled).
Each point trains as the SanTrainer does (the resolved training precision, the frozen networks
computing in it) and is judged as the float32 copy it exports. A point takes about 4-5 minutes on
a 2-core CPU at the laptop's 64 px.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from ml_metadata import metadata_store  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from components.evaluation.cnn_judges import train_gender_cnn  # noqa: E402
from components.evaluation.intervals import rate_interval  # noqa: E402
from components.evaluation.judges import load_synthetic_judges  # noqa: E402
from components.evaluation.metrics import genuine_impostor, tmr_at_fmr  # noqa: E402
from pipelines.san_effect import latest_uri  # noqa: E402
from trainer import features  # noqa: E402
from trainer.config import ENSEMBLE_MEMBERS, TrainingConfig  # noqa: E402
from trainer.data import aligned_face_batches  # noqa: E402
from trainer.export import hashed_targets, target_count  # noqa: E402
from trainer.gender_classifier import train_ensemble_members  # noqa: E402
from trainer.distribution import resolve_training_precision  # noqa: E402
from trainer.models import computing_in, keras_policy, policy_copy  # noqa: E402
from trainer.san import LossSchedule, build_san_trainer, load_frozen_matcher, sanitizer_of  # noqa: E402


def load_split(examples_uri: str, split: str, image_size: int) -> dict:
    batches = list(aligned_face_batches([os.path.join(examples_uri, f"Split-{split}", "*")], image_size, 256))
    return {"face": np.concatenate([b["face"].numpy() for b in batches]),
            "male": np.concatenate([b["male"].numpy() for b in batches]),
            "identity": np.concatenate([b["identity"].numpy() for b in batches])}


def parse_point(text: str) -> dict:
    known = {field.name: field.type for field in dataclasses.fields(TrainingConfig)}
    point = {}
    for item in filter(None, "" if text == "defaults" else text.split(",")):
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"unknown TrainingConfig field {key!r} in point {text!r}")
        default = getattr(TrainingConfig(), key)
        # A tuple field takes its items joined by "+" (ensemble_members=linear+mlp+cnn).
        point[key] = tuple(value.split("+")) if isinstance(default, tuple) else type(default)(value)
    return point


def sanitize(san, faces: np.ndarray, batch: int = 256) -> np.ndarray:
    parts = [san.sanitized_only(tf.constant(faces[i:i + batch]), None,
                                hashed_targets(tf.constant(faces[i:i + batch]), target_count(san))).numpy()
             for i in range(0, len(faces), batch)]
    return np.concatenate(parts)


def judge_point(san, data: dict, judges, seed: int) -> dict:
    test, train = data["test"], data["train"]
    sanitized = sanitize(san, test["face"])
    result = {"gender": {}, "samples": 1000}

    def error(judge, faces):
        errors = ((judge.male_probability(faces) >= 0.5).astype(int) != test["male"]).astype(float)
        return [float(errors.mean()), rate_interval(errors, test["identity"], 1000, 2)]

    for judge in judges.gender:
        result["gender"][judge.name] = {"original": error(judge, test["face"]), "sanitized": error(judge, sanitized)}
    for judge in judges.identity_leakage:
        result["identity_leakage"] = {judge.name: error(judge, test["face"])}
    attacker_faces = np.clip(np.rint(sanitize(san, train["face"]) * 255.0), 0, 255).astype(np.uint8)
    attacker = train_gender_cnn(attacker_faces, train["male"], san.image_size, epochs=8, seed=seed + 1,
                                identity=train["identity"])  # as the evaluator trains it
    adaptive = type("Adaptive", (), {"male_probability": lambda self, faces: attacker.predict(
        faces, batch_size=256, verbose=0)[:, 0]})()
    result["adaptive"] = error(adaptive, sanitized)
    result["matching"] = {}
    for judge in judges.matcher:
        gallery = judge.embed(test["face"])
        tmr = {}
        for name, probes in (("original", test["face"]), ("sanitized", sanitized)):
            genuine, impostor = genuine_impostor(judge.similarity(judge.embed(probes), gallery), test["identity"])
            tmr[name] = tmr_at_fmr(genuine, impostor, 1e-2)
        result["matching"][judge.name] = tmr
    result["ssim"] = float(tf.reduce_mean(tf.image.ssim(tf.constant(test["face"]), tf.constant(sanitized), 1.0)))
    return result


def row(name: str, result: dict) -> str:
    def pct(value):
        return f"{100 * value[0]:.1f} [{100 * value[1][0]:.1f}–{100 * value[1][1]:.1f}]"

    gender = " | ".join(pct(values["sanitized"]) for values in result["gender"].values())
    matching = " | ".join(f"{100 * v['original']:.1f} → {100 * v['sanitized']:.1f}" for v in result["matching"].values())
    bound = next(iter(result.get("identity_leakage", {}).values()), None)
    return (f"| {name} | {gender} | {pct(result['adaptive'])} | {pct(bound) if bound else '–'} | {matching} | "
            f"{result['ssim']:.3f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True, help="a finished pipeline run's work dir (synthetic judges)")
    parser.add_argument("--points", nargs="+", default=["matcher_loss_weight=8", "matcher_loss_weight=24",
                                                        "matcher_loss_weight=48"],
                        help="comma-separated TrainingConfig overrides, one point each")
    parser.add_argument("--out", default=None, help="also write the results as JSON here, in the format the "
                        "evaluation report shows (components/evaluation/measured_tradeoff.json is the packaged one)")
    args = parser.parse_args(argv)
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(args.work_dir, "metadata.sqlite")))
    defaults = TrainingConfig()
    size = defaults.image_size
    examples = latest_uri(store, "Examples", "CelebAExampleGen")
    data = {split: load_split(examples, split, size) for split in ("train", "test")}
    classifier = keras.models.load_model(
        os.path.join(latest_uri(store, "Model", "GenderClassifierTrainer"), "Format-Serving"), compile=False)
    classifier.trainable = False
    matcher_path = os.path.join(latest_uri(store, "Model", "MatcherTrainer"), "Format-Serving")
    judges = load_synthetic_judges(latest_uri(store, "Model", "JudgeTrainer"))
    train = tf.data.Dataset.from_tensor_slices({features.FACE_GRAY_KEY: data["train"]["face"],
                                                features.LABEL_KEY: data["train"]["male"]})
    ensemble = train_ensemble_members(train.batch(64), size, defaults.seed,
                                      members=tuple(name for name in ENSEMBLE_MEMBERS if name != "robust"))
    robust = {}  # the robust member, trained once per radius a point asks for

    def members_of(config):
        if "robust" in config.ensemble_members and config.robust_member_epsilon not in robust:
            robust[config.robust_member_epsilon] = train_ensemble_members(
                train.batch(64), size, defaults.seed, members=("robust",),
                robust_epsilon=config.robust_member_epsilon)["robust"]
        return {name: robust[config.robust_member_epsilon] if name == "robust" else ensemble[name]
                for name in config.ensemble_members}
    print(f"{args.work_dir}: train {len(data['train']['male'])} faces, test {len(data['test']['male'])} faces "
          f"(SYNTHETIC unless the run had --data)", flush=True)
    results = {}
    header = ("| point | " + " | ".join(f"{judge.name} error" for judge in judges.gender)
              + " | ADAPTIVE error | identity-leakage bound | "
              + " | ".join(f"{judge.name} TMR@1e-2 original → sanitized" for judge in judges.matcher) + " | SSIM |")
    for text in args.points:
        config = dataclasses.replace(defaults, **parse_point(text))
        keras.utils.set_random_seed(config.seed)
        # As the SanTrainer trains it: under the resolved Keras dtype policy (bfloat16 on CPUs with
        # native bfloat16), the frozen networks computing in it, judged as the float32 copy it exports.
        policy = resolve_training_precision(config.training_precision)
        with keras_policy(policy):
            trainer, terms = build_san_trainer(
                config, {}, computing_in(classifier, policy), load_frozen_matcher(matcher_path, policy),
                {name: computing_in(member, policy) for name, member in members_of(config).items()})
        start = time.perf_counter()
        trainer.fit(train.shuffle(4096, seed=config.seed).batch(config.batch_size),
                    epochs=config.pretrain_epochs + config.san_epochs, callbacks=[LossSchedule(terms, config)],
                    verbose=0)
        san = trainer.san if policy == "float32" else policy_copy(
            lambda: sanitizer_of(config), trainer.san, "float32")
        results[text] = judge_point(san, data, judges, seed=1)
        print(f"point {text}: trained in {time.perf_counter() - start:.0f} s", flush=True)
        print(header + "\n" + row(text, results[text]), flush=True)
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1))
    for text, result in results.items():
        print(row(text, result))
    if args.out:  # the format components/evaluation/tradeoff.py reads for the evaluation report
        with open(args.out, "w") as handle:
            json.dump({"measured_by": "bash infra/with-env.sh python benchmarks/sanitizer_tradeoff.py "
                                      + " ".join(shlex.quote(arg) for arg in (argv or sys.argv[1:])),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": source_commit(),
                       "machine": machine(),
                       "data": (f"{run_data_label(store)}; train split {len(data['train']['male'])} faces, "
                                f"test split {len(data['test']['male'])} faces, {size} px"),
                       "points": results}, handle, indent=2)
    return 0


def run_data_label(store) -> str:
    """What data the run was (its evaluator's label: SYNTHETIC or the real data's path)."""
    try:
        with open(os.path.join(latest_uri(store, "ModelEvaluation", "SanitizerEvaluator"), "metrics.json")) as handle:
            return json.load(handle)["data"]
    except (SystemExit, OSError, KeyError):
        return "data of an unevaluated run (SYNTHETIC unless it had --data)"


def source_commit() -> str:
    """The commit the benchmark ran at, "-dirty" when the tree had uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("-dirty" if dirty else "")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or "unknown CPU") if os.path.exists("/proc/cpuinfo") else platform.processor()
    return f"{os.cpu_count()}-core {model}"


if __name__ == "__main__":
    raise SystemExit(main())
