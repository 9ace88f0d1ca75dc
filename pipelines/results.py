"""Reads a finished run's outcome back from ML Metadata and prints where everything is."""

from __future__ import annotations

import json
import os

import tensorflow as tf
from ml_metadata import metadata_store
from tfx import v1 as tfx

from components.celeba.example_gen import REPORT_FILE
from components.evaluation.evaluator import METRICS_FILE
from pipelines.config import Config


MATCHER_TMR = "tmr_at_fmr/0.01"


def latest_artifact(store: metadata_store.MetadataStore, type_name: str):
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda artifact: artifact.id) if artifacts else None


def _custom(artifact, key: str):
    value = artifact.custom_properties.get(key)
    if value is None:
        return None
    return value.string_value or value.int_value


def run_outcome(config: Config) -> dict:
    """The newest Examples, ModelEvaluation, ModelBlessing and PushedModel artifacts' facts."""
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    outcome = {}
    examples = latest_artifact(store, "Examples")
    if examples is not None:
        outcome["ingestion_report"] = os.path.join(examples.uri, REPORT_FILE)
    evaluation = latest_artifact(store, "ModelEvaluation")
    if evaluation is not None:
        outcome["metrics_file"] = os.path.join(evaluation.uri, METRICS_FILE)
        with tf.io.gfile.GFile(outcome["metrics_file"]) as handle:
            outcome["metrics"] = json.loads(handle.read())
    # The auxiliary matcher's figures on unseen identities (components/training/reports.py).
    matchers = [model for model in store.get_artifacts_by_type("Model") if MATCHER_TMR in model.custom_properties]
    if matchers:
        matcher = max(matchers, key=lambda artifact: artifact.id)
        outcome["matcher_on_unseen_identities"] = {
            key: matcher.custom_properties[key].double_value for key in (MATCHER_TMR, "tmr_at_fmr/0.001")
            if key in matcher.custom_properties}
    pushed = latest_artifact(store, "PushedModel")
    if pushed is not None and _custom(pushed, "pushed") == 1:
        outcome["pushed_model"] = _custom(pushed, "pushed_destination")
    return outcome


def print_summary(config: Config) -> int:
    outcome = run_outcome(config)
    print("\n=== facesan pipeline finished ===")
    if config.data is None:
        print("data: embedded SYNTHETIC CelebA-layout faces (not real CelebA); figures below are on synthetic data")
    print(f"ingestion report: {outcome.get('ingestion_report')}")
    if outcome.get("matcher_on_unseen_identities"):
        figures = outcome["matcher_on_unseen_identities"]
        print("auxiliary face matcher on the eval split's unseen identities: " + ", ".join(
            f"TMR at FMR {key.split('/')[1]} {value:.1%}" for key, value in figures.items()))
    metrics = outcome.get("metrics")
    if metrics:
        split = metrics["splits"][metrics["gate_split"]]
        policy = metrics.get("privacy_policy") or {}
        if policy:
            print(f"privacy policy: {policy['name']} (suppress {', '.join(policy['suppress'])}; "
                  f"preserve {', '.join(policy['preserve']) or 'nothing'})")
        print(f"evaluation ({metrics['gate_split']} split, {split['num_examples']} faces; "
              f"independent judges: {', '.join(metrics['judges'])}):")
        def figure(value, interval):
            return f"{value:.1%}" + (f" [{interval[0]:.1%}-{interval[1]:.1%}]" if interval else "")

        for judge, outputs in split["gender"].items():
            print(f"  gender error of {judge}: " + "  ".join(
                f"{name} {figure(values['error_rate'], values.get('error_rate_ci'))}"
                for name, values in outputs.items()))
        for judge, outputs in split["matching"].items():
            fmr = f"{metrics['gate']['tmr_fmr']:g}"
            print(f"  TMR at FMR {fmr} of {judge}: " + "  ".join(
                f"{name} {figure(values['tmr_at_fmr'][fmr], values.get('tmr_at_fmr_ci', {}).get(fmr))}"
                for name, values in outputs.items()))
        for judge, values in split.get("linkability", {}).items():
            fmr = f"{metrics['gate']['tmr_fmr']:g}"
            print(f"  linkability (identity suppressed): TMR at FMR {fmr} of {judge}, sanitized vs sanitized "
                  f"{figure(values['tmr_at_fmr'][fmr], values.get('tmr_at_fmr_ci', {}).get(fmr))}")
        for judge, outputs in split.get("adaptive", {}).items():
            values = outputs["sanitized"]
            print(f"  ADAPTIVE attacker {judge} (trained on sanitized train faces), error on sanitized faces: "
                  f"{figure(values['error_rate'], values.get('error_rate_ci'))}")
        for judge, outputs in split.get("identity_leakage", {}).items():
            values = outputs["original"]
            print(f"  identity-leakage bound {judge} (gender from identity alone): "
                  f"{figure(values['error_rate'], values.get('error_rate_ci'))}")
        for attribute, section in split.get("attributes", {}).items():
            if attribute == "Male":
                continue
            for group in ("judges", "adaptive", "identity_leakage"):
                for judge, outputs in section.get(group, {}).items():
                    print(f"  {attribute} ({section['role']}) error of {judge}: " + "  ".join(
                        f"{name} {figure(values['error_rate'], values.get('error_rate_ci'))}"
                        for name, values in outputs.items()))
        print("  [a-b]: 95% bootstrap intervals, identities resampled")
        print("  SSIM vs original: " + "  ".join(
            f"{name} {values['ssim']:.3f}" for name, values in split["image_quality"].items()))
        if "decryption" in split:
            print(f"  decrypted (the model applied again to its output) vs original: SSIM "
                  f"{split['decryption']['ssim']:.3f}, PSNR {split['decryption']['psnr']:.1f} dB")
        if metrics.get("kept"):
            print(f"what the policy keeps: {metrics['kept']}")
        print(f"evaluation result: {outcome['metrics_file']}")
        print(f"example faces (rows: original, SM, NT, sanitized): {metrics['example_grid']}")
        if not metrics["blessed"]:
            print("model NOT blessed, so NOT pushed:\n  " + "\n  ".join(metrics["failed_thresholds"]))
    if outcome.get("pushed_model"):
        print(f"pushed model: {outcome['pushed_model']}")
    if metrics:
        print(f"evaluation report (open in a browser): {metrics['report']['html']}")
        print(f"  (Markdown: {metrics['report']['markdown']})")
    return 0
