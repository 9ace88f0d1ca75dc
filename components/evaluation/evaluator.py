"""Privacy and utility of an exported sanitizer, judged independently; the gate (library).

For each evaluated split it runs the sanitizer over every face (up to max_faces_per_split) and
measures, per output (original, X'_SM, X'_NT, X'_OP):
- each independent gender judge's error rate, ROC and AUC;
- each independent matcher judge's TMR at the FMR targets: probe = the output for face i,
  gallery = the ORIGINAL faces j != i of the same split, genuine = same identity (the paper's
  protocol);
- SSIM and PSNR against the original.
The auxiliary classifier inside the exported model (the one the SAN trained against) is reported
beside them as a white-box reference, never used by the gate. Then the release gate (gate.py) and
the report (report.py). The TFX component over this library is component.py.
"""


import dataclasses
import json
import logging
import os

import numpy as np
import tensorflow as tf

from components.evaluation.adaptive import train_adaptive_attacker, train_adaptive_matcher
from components.evaluation.cnn_matcher import CNN_MATCHER
from components.evaluation.config import SYNTHETIC, EvaluationConfig, GateConfig, check_judge_names
from components.evaluation.gate import decide_blessing, what_is_kept
from components.evaluation.intervals import LEVEL, PairScores, pair_samples, rate_interval
from components.evaluation.judges import JudgeSet, load_synthetic_judges
from components.evaluation.metrics import (
    gender_metrics, genuine_impostor, image_quality, linkability, matching_metrics)
from components.evaluation.outputs import OUTPUTS, sanitized_batches
from components.evaluation.real_face_judges import load_real_face_judges
from components.evaluation.report import write_report
from components.evaluation.tradeoff import load_measured_tradeoff
from trainer.export import DECRYPT_SIGNATURE, load_metadata
from trainer.policy import GENDER, PrivacyPolicy

METRICS_FILE = "metrics.json"
REPORT_DIR = "report"
GRID_FILE = "examples_grid.png"  # rows: original, SM, NT, OP (in the report folder)
WHITE_BOX = "auxiliary_gender_classifier"
GRID_FACES_PER_GENDER = 4  # the grid shows 4 female then 4 male faces, like the paper's Figure 5


def example_grid(images: dict, columns: int = 8) -> tf.Tensor:
    """Up to `columns` faces per row, one row per output (original, SM, NT, OP), as in the paper's
    Figure 5, and a fifth row of the decrypted faces for an obfuscating sanitizer: uint8
    [rows*S, columns*S, 1]."""
    names = [*OUTPUTS, *(["decrypted"] if "decrypted" in images else [])]
    rows = [tf.concat(tf.unstack(images[name][:columns]), axis=1) for name in names]
    return tf.image.convert_image_dtype(tf.concat(rows, axis=0), tf.uint8, saturate=True)


def load_judges(names, judges_dir: str | None) -> JudgeSet:
    """The judges of the configured judge sets."""
    names = check_judge_names(names)
    judges = JudgeSet()
    if SYNTHETIC in names:
        if not judges_dir:
            raise ValueError("the 'synthetic' judges are selected but no JudgeTrainer output was given")
        judges = judges + load_synthetic_judges(judges_dir)
    real = [name for name in names if name != SYNTHETIC]
    if real:
        judges = judges + JudgeSet(*load_real_face_judges(real))
    return judges


def tmr_intervals(scores: np.ndarray, identity: np.ndarray, settings: EvaluationConfig) -> dict:
    """95% bootstrap intervals (identities resampled) of the TMR at each FMR target for probe x
    gallery `scores`: {"tmr_at_fmr_ci": {fmr: [low, high]}, "bootstrap_samples": draws}."""
    # Each draw walks the best-scoring pairs up to 2.5x the largest FMR target (exact: a draw whose
    # target lies further walks them all); 0.05 cost 3.0 s per output, 0.025 1.9 s (1,600 faces).
    pairs = PairScores(scores, identity, head_fmr=min(1.0, 2.5 * max(settings.fmr_targets)))
    draws = pair_samples(pairs.pairs_walked, settings.bootstrap_samples)
    intervals = pairs.tmr_intervals(settings.fmr_targets, draws, settings.bootstrap_seed)
    return {"tmr_at_fmr_ci": {f"{fmr:g}": interval for fmr, interval in intervals.items()},
            "bootstrap_samples": draws}


def evaluate_split(model_dir: str, file_patterns: list[str], judges: JudgeSet, settings: EvaluationConfig,
                   adaptive: list = (), progress=logging.info, policy: PrivacyPolicy | None = None,
                   adaptive_attributes: dict | None = None, adaptive_matchers: list = ()) -> tuple[dict, dict]:
    """Metrics of one split (see the module docstring) and the grid faces {output: [<=8,S,S,1]}.

    `adaptive`: gender judges trained on the sanitizer's output (adaptive.py), reported apart from
    the unseen judges; the identity-leakage judges are applied to the original faces only.
    `policy`: its attributes other than Male are judged by judges.attributes (and the adaptive
    attackers of `adaptive_attributes`, {attribute: judge}) into metrics["attributes"].
    `adaptive_matchers` (identity suppressed): matcher judges trained on the sanitizer's output,
    measured and gated with the others; with identity suppressed, metrics["linkability"] holds every
    matcher's TMR of sanitized probes against the sanitized gallery."""
    policy = policy or PrivacyPolicy()
    adaptive_attributes = adaptive_attributes or {}
    others = policy.other_attributes
    missing = [name for name in others if name not in judges.attributes]
    if missing:
        raise ValueError(f"the privacy policy names {', '.join(missing)} but no judge of it was trained: the "
                         "JudgeTrainer trains judges of the policy's attributes (attributes_json)")
    gender_judges, matcher_judges = [*judges.gender, *adaptive], [*judges.matcher, *adaptive_matchers]
    attribute_judges = {name: [*judges.attributes[name]["judges"],
                               *([adaptive_attributes[name]] if name in adaptive_attributes else [])]
                        for name in others}
    attribute_probability = {name: {judge.name: {output: [] for output in OUTPUTS} for judge in group}
                             for name, group in attribute_judges.items()}
    for name in others:
        attribute_probability[name].update({judge.name: {"original": []}
                                            for judge in judges.attributes[name]["identity_leakage"]})
    labels = {name: [] for name in others}
    model = tf.saved_model.load(model_dir)
    image_size = int(load_metadata(model_dir)["image_size"])
    white_box = model.signatures["classify_gender"]
    male, identity, grid = [], [], {"female": [], "male": []}
    probability = {judge.name: {name: [] for name in OUTPUTS} for judge in gender_judges}
    probability[WHITE_BOX] = {name: [] for name in OUTPUTS}
    probability.update({judge.name: {"original": []} for judge in judges.identity_leakage})
    embedding = {judge.name: {name: [] for name in OUTPUTS} for judge in matcher_judges}
    quality = {name: {"ssim": [], "psnr": []} for name in OUTPUTS[1:]}
    # Obfuscation (DDM): a second pass of the model decrypts; how much of the face it gives back.
    decrypt = None
    if policy.obfuscates:
        if DECRYPT_SIGNATURE not in model.signatures:
            raise ValueError(f"the sanitizer in {model_dir} says its policy is {policy.describe()} but has no "
                             f"{DECRYPT_SIGNATURE} signature: export it again with this version")
        decrypt = model.signatures[DECRYPT_SIGNATURE]
    decrypted = {"ssim": [], "psnr": []}
    for batch in sanitized_batches(model, file_patterns, image_size, settings.batch_size,
                                    settings.max_faces_per_split, settings.serving_precision, others):
        images = batch["images"]
        # Obfuscation: what a second pass of the model gives back (metrics and a grid row of its own).
        restored = decrypt(faces=images["sanitized"])["decrypted"] if decrypt is not None else None
        for index, is_male in enumerate(batch["male"]):
            faces = grid["male" if is_male else "female"]
            if len(faces) < GRID_FACES_PER_GENDER:
                faces.append({name: images[name][index] for name in OUTPUTS})
                if restored is not None:
                    faces[-1]["decrypted"] = restored[index]
        for name, image in images.items():
            pixels = image.numpy()
            probability[WHITE_BOX][name].append(white_box(faces=image)["male_probability"].numpy())
            for judge in gender_judges:
                probability[judge.name][name].append(judge.male_probability(pixels))
            for judge in matcher_judges:
                embedding[judge.name][name].append(judge.embed(pixels))
            for judge in judges.identity_leakage if name == "original" else ():
                probability[judge.name][name].append(judge.male_probability(pixels))
            for attribute, group in attribute_judges.items():
                for judge in [*group, *(judges.attributes[attribute]["identity_leakage"] if name == "original"
                                        else ())]:
                    attribute_probability[attribute][judge.name][name].append(judge.male_probability(pixels))
            if name != "original":
                ssim, psnr = image_quality(images["original"], image)
                quality[name]["ssim"].append(ssim)
                quality[name]["psnr"].append(psnr)
        if restored is not None:
            ssim, psnr = image_quality(images["original"], restored)
            decrypted["ssim"].append(ssim)
            decrypted["psnr"].append(psnr)
        male.append(batch["male"])
        identity.append(batch["identity"])
        for attribute in others:
            labels[attribute].append(batch["attributes"][attribute])
        progress(f"evaluated {sum(len(m) for m in male)} faces")
    if not male:
        raise ValueError(f"no examples found in {file_patterns}")
    male, identity = np.concatenate(male), np.concatenate(identity)

    def gender_table(per_output, truth=None):
        truth = male if truth is None else truth
        table = {}
        for name, values in per_output.items():
            probability = np.concatenate(values)
            table[name] = gender_metrics(truth, probability)
            errors = ((probability >= 0.5).astype(int) != truth).astype(np.float64)
            table[name]["error_rate_ci"] = rate_interval(errors, identity, settings.bootstrap_samples,
                                                         settings.bootstrap_seed)
        return table

    metrics = {
        "num_examples": int(len(male)),
        "num_identities": int(len(np.unique(identity))),
        "num_male": int(male.sum()),
        "intervals": {"level": LEVEL, "resampled": "identities", "samples": settings.bootstrap_samples,
                      "seed": settings.bootstrap_seed},
        "gender": {judge.name: gender_table(probability[judge.name]) for judge in judges.gender},
        # Apart from the unseen judges (the gate reads "gender"): the attacker who owns the
        # sanitizer, and what identity alone reveals of gender (original faces).
        "adaptive": {judge.name: gender_table(probability[judge.name]) for judge in adaptive},
        "identity_leakage": {judge.name: gender_table(probability[judge.name]) for judge in judges.identity_leakage},
        "white_box": {WHITE_BOX: gender_table(probability[WHITE_BOX])},
        "matching": {},
        "image_quality": {name: {"ssim": float(np.mean(np.concatenate(values["ssim"]))),
                                 "psnr": float(np.mean(np.concatenate(values["psnr"])))}
                          for name, values in quality.items()},
    }
    if decrypt is not None:
        metrics["decryption"] = {"ssim": float(np.mean(np.concatenate(decrypted["ssim"]))),
                                 "psnr": float(np.mean(np.concatenate(decrypted["psnr"])))}
    # A section per attribute of the policy, keyed by its CelebA name: what it is (suppressed or
    # preserved), each judge's error and accuracy per output, the adaptive attacker and the bound.
    # Male points at the gender figures above.
    metrics["attributes"] = {}
    if GENDER in policy.attributes:
        metrics["attributes"][GENDER] = {
            "role": "suppressed" if GENDER in policy.suppress else "preserved",
            "judges": metrics["gender"], "adaptive": metrics["adaptive"],
            "identity_leakage": metrics["identity_leakage"]}
    for attribute in others:
        truth = np.concatenate(labels[attribute]).astype(int)
        section = {"role": "suppressed" if attribute in policy.suppress else "preserved",
                   "positive_share": float(truth.mean()), "judges": {}, "adaptive": {}, "identity_leakage": {}}
        for judge in attribute_judges[attribute]:
            group = "adaptive" if adaptive_attributes.get(attribute) is judge else "judges"
            section[group][judge.name] = gender_table(attribute_probability[attribute][judge.name], truth)
        for judge in judges.attributes[attribute]["identity_leakage"]:
            section["identity_leakage"][judge.name] = gender_table(attribute_probability[attribute][judge.name], truth)
        metrics["attributes"][attribute] = section
    for judge in matcher_judges:
        vectors = {name: np.concatenate(values) for name, values in embedding[judge.name].items()}
        metrics["matching"][judge.name] = {}
        for name in OUTPUTS:
            scores = judge.similarity(vectors[name], vectors["original"])
            genuine, impostor = genuine_impostor(scores, identity)
            if not genuine.size:
                raise ValueError(f"the split in {file_patterns} has no identity with two images: matching "
                                 "needs genuine pairs")
            metrics["matching"][judge.name][name] = {
                **matching_metrics(genuine, impostor, settings.fmr_targets),
                **tmr_intervals(scores, identity, settings)}
        if policy.suppresses_identity:
            # Linkability: can two sanitized photos of one person still be linked to each other?
            scores = judge.similarity(vectors["sanitized"], vectors["sanitized"])
            metrics.setdefault("linkability", {})[judge.name] = {
                "tmr_at_fmr": {f"{fmr:g}": linkability(scores, identity, fmr) for fmr in settings.fmr_targets},
                **tmr_intervals(scores, identity, settings)}
    grid_faces = grid["female"] + grid["male"]
    grid_images = {name: tf.stack([face[name] for face in grid_faces]) for name in grid_faces[0]}
    return metrics, grid_images


def record_in_metadata(evaluation, result: dict) -> None:
    """Key figures of the gate split as custom properties of the ModelEvaluation artifact."""
    split = result["splits"][result["gate_split"]]
    evaluation.set_int_custom_property("blessed", int(result["blessed"]))
    evaluation.set_string_custom_property("model", result["model"])
    evaluation.set_string_custom_property("split", result["gate_split"])
    evaluation.set_string_custom_property("privacy_policy", json.dumps(result["privacy_policy"], sort_keys=True))
    evaluation.set_string_custom_property("report_html", result["report"]["html"])
    evaluation.set_string_custom_property("failed_thresholds", "\n".join(result["failed_thresholds"]))
    for group in ("gender", "adaptive", "identity_leakage"):
        for judge, outputs in split.get(group, {}).items():
            for name, values in outputs.items():
                evaluation.set_float_custom_property(f"gender_error/{judge}/{name}", values["error_rate"])
    for judge, outputs in split["matching"].items():
        for name, values in outputs.items():
            for fmr, tmr in values["tmr_at_fmr"].items():
                evaluation.set_float_custom_property(f"tmr_at_fmr_{fmr}/{judge}/{name}", tmr)
    for name, values in split["image_quality"].items():
        evaluation.set_float_custom_property(f"ssim/{name}", values["ssim"])


def run_evaluation(model_dir: str, split_patterns: dict, judges_dir: str | None, judge_names, data_label: str,
                   settings: EvaluationConfig, gate: GateConfig, output_dir: str, model_uri: str = "",
                   train_patterns: list[str] | None = None) -> dict:
    """Evaluates every split, applies the gate on settings.gate_split, writes metrics.json and the report.

    `train_patterns`: the train split, on whose sanitized faces the adaptive attacker is trained."""
    judges = load_judges(judge_names, judges_dir)
    metadata = load_metadata(model_dir)
    policy = PrivacyPolicy.from_dict(metadata.get("policy"))
    adaptive, adaptive_attributes, adaptive_matchers = [], {}, []
    if settings.adaptive_attacker and train_patterns:
        image_size = int(metadata["image_size"])
        # An attacker per suppressed attribute: none for a kept gender (age, deidentify, obfuscate).
        if GENDER in policy.suppress or policy.other_suppressed:
            attackers = train_adaptive_attacker(
                model_dir, train_patterns, image_size, settings.attacker_max_train_faces, settings.attacker_epochs,
                seed=settings.judge_seed + 1, progress=lambda message: logging.info("SanitizerEvaluator: %s", message),
                precision=settings.serving_precision, attributes=policy.other_suppressed,
                gender=GENDER in policy.suppress)
            adaptive = [attackers.pop(GENDER)] if GENDER in attackers else []
            adaptive_attributes = attackers
        if policy.suppresses_identity:
            # Fine-tuned from the CNN matcher judge when it is among the judges (else from scratch).
            start = next((judge.model for judge in judges.matcher if judge.name == CNN_MATCHER), None)
            adaptive_matchers = [train_adaptive_matcher(
                model_dir, train_patterns, image_size, settings.attacker_max_train_faces, settings.cnn_matcher_epochs,
                seed=settings.judge_seed + 2, progress=lambda message: logging.info("SanitizerEvaluator: %s", message),
                precision=settings.serving_precision, start=start)]
    splits, grid = {}, None
    for split, patterns in split_patterns.items():
        logging.info("SanitizerEvaluator: split %s", split)
        splits[split], grid_images = evaluate_split(
            model_dir, patterns, judges, settings, adaptive,
            progress=lambda message, split=split: logging.info("SanitizerEvaluator [%s]: %s", split, message),
            policy=policy, adaptive_attributes=adaptive_attributes, adaptive_matchers=adaptive_matchers)
        if split == settings.gate_split:
            grid = grid_images
    if settings.gate_split not in splits:
        raise ValueError(f"the gate split {settings.gate_split!r} is not among the evaluated splits {list(splits)}")
    blessed, failures, checks = decide_blessing(splits[settings.gate_split], gate, policy)
    kept = what_is_kept(policy, splits[settings.gate_split], int(metadata["image_size"]))
    report_dir = os.path.join(output_dir, REPORT_DIR)
    tf.io.gfile.makedirs(report_dir)
    grid_path = os.path.join(report_dir, GRID_FILE)
    with tf.io.gfile.GFile(grid_path, "wb") as handle:
        handle.write(tf.io.encode_png(example_grid(grid)).numpy())
    result = {
        "data": data_label,
        "model": model_uri or model_dir,
        # what the sanitizer was trained to hide and keep (its metadata; trainer/policy.py)
        "privacy_policy": policy.to_dict(),
        "judges": {judge.name: {"kind": kind, "description": judge.description}
                   for kind, group in (("gender", judges.gender), ("matcher", judges.matcher), ("adaptive", adaptive),
                                       ("adaptive_matcher", adaptive_matchers),
                                       ("identity_leakage", judges.identity_leakage),
                                       *((f"attribute:{name}", [*groups["judges"], *groups["identity_leakage"]])
                                         for name, groups in judges.attributes.items()),
                                       *((f"adaptive:{name}", [judge]) for name, judge in adaptive_attributes.items()))
                   for judge in group},
        "judge_sets": list(judge_names),
        "gate_split": settings.gate_split,
        "fmr_targets": list(settings.fmr_targets),
        "splits": splits,
        "gate": dataclasses.asdict(gate),
        "gate_checks": [check.to_json() for check in checks],
        "blessed": blessed,
        "failed_thresholds": failures,
        "kept": kept,  # what the policy keeps, in words (gate.what_is_kept)
        "example_grid": grid_path,
        "metrics_file": os.path.join(output_dir, METRICS_FILE),
    }
    # The measured trade-off is the gender policy's (benchmarks/sanitizer_tradeoff.py).
    result["report"] = write_report(result, report_dir,
                                    tradeoff=load_measured_tradeoff() if GENDER in policy.suppress else None)
    with tf.io.gfile.GFile(result["metrics_file"], "w") as handle:
        handle.write(json.dumps(result, indent=2))
    return result
