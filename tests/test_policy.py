"""The privacy policy: presets, overrides, refusals that name the culprit, and where it is recorded."""

import json
import os

import pytest

from components.celeba.layout import CELEBA_ATTRIBUTE_NAMES
from trainer.config import TrainingConfig
from trainer.policy import PRESETS, PolicyError, PrivacyPolicy, split_names

NAMES = list(CELEBA_ATTRIBUTE_NAMES)


def test_presets_and_overrides():
    assert PrivacyPolicy() == PrivacyPolicy(("Male",), ("identity",))
    assert PrivacyPolicy().name == "gender"
    policy = PrivacyPolicy.from_arguments("gender-age")
    assert (policy.suppress, policy.preserve, policy.name) == (("Male", "Young"), ("identity", "Smiling"), "gender-age")
    assert policy.attributes == ("Male", "Young", "Smiling")
    # explicit lists replace the preset's, each on its own
    policy = PrivacyPolicy.from_arguments("gender-age", preserve="identity, Eyeglasses")
    assert (policy.suppress, policy.preserve, policy.name) == (("Male", "Young"), ("identity", "Eyeglasses"), "custom")
    assert PrivacyPolicy.from_arguments(None, suppress="Young", preserve="Male,identity").name == "age"  # order-free
    assert split_names(" Male, ,Young ") == ("Male", "Young") and split_names(None) == ()
    with pytest.raises(PolicyError, match="'everything' is not a preset"):
        PrivacyPolicy.from_arguments("everything")


def test_round_trip_through_metadata_and_custom_config():
    policy = PrivacyPolicy(("Male", "Young"), ("identity", "Smiling"))
    assert PrivacyPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert PrivacyPolicy.from_dict(None) == PrivacyPolicy()  # models exported before policies: gender
    config = TrainingConfig(policy=policy)
    again = TrainingConfig.from_custom_config(json.loads(json.dumps(config.to_custom_config())))
    assert again.policy == policy and again == config


@pytest.mark.parametrize("suppress, preserve, message", [
    (("Mle",), ("identity",), "--suppress 'Mle': unknown attribute; the data's attributes are: 5_o_Clock_Shadow"),
    (("male",), ("identity",), "did you mean 'Male'"),
    (("Male",), ("identity", "Smile"), "--preserve 'Smile': unknown attribute"),
    (("Male", "Young"), ("identity", "Young"), "Young is both suppressed and preserved"),
    (("Male", "Male"), ("identity",), "--suppress names Male more than once"),
    ((), ("identity",), "suppresses nothing"),
    (("identity",), ("identity", "Male"), "identity is both suppressed and preserved"),
])
def test_bad_policies_are_refused_naming_the_culprit(suppress, preserve, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PrivacyPolicy(suppress, preserve).check_names(NAMES)


def test_deidentify_suppresses_identity_and_keeps_the_attributes():
    policy = PrivacyPolicy.from_arguments("deidentify")
    assert policy.suppress == ("identity",) and policy.preserve == ("Smiling", "Eyeglasses", "Male", "Young")
    assert policy.suppresses_identity and not PrivacyPolicy().suppresses_identity
    assert policy.attributes == ("Smiling", "Eyeglasses", "Male", "Young") and policy.other_suppressed == ()
    policy.check_names(NAMES)
    assert PrivacyPolicy.from_arguments("deidentify", preserve="Smiling").name == "custom"


def test_obfuscate_suppresses_identity_and_keeps_nothing():
    policy = PrivacyPolicy.from_arguments("obfuscate")
    assert policy.suppress == ("identity",) and policy.preserve == () and policy.attributes == ()
    assert policy.suppresses_identity and policy.obfuscates and policy.name == "obfuscate"
    assert "preserve nothing" in policy.describe()
    assert PrivacyPolicy.from_arguments(suppress="identity", preserve="") == policy  # the same, spelt out
    assert not PrivacyPolicy.from_arguments("deidentify").obfuscates and not PrivacyPolicy().obfuscates
    assert not PrivacyPolicy(("identity", "Male"), ()).obfuscates  # the FaDeNet terms, with a gender target
    policy.check_names(NAMES)


def test_names_are_checked_against_the_data_header():
    PrivacyPolicy(("Male",), ("identity",)).check_names(["Male", "Young"])
    with pytest.raises(PolicyError, match="'Smiling': unknown attribute; the data's attributes are: Male, Young"):
        PrivacyPolicy(("Male",), ("identity", "Smiling")).check_names(["Male", "Young"])


def test_what_the_chosen_sanitizer_cannot_train_is_refused_before_training():
    for name in PRESETS:
        PrivacyPolicy.from_arguments(name).check_trainable("residual")
    PrivacyPolicy().check_trainable("paper")
    with pytest.raises(PolicyError, match="--architecture paper hides gender only"):
        PrivacyPolicy.from_arguments("age").check_trainable("paper")
    with pytest.raises(PolicyError, match="--architecture paper hides gender only"):
        PrivacyPolicy.from_arguments("deidentify").check_trainable("paper")
    many = PrivacyPolicy(tuple(CELEBA_ATTRIBUTE_NAMES[:9]), ("identity",))
    with pytest.raises(PolicyError, match="at most 8 attributes can be suppressed"):
        many.check_trainable("residual")


def test_pipeline_cli_refuses_bad_and_untrainable_policies():
    from pipelines.run import check_policy_against_data, config_from_args

    assert config_from_args([]).training.policy == PrivacyPolicy()
    assert config_from_args(["--policy", "gender"]).training.policy.name == "gender"
    with pytest.raises(SystemExit, match="privacy policy: --suppress 'Mle': unknown attribute"):
        config_from_args(["--suppress", "Mle"])
    with pytest.raises(SystemExit, match="privacy policy: Male is both suppressed and preserved"):
        config_from_args(["--preserve", "identity,Male"])
    assert config_from_args(["--policy", "gender-age"]).training.policy.suppress == ("Male", "Young")
    with pytest.raises(SystemExit, match="--architecture paper hides gender only"):
        config_from_args(["--policy", "age", "--architecture", "paper"])
    with pytest.raises(SystemExit):  # argparse: not a preset
        config_from_args(["--policy", "everything"])


def test_policy_is_checked_against_the_data_header(tmp_path):
    from pipelines.run import check_policy_against_data, config_from_args

    header = "2\nMale Smiling\n000001.jpg 1 -1\n000002.jpg -1 1\n"
    (tmp_path / "list_attr_celeba.txt").write_text(header)
    config = config_from_args(["--data", str(tmp_path)])
    check_policy_against_data(config)  # Male is there
    bad = config_from_args(["--data", str(tmp_path)])
    bad.training = type(bad.training)(policy=PrivacyPolicy(("Male",), ("identity", "Young")))
    with pytest.raises(SystemExit, match=f"against the data in {tmp_path}: --preserve 'Young': unknown attribute"):
        check_policy_against_data(bad)
    missing = config_from_args(["--data", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="cannot read the attribute header"):
        check_policy_against_data(missing)


def _statistics(tmp_path, shares: dict, count: int = 1000) -> str:
    """A StatisticsGen-like artifact folder with one train split: {feature name: share of ones}."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = statistics.datasets.add(num_examples=count)
    for name, share in shares.items():
        feature = dataset.features.add()
        feature.path.step.append(name)
        feature.num_stats.common_stats.num_non_missing = count
        feature.num_stats.mean = share
    os.makedirs(tmp_path / "Split-train")
    (tmp_path / "Split-train" / "FeatureStats.pb").write_bytes(statistics.SerializeToString())
    return str(tmp_path)


def test_validation_gate_refuses_a_policy_the_data_cannot_support(tmp_path):
    from components.validation.gate import DataValidationError, check_policy_support

    uri = _statistics(tmp_path, {"male": 0.4, "attr_young": 0.73, "attr_bald": 0.004, "attr_wearing_hat": 1.0})
    check_policy_support(uri, ["Male", "Young"])
    check_policy_support(uri, [])
    with pytest.raises(DataValidationError) as error:
        check_policy_support(uri, ["Male", "Bald", "Wearing_Hat"])
    message = str(error.value)
    assert "Bald: 0.4% of 1000 train faces" in message and "Wearing_Hat: 100.0% of 1000" in message
    assert "Male" not in message.split("\n", 1)[1].split("Remove")[0]  # only the attributes that fail
    with pytest.raises(DataValidationError, match="'Smiling': the examples have no feature 'attr_smiling'"):
        check_policy_support(uri, ["Smiling"])


def test_san_trainer_records_the_policy_in_ml_metadata():
    from tfx.types import standard_artifacts

    from components.training.san_trainer import record_model_facts

    model = standard_artifacts.Model()
    record_model_facts(model, {"architecture": "residual", "policy": PrivacyPolicy().to_dict()})
    assert json.loads(model.get_string_custom_property("privacy_policy")) == {
        "name": "gender", "suppress": ["Male"], "preserve": ["identity"]}
    assert (model.get_string_custom_property("policy_suppress"), model.get_string_custom_property("policy_preserve"),
            model.get_string_custom_property("architecture")) == ("Male", "identity", "residual")


def test_bulk_job_reads_the_models_policy(tmp_path):
    from pipelines.sanitize.job import check_kept_fields
    from pipelines.sanitize.config import SanitizeJobConfig
    from pipelines.sanitize.model import model_facts
    from bulk_helpers import export_small_model

    age = {"name": "age", "suppress": ["Young"], "preserve": ["identity", "Male"]}
    facts = model_facts(export_small_model(tmp_path / "1", policy=age))
    assert facts.suppressed == ("Young",) and json.loads(facts.policy) == age
    settings = SanitizeJobConfig(input="in", output="out", keep_fields=("young", "Male"))
    with pytest.raises(SystemExit, match="suppresses Young"):
        check_kept_fields(settings, facts.suppressed)
    check_kept_fields(SanitizeJobConfig(input="in", output="out", keep_fields=("Male",)), facts.suppressed)
    # De-identification: a field naming the person is refused like an attribute's.
    for field in ("identity", "person_id", "Name"):
        with pytest.raises(SystemExit, match=f"--keep-fields {field}: the model's privacy policy suppresses identity"):
            check_kept_fields(SanitizeJobConfig(input="in", output="out", keep_fields=(field,)), ("identity",))
    check_kept_fields(SanitizeJobConfig(input="in", output="out", keep_fields=("Smiling",)), ("identity",))
