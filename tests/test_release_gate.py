"""The release gate blesses only when every threshold holds for every judge, and names what failed."""

import pytest

from components.evaluation.gate import decide_blessing
from pipelines.config import GateConfig

GATE = GateConfig(min_op_gender_error=0.35, max_original_gender_error=0.25, max_sm_gender_error=0.35,
                  max_tmr_drop_sm=0.10, max_tmr_drop_op=0.20, tmr_fmr=0.01, min_ssim_op=0.4, max_adaptive_gap=None)


def _gender(original, same, opposite):
    return {name: {"error_rate": value} for name, value in
            (("original", original), ("same", same), ("neutral", 0.5), ("sanitized", opposite))}


def _matching(original, same, opposite):
    return {name: {"tmr_at_fmr": {"0.01": value, "0.001": value / 2}} for name, value in
            (("original", original), ("same", same), ("neutral", 0.0), ("sanitized", opposite))}


def _metrics(**changes):
    metrics = {
        "gender": {"judge_a": _gender(0.05, 0.09, 0.89), "judge_b": _gender(0.10, 0.20, 0.50)},
        "matching": {"matcher_a": _matching(0.90, 0.85, 0.75)},
        "image_quality": {"same": {"ssim": 0.5}, "neutral": {"ssim": 0.5}, "sanitized": {"ssim": 0.5}},
    }
    for key, value in changes.items():
        group, name = key.split("__")
        metrics[group][name] = value
    return metrics


def test_blesses_when_every_threshold_holds():
    blessed, failures, checks = decide_blessing(_metrics(), GATE)
    assert blessed and failures == []
    # 3 gender thresholds x 2 judges + 2 TMR drops x 1 matcher + SSIM
    assert len(checks) == 9 and all(check.passed for check in checks)


def test_one_judge_failing_refuses_and_names_judge_threshold_and_shortfall():
    blessed, failures, _ = decide_blessing(_metrics(gender__judge_b=_gender(0.10, 0.20, 0.30)), GATE)
    assert not blessed
    assert failures == ["gender error of judge_b on sanitized X' 0.300 FAILS: must be >= min_op_gender_error 0.350 "
                        "(short by 0.050)"]


def test_original_and_sm_errors_tmr_drops_and_ssim_are_gated():
    metrics = _metrics(gender__judge_a=_gender(0.40, 0.50, 0.89), matching__matcher_a=_matching(0.90, 0.70, 0.60))
    metrics["image_quality"]["sanitized"]["ssim"] = 0.3
    blessed, failures, checks = decide_blessing(metrics, GATE)
    assert not blessed and len(failures) == 5
    text = "\n".join(failures)
    assert "gender error of judge_a on originals 0.400 FAILS: must be <= max_original_gender_error 0.250 " \
           "(over by 0.150)" in text
    assert "max_sm_gender_error 0.350 (over by 0.150)" in text
    assert "TMR drop at FMR 0.01 of matcher_a, X'_SM probes vs originals 0.200 FAILS: must be <= " \
           "max_tmr_drop_sm 0.100 (over by 0.100)" in text
    assert "max_tmr_drop_op 0.200 (over by 0.100)" in text
    assert "mean SSIM of sanitized X' vs original 0.300 FAILS: must be >= min_ssim_op 0.400 (short by 0.100)" in text
    assert {check.threshold for check in checks if not check.passed} == {
        "max_original_gender_error", "max_sm_gender_error", "max_tmr_drop_sm", "max_tmr_drop_op", "min_ssim_op"}


def test_a_value_exactly_at_the_limit_holds():
    blessed, _, _ = decide_blessing(_metrics(gender__judge_b=_gender(0.25, 0.35, 0.35)), GATE)
    assert blessed


def test_gate_fmr_must_have_been_measured():
    gate = GateConfig(tmr_fmr=0.05)
    with pytest.raises(ValueError, match="add it to EvaluationConfig.fmr_targets"):
        decide_blessing(_metrics(), gate)


def _with_attackers(metrics, adaptive_error, bound_error):
    metrics["adaptive"] = {"adaptive_cnn": {"sanitized": {"error_rate": adaptive_error}}}
    metrics["identity_leakage"] = {"leakage": {"original": {"error_rate": bound_error}}}
    return metrics


def test_adaptive_attacker_must_stay_near_the_identity_leakage_bound():
    gate = GateConfig(**{**GATE.__dict__, "max_adaptive_gap": 0.04})
    blessed, _, checks = decide_blessing(_with_attackers(_metrics(), adaptive_error=0.08, bound_error=0.11), gate)
    assert blessed and [check.threshold for check in checks].count("max_adaptive_gap") == 1
    # An attacker who learned to invert a deterministic flip reads gender far better than identity allows.
    blessed, failures, _ = decide_blessing(_with_attackers(_metrics(), adaptive_error=0.03, bound_error=0.11), gate)
    assert not blessed
    assert failures == ["gender error of ADAPTIVE adaptive_cnn on sanitized X' (bound leakage 0.110 minus the gap) "
                        "0.030 FAILS: must be >= max_adaptive_gap 0.070 (short by 0.040)"]


def test_adaptive_check_without_an_attacker_is_an_error_not_a_pass():
    gate = GateConfig(**{**GATE.__dict__, "max_adaptive_gap": 0.04})
    with pytest.raises(ValueError, match="needs an adaptive attacker"):
        decide_blessing(_metrics(), gate)


def _attribute(original, sanitized, role):
    return {"role": role, "judges": {"attribute_judge": {"original": {"error_rate": original},
                                                         "sanitized": {"error_rate": sanitized}}}}


def test_policy_gates_each_suppressed_and_preserved_attribute():
    from trainer.policy import PrivacyPolicy

    policy = PrivacyPolicy(("Male", "Young"), ("identity", "Smiling"))
    metrics = _metrics()
    metrics["attributes"] = {"Young": _attribute(0.12, 0.45, "suppressed"), "Smiling": _attribute(0.10, 0.13, "preserved")}
    blessed, failures, checks = decide_blessing(metrics, GATE, policy)
    assert blessed, failures
    assert len(checks) == 9 + 2 * 2  # each attribute: works on originals, and hidden / kept
    metrics["attributes"] = {"Young": _attribute(0.12, 0.30, "suppressed"), "Smiling": _attribute(0.10, 0.18, "preserved")}
    blessed, failures, _ = decide_blessing(metrics, GATE, policy)
    assert not blessed and failures == [
        "Young error of attribute_judge on sanitized X' (suppressed) 0.300 FAILS: must be >= min_op_gender_error "
        "0.350 (short by 0.050)",
        "Smiling accuracy drop of attribute_judge, sanitized X' vs originals (preserved) 0.080 FAILS: must be <= "
        "max_preserved_drop 0.050 (over by 0.030)"]
    del metrics["attributes"]["Smiling"]
    with pytest.raises(ValueError, match="names Smiling but the evaluation has no section"):
        decide_blessing(metrics, GATE, policy)


def test_a_policy_that_preserves_gender_gates_gender_as_kept():
    from trainer.policy import PrivacyPolicy

    policy = PrivacyPolicy(("Young",), ("identity", "Male"))
    metrics = _metrics()  # judge_a reads 89% error on sanitized faces: gender was flipped, not kept
    metrics["attributes"] = {"Young": _attribute(0.12, 0.45, "suppressed")}
    blessed, failures, checks = decide_blessing(metrics, GATE, policy)
    assert not blessed
    assert "gender accuracy drop of judge_a, sanitized X' vs originals (preserved) 0.840 FAILS" in failures[0]
    assert not any(check.threshold == "min_op_gender_error" and "gender error" in check.subject for check in checks)


def test_a_policy_that_suppresses_identity_gates_matcher_failure_instead_of_tmr_drops():
    """De-identification: every matcher judge works on originals and fails on sanitized probes;
    SSIM has its own floor; the TMR-drop checks do not apply."""
    from trainer.policy import PrivacyPolicy

    policy = PrivacyPolicy(("identity",), ("Male",))
    gate = GateConfig(max_original_gender_error=0.25, max_preserved_drop=0.05, tmr_fmr=0.01, min_original_tmr=0.88,
                      max_identity_tmr=0.07, min_ssim_identity=0.58, max_adaptive_gap=0.04)
    metrics = _metrics(gender__judge_a=_gender(0.05, 0.07, 0.07), gender__judge_b=_gender(0.10, 0.12, 0.12),
                       matching__matcher_a=_matching(0.95, 0.03, 0.03), matching__matcher_b=_matching(0.90, 0.05, 0.05))
    metrics["image_quality"]["sanitized"]["ssim"] = 0.62
    blessed, failures, checks = decide_blessing(metrics, gate, policy)
    assert blessed, failures
    assert {check.threshold for check in checks} == {"max_original_gender_error", "max_preserved_drop",
                                                       "min_original_tmr", "max_identity_tmr", "min_ssim_identity"}
    assert len([check for check in checks if check.threshold == "max_identity_tmr"]) == 2  # one per matcher judge
    metrics["matching"]["matcher_b"] = _matching(0.85, 0.20, 0.20)  # still recognises; weak on originals
    metrics["image_quality"]["sanitized"]["ssim"] = 0.5
    blessed, failures, _ = decide_blessing(metrics, gate, policy)
    assert not blessed and failures == [
        "TMR at FMR 0.01 of matcher_b, originals 0.850 FAILS: must be >= min_original_tmr 0.880 (short by 0.030)",
        "TMR at FMR 0.01 of matcher_b, sanitized X' probes vs the original gallery (identity suppressed) 0.200 FAILS: "
        "must be <= max_identity_tmr 0.070 (over by 0.130)",
        "mean SSIM of sanitized X' vs original (identity suppressed) 0.500 FAILS: must be >= min_ssim_identity 0.580 "
        "(short by 0.080)"]


def test_obfuscation_gates_matcher_failure_only_and_says_what_it_keeps():
    """--policy obfuscate keeps nothing but the image format: no SSIM floor, no attribute checks;
    what_is_kept says so, and that a second pass of the model decrypts (with the measured SSIM)."""
    from components.evaluation.gate import what_is_kept
    from trainer.policy import PrivacyPolicy

    policy = PrivacyPolicy.from_arguments("obfuscate")
    gate = GateConfig(tmr_fmr=0.01, min_original_tmr=0.88, max_identity_tmr=0.07, min_ssim_identity=0.58,
                      max_adaptive_gap=0.04)
    metrics = _metrics(matching__matcher_a=_matching(0.95, 0.03, 0.03))
    metrics["image_quality"]["sanitized"]["ssim"] = 0.05  # a scrambled face is what obfuscation is for
    metrics["decryption"] = {"ssim": 0.912, "psnr": 27.25}
    blessed, failures, checks = decide_blessing(metrics, gate, policy)
    assert blessed, failures
    assert [check.threshold for check in checks] == ["min_original_tmr", "max_identity_tmr"]
    metrics["matching"]["matcher_a"] = _matching(0.95, 0.40, 0.40)
    assert not decide_blessing(metrics, gate, policy)[0]
    kept = what_is_kept(policy, metrics, 64)
    assert "nothing is kept but the image format (64x64 gray aligned faces in" in kept
    assert "decrypts the face (mean SSIM 0.912, PSNR 27.2 dB" in kept and "as private as a key" in kept
    deidentify = what_is_kept(PrivacyPolicy.from_arguments("deidentify"), metrics, 64)
    assert "kept Smiling, Eyeglasses, Male, Young" in deidentify and "decrypt" not in deidentify


def test_a_preserved_attribute_needs_one_judge_that_reads_it_and_holds_every_judge_to_its_own_accuracy():
    """Kept: a judge that reads Smiling poorly on originals (40% error) does not refuse the model if
    another reads it (10%) and neither loses more than max_preserved_drop; it still refuses when
    its own accuracy drops, and the model is refused when no judge reads the attribute."""
    from trainer.policy import PrivacyPolicy

    def smiling(*judges):
        return {"role": "preserved", "judges": {name: {"original": {"error_rate": original},
                                                       "sanitized": {"error_rate": sanitized}}
                                                for name, original, sanitized in judges}}

    policy = PrivacyPolicy(("Male",), ("identity", "Smiling"))
    metrics = _metrics()
    metrics["attributes"] = {"Smiling": smiling(("cnn", 0.10, 0.12), ("pixels", 0.40, 0.42))}
    blessed, failures, checks = decide_blessing(metrics, GATE, policy)
    assert blessed, failures
    read = [check for check in checks if check.subject.startswith("Smiling error on originals")]
    assert len(read) == 1 and read[0].value == 0.10 and "best judge, cnn" in read[0].subject
    metrics["attributes"] = {"Smiling": smiling(("cnn", 0.10, 0.12), ("pixels", 0.40, 0.48))}
    blessed, failures, _ = decide_blessing(metrics, GATE, policy)
    assert not blessed and failures == ["Smiling accuracy drop of pixels, sanitized X' vs originals (preserved) "
                                        "0.080 FAILS: must be <= max_preserved_drop 0.050 (over by 0.030)"]
    metrics["attributes"] = {"Smiling": smiling(("cnn", 0.30, 0.31), ("pixels", 0.40, 0.40))}
    blessed, failures, _ = decide_blessing(metrics, GATE, policy)
    assert not blessed and failures == [
        "Smiling error on originals of its best judge, cnn (a preserved attribute must be read by at least one "
        "judge) 0.300 FAILS: must be <= max_original_gender_error 0.250 (over by 0.050)"]
