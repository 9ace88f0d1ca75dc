"""The real pipeline, end to end, on tiny embedded synthetic data with LocalDagRunner.

Checks the artifacts and the ML Metadata executions, then runs again to check caching, then once
more with an impossible release gate to check that an unblessed model is not pushed.
"""

import json
import os

import joblib
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipelines import run, san_effect
from pipelines.results import print_summary, run_outcome
from test_judges import assert_not_the_auxiliary_networks  # tests/ is on sys.path (pytest rootdir insertion)

NODES = {"CelebAExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "ValidationGate",
         "Transform", "GenderClassifierTrainer", "MatcherTrainer", "SanTrainer", "JudgeTrainer", "SanitizerEvaluator",
         "Pusher"}
TINY = ["--synthetic-identities", "24", "--synthetic-images-per-identity", "3", "--image-size", "32",
        "--classifier-epochs", "1", "--matcher-epochs", "1", "--pretrain-epochs", "1", "--san-epochs", "1"]
# The gate's own logic is unit-tested; here it is opened (then shut) to test the wiring around it.
OPEN = ["--max-original-gender-error", "1", "--max-sm-gender-error", "1", "--max-tmr-drop-sm", "1",
        "--max-tmr-drop-op", "1", "--min-ssim-op", "0", "--max-adaptive-gap", "1"]
OPEN_GATE = ["--min-op-gender-error", "0", *OPEN]
SHUT_GATE = ["--min-op-gender-error", "1.01", *OPEN]


def _executions_by_node(config):
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    result = {}
    for context in store.get_contexts_by_type("node"):
        node = context.name.split(".")[-1]
        result[node] = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
    return result


def _state(execution):
    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pipeline"))


def _run(work_dir, gate):
    config = run.config_from_args(["--work-dir", work_dir, *TINY, *gate])
    run.ensure_synthetic_data(config)
    run.run_local(config)
    return config


def test_pipeline_runs_caches_and_gates(work_dir, capsys):
    config = _run(work_dir, OPEN_GATE)
    executions = _executions_by_node(config)
    assert set(executions) == NODES
    assert {node: [_state(e) for e in runs] for node, runs in executions.items()} == {
        node: ["COMPLETE"] for node in NODES}

    outcome = run_outcome(config)
    report = json.loads(open(outcome["ingestion_report"]).read())
    assert report["rejected_total"] == 0
    assert report["examples"] == {"train": 39, "eval": 6, "test": 27}  # 13/2/9 identities x 3 images
    metrics = outcome["metrics"]
    assert metrics["blessed"] is True and metrics["gate_split"] == "test"
    assert set(metrics["splits"]) == {"eval", "test"}
    test_split = metrics["splits"]["test"]
    assert test_split["num_examples"] == 27 and test_split["num_identities"] == 9
    assert set(test_split["gender"]) == {"eigenfaces_logistic", "eigenfaces_svm", "resnet_gender_cnn"}
    # The attacker who owns the sanitizer, and the bound identity sets on any attacker, apart from the gate.
    assert set(test_split["adaptive"]) == {"adaptive_resnet_gender_cnn"}
    assert set(test_split["identity_leakage"]) == {"identity_leakage_fisherfaces"}
    assert set(test_split["identity_leakage"]["identity_leakage_fisherfaces"]) == {"original"}
    assert metrics["judges"]["adaptive_resnet_gender_cnn"]["kind"] == "adaptive"
    # The gate holds the adaptive attacker to the identity-leakage bound (here opened, gap 1).
    assert [check["threshold"] for check in metrics["gate_checks"] if "ADAPTIVE" in check["subject"]] == [
        "max_adaptive_gap"]
    for outputs in (*test_split["gender"].values(), *test_split["white_box"].values()):
        assert set(outputs) == {"original", "same", "neutral", "sanitized"}
        assert all(0 <= values["error_rate"] <= 1 for values in outputs.values())
        # A 95% interval (identities resampled) beside every error rate, holding the figure.
        assert all(values["error_rate_ci"][0] <= values["error_rate"] <= values["error_rate_ci"][1]
                   for values in outputs.values())
    assert test_split["intervals"]["resampled"] == "identities"
    assert set(test_split["matching"]) == {"fisherfaces", "resnet_matcher_cnn"}
    matching = test_split["matching"]["fisherfaces"]
    for values in matching.values():
        for fmr, (low, high) in values["tmr_at_fmr_ci"].items():
            assert low <= values["tmr_at_fmr"][fmr] <= high
    assert matching["original"]["genuine_pairs"] == 9 * 3 * 2 and matching["original"]["impostor_pairs"] == 27 * 24
    assert set(matching["sanitized"]["tmr_at_fmr"]) == {"0.01", "0.001"}
    assert {check["threshold"] for check in metrics["gate_checks"]} == {
        "min_op_gender_error", "max_original_gender_error", "max_sm_gender_error", "max_tmr_drop_sm",
        "max_tmr_drop_op", "min_ssim_op", "max_adaptive_gap"}
    grid = tf.io.decode_png(open(metrics["example_grid"], "rb").read())
    assert grid.shape[0] == 4 * 32 and grid.shape[1] in range(32, 8 * 32 + 1, 32)  # up to 4 female + 4 male  # rows original/SM/NT/sanitized

    # The report: self-contained HTML, Markdown beside it, ROC figures; the data labelled synthetic.
    page = open(metrics["report"]["html"]).read()
    assert "SYNTHETIC" in page and "paper Table 2" in page and "paper Table 3" in page and "95% CI" in page
    assert page.count("data:image/png;base64,") == 1 + len(metrics["report"]["figures"])
    # 3 gender judges, the white-box classifier, 2 matchers, and the measured trade-off (the packaged file)
    assert len(metrics["report"]["figures"]) == 3 + 1 + 2 + 1
    assert os.path.basename(metrics["report"]["figures"][-1]) == "tradeoff.png"
    assert "Privacy against utility: the measured trade-off" in page and "NOT this run&#x27;s model" in page
    assert "identity-leakage bound" in page and "ADAPTIVE" in page
    assert all(tf.io.decode_png(open(path, "rb").read()).shape[-1] in (3, 4) for path in metrics["report"]["figures"])
    markdown = open(metrics["report"]["markdown"]).read()
    assert "| eigenfaces_svm |" in markdown and "SYNTHETIC" in markdown
    print_summary(config)
    printed = capsys.readouterr().out
    assert f"evaluation report (open in a browser): {metrics['report']['html']}" in printed
    # The privacy policy (default: gender) in metrics.json, the report and the summary.
    assert metrics["privacy_policy"] == {"name": "gender", "suppress": ["Male"], "preserve": ["identity"]}
    assert "Privacy policy: gender (suppress Male; preserve identity)" in page
    assert "privacy policy: gender (suppress Male; preserve identity)" in printed
    assert "auxiliary face matcher on the eval split's unseen identities: TMR at FMR 0.01 " in printed

    # ML Metadata: the key figures are properties of the evaluation; the judges are not the trained
    # auxiliary networks.
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    assert evaluation.custom_properties["gender_error/eigenfaces_svm/sanitized"].double_value == pytest.approx(
        test_split["gender"]["eigenfaces_svm"]["sanitized"]["error_rate"])
    assert json.loads(evaluation.custom_properties["privacy_policy"].string_value) == metrics["privacy_policy"]
    # The sanitizer's Model artifact carries its policy and architecture (SanTrainer's executor).
    san_model = max([a for a in store.get_artifacts_by_type("Model") if "/SanTrainer/" in a.uri], key=lambda a: a.id)
    assert (san_model.custom_properties["policy_suppress"].string_value,
            san_model.custom_properties["policy_preserve"].string_value,
            san_model.custom_properties["architecture"].string_value) == ("Male", "identity", "residual")
    # The auxiliary matcher's own figures on unseen identities, recorded by its Trainer's executor.
    matcher_model = max([a for a in store.get_artifacts_by_type("Model") if "/MatcherTrainer/" in a.uri],
                        key=lambda a: a.id)
    report_path = matcher_model.custom_properties["training_report"].string_value
    matcher_report = json.loads(open(report_path).read())
    assert matcher_report["split"] == "eval" and matcher_report["genuine_pairs"] == 2 * 3
    assert matcher_model.custom_properties["tmr_at_fmr/0.01"].double_value == pytest.approx(
        matcher_report["tmr_at_fmr"]["0.01"])
    assert evaluation.custom_properties["report_html"].string_value == metrics["report"]["html"]
    judges_dir = max([a for a in store.get_artifacts_by_type("Model") if "/JudgeTrainer/" in a.uri],
                     key=lambda a: a.id).uri
    auxiliary = [keras.models.load_model(os.path.join(a.uri, "Format-Serving"), compile=False)
                 for a in store.get_artifacts_by_type("Model")
                 if "/GenderClassifierTrainer/" in a.uri or "/MatcherTrainer/" in a.uri]
    assert len(auxiliary) == 2
    judge_models = {name: joblib.load(os.path.join(judges_dir, f"{name}.joblib"))
                    for name in ("eigenfaces_logistic", "eigenfaces_svm", "fisherfaces")}
    assert_not_the_auxiliary_networks(judge_models, auxiliary)

    # The pushed model is the self-contained sanitizer: JPEG bytes in, sanitized faces out.
    pushed = outcome["pushed_model"]
    assert pushed.startswith(config.serving_dir)
    model = tf.saved_model.load(pushed)
    image_dir = os.path.join(config.data_root, "img_align_celeba")
    jpegs = [open(os.path.join(image_dir, name), "rb").read() for name in sorted(os.listdir(image_dir))[:3]]
    outputs = model.signatures["serving_default"](image_bytes=tf.constant(jpegs))
    assert outputs["sanitized"].shape == (3, 32, 32, 1)
    assert outputs["sanitized_png"].shape == (3,)
    values = outputs["sanitized"].numpy()
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    assert json.loads(open(os.path.join(pushed, "sanitizer_metadata.json")).read())["image_size"] == 32
    prototypes = tf.io.decode_png(open(os.path.join(pushed, "prototypes.png"), "rb").read())
    assert prototypes.shape == (32, 96, 3)

    # The white-box effect script reads the same run back from ML Metadata.
    effect = san_effect.measure(work_dir)
    assert effect["test_faces"] == 27 and effect["test_identities"] == 9
    assert set(effect["gender_accuracy"]) == {"original", "same", "neutral", "sanitized"}
    assert all(0.0 <= value <= 1.0 for value in effect["gender_accuracy"].values())
    assert effect["matcher"]["original"]["genuine_pairs"] == 9 * 3 * 2  # 9 identities x 3 x 2 ordered pairs

    # Same configuration again: every node is served from the ML Metadata cache.
    _run(work_dir, OPEN_GATE)
    executions = _executions_by_node(config)
    assert {node: _state(runs[-1]) for node, runs in executions.items()} == {node: "CACHED" for node in NODES}

    # An impossible gate: the evaluator runs again, refuses, and the Pusher pushes nothing new.
    pushed_before = sorted(os.listdir(config.serving_dir))
    _run(work_dir, SHUT_GATE)
    executions = _executions_by_node(config)
    assert _state(executions["SanitizerEvaluator"][-1]) == "COMPLETE"
    assert _state(executions["SanTrainer"][-1]) == "CACHED"
    outcome = run_outcome(config)
    assert outcome["metrics"]["blessed"] is False
    assert "min_op_gender_error" in outcome["metrics"]["failed_thresholds"][0]
    assert "pushed_model" not in outcome
    assert sorted(os.listdir(config.serving_dir)) == pushed_before


def test_a_policy_that_hides_gender_and_age_and_keeps_smiles_is_trained_judged_and_recorded(tmp_path):
    """--policy gender-age end to end on tiny data: the attributes travel through Transform, the
    sanitizer gets a target per suppressed attribute, the JudgeTrainer trains judges of Young and
    Smiling, the evaluator writes a section per attribute and gates each; the policy is recorded."""
    config = _run(str(tmp_path), [*OPEN_GATE, "--max-preserved-drop", "1", "--policy", "gender-age"])
    metrics = run_outcome(config)["metrics"]
    assert metrics["privacy_policy"] == {"name": "gender-age", "suppress": ["Male", "Young"],
                                         "preserve": ["identity", "Smiling"]}
    test_split = metrics["splits"]["test"]
    assert set(test_split["attributes"]) == {"Male", "Young", "Smiling"}
    young, smiling = test_split["attributes"]["Young"], test_split["attributes"]["Smiling"]
    assert (young["role"], smiling["role"]) == ("suppressed", "preserved")
    assert set(young["judges"]) == {"eigenfaces_logistic@Young", "eigenfaces_svm@Young", "resnet_gender_cnn@Young"}
    assert set(young["adaptive"]) == {"adaptive_resnet_gender_cnn@Young"} and not smiling["adaptive"]
    assert set(young["identity_leakage"]) == {"identity_leakage_fisherfaces@Young"}
    for outputs in young["judges"].values():
        assert set(outputs) == {"original", "same", "neutral", "sanitized"}
        assert all(values["error_rate_ci"][0] <= values["error_rate"] <= values["error_rate_ci"][1]
                   for values in outputs.values())
    subjects = [check["subject"] for check in metrics["gate_checks"]]
    assert any(s.startswith("Young error of eigenfaces_svm@Young on sanitized X' (suppressed)") for s in subjects)
    assert any(s.startswith("Smiling accuracy drop of resnet_gender_cnn@Smiling") for s in subjects)
    page = open(metrics["report"]["html"]).read()
    assert "Young (suppressed by the privacy policy" in page and "Smiling (preserved by the privacy policy" in page
    # The exported sanitizer is steered by one target per suppressed attribute; its metadata says which.
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    san_model = max([a for a in store.get_artifacts_by_type("Model") if "/SanTrainer/" in a.uri], key=lambda a: a.id)
    assert san_model.custom_properties["policy_suppress"].string_value == "Male,Young"
    serving = os.path.join(san_model.uri, "Format-Serving")
    assert json.loads(open(os.path.join(serving, "sanitizer_metadata.json")).read())["policy"]["name"] == "gender-age"
    faces = tf.random.uniform((2, 32, 32, 1), seed=1)
    assert tf.saved_model.load(serving).signatures["sanitize_only"](faces=faces)["sanitized"].shape == (2, 32, 32, 1)


def test_deidentify_suppresses_identity_judged_by_every_matcher_an_adaptive_one_and_linkability(tmp_path):
    """--policy deidentify end to end on tiny data: the sanitizer trains against the identity
    critic, the evaluator adds an adaptive matcher and the linkability of sanitized photos, the gate
    checks matcher failure instead of TMR drops, the attributes are gated as kept."""
    opened = ["--max-original-gender-error", "1", "--max-preserved-drop", "1", "--min-original-tmr", "0",
              "--max-identity-tmr", "1", "--min-ssim-identity", "0"]
    config = _run(str(tmp_path), [*opened, "--policy", "deidentify"])
    outcome = run_outcome(config)
    metrics = outcome["metrics"]
    assert metrics["privacy_policy"] == {"name": "deidentify", "suppress": ["identity"],
                                         "preserve": ["Smiling", "Eyeglasses", "Male", "Young"]}
    test_split = metrics["splits"]["test"]
    matchers = {"fisherfaces", "resnet_matcher_cnn", "adaptive_resnet_matcher_cnn"}
    assert set(test_split["matching"]) == matchers and set(test_split["linkability"]) == matchers
    assert metrics["judges"]["adaptive_resnet_matcher_cnn"]["kind"] == "adaptive_matcher"
    assert test_split["adaptive"] == {}  # gender is kept: no adaptive gender attacker is trained
    for values in test_split["linkability"].values():
        low, high = values["tmr_at_fmr_ci"]["0.01"]
        assert 0.0 <= low <= values["tmr_at_fmr"]["0.01"] <= high <= 1.0
    assert {role["role"] for role in test_split["attributes"].values()} == {"preserved"}
    assert set(test_split["attributes"]) == {"Smiling", "Eyeglasses", "Male", "Young"}
    thresholds = [check["threshold"] for check in metrics["gate_checks"]]
    assert thresholds.count("max_identity_tmr") == 3 and thresholds.count("min_original_tmr") == 3
    assert "min_ssim_identity" in thresholds and "max_tmr_drop_op" not in thresholds
    assert "min_op_gender_error" not in thresholds  # nothing but identity is suppressed
    assert metrics["blessed"] and outcome.get("pushed_model")
    page = open(metrics["report"]["html"]).read()
    assert "Linkability (identity suppressed)" in page and "measured trade-off" not in page
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    san_model = max([a for a in store.get_artifacts_by_type("Model") if "/SanTrainer/" in a.uri], key=lambda a: a.id)
    assert san_model.custom_properties["policy_suppress"].string_value == "identity"
    # By default the faces are de-identified by k-Same replacement, without a trained editor.
    metadata = json.loads(open(os.path.join(san_model.uri, "Format-Serving", "sanitizer_metadata.json")).read())
    assert metadata["training_config"]["identity_replacement"] == "ksame"
    assert metadata["training_config"]["replacement_editor"] is False
    assert metrics["judges"]["adaptive_resnet_matcher_cnn"]["description"].startswith(
        "ADAPTIVE matcher (identity suppressed): the residual CNN matcher judge fine-tuned")


def test_obfuscate_encrypts_gates_matcher_failure_and_measures_the_decryption(tmp_path):
    """--policy obfuscate end to end on tiny data: the SanTrainer trains the DDM scheme (encryption,
    decryption, discriminator), the export carries the decryption signature, the evaluator measures
    what a second pass gives back, the gate checks matcher failure alone and the report says what
    the policy keeps."""
    from trainer.export import DECRYPT_SIGNATURE

    opened = ["--min-original-tmr", "0", "--max-identity-tmr", "1"]
    config = _run(str(tmp_path), [*opened, "--policy", "obfuscate"])
    outcome = run_outcome(config)
    metrics = outcome["metrics"]
    assert metrics["privacy_policy"] == {"name": "obfuscate", "suppress": ["identity"], "preserve": []}
    test_split = metrics["splits"]["test"]
    matchers = {"fisherfaces", "resnet_matcher_cnn", "adaptive_resnet_matcher_cnn"}
    assert set(test_split["matching"]) == matchers and set(test_split["linkability"]) == matchers
    assert test_split["attributes"] == {} and test_split["adaptive"] == {}
    assert 0.0 < test_split["decryption"]["ssim"] <= 1.0 and test_split["decryption"]["psnr"] > 0
    assert {check["threshold"] for check in metrics["gate_checks"]} == {"min_original_tmr", "max_identity_tmr"}
    assert "nothing is kept but the image format" in metrics["kept"]
    assert metrics["blessed"] and outcome.get("pushed_model")
    assert DECRYPT_SIGNATURE in tf.saved_model.load(outcome["pushed_model"]).signatures
    page = open(metrics["report"]["html"]).read()
    assert "as private as a key" in page and "decrypted: the model applied to sanitized X&#x27; again" in page
    grid = tf.io.decode_png(open(metrics["example_grid"], "rb").read())
    assert grid.shape[0] == 5 * 32  # original, SM, NT, sanitized and the decrypted row
