"""The release gate: every threshold of GateConfig checked against one split's metrics.

A check names the threshold, the judge or output it was applied to, the measured value, the
limit and the margin (positive = held by that much, negative = missed by that much).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from components.evaluation.config import GateConfig
from trainer.policy import GENDER, PrivacyPolicy

OUTPUT_LABELS = {"original": "originals", "same": "X'_SM", "neutral": "X'_NT", "sanitized": "sanitized X'"}


@dataclass
class GateCheck:
    threshold: str  # the GateConfig field
    subject: str  # e.g. "gender error of eigenfaces_svm on X'_OP"
    value: float
    limit: float
    at_least: bool  # True: value must be >= limit; False: value must be <= limit

    @property
    def margin(self) -> float:
        return self.value - self.limit if self.at_least else self.limit - self.value

    @property
    def passed(self) -> bool:
        return self.margin >= 0

    def message(self) -> str:
        relation = ">=" if self.at_least else "<="
        verdict = "holds" if self.passed else "FAILS"
        by = f"{'short' if self.at_least else 'over'} by {-self.margin:.3f}" if not self.passed else \
            f"margin {self.margin:.3f}"
        return (f"{self.subject} {self.value:.3f} {verdict}: must be {relation} {self.threshold} {self.limit:.3f} "
                f"({by})")

    def to_json(self) -> dict:
        return {**asdict(self), "margin": self.margin, "passed": self.passed, "message": self.message()}


def _attribute_checks(attribute: str, role: str, judges: dict, gate: GateConfig) -> list[GateCheck]:
    """A policy attribute other than a suppressed Male. Suppressed: each judge works on the
    originals (else its error on the sanitized faces says nothing) and errs on the sanitized ones.
    Preserved: at least one judge reads it on the originals (else nothing could tell whether it was
    kept), and every judge's accuracy on the sanitized faces stays within max_preserved_drop of its
    accuracy on the originals; a judge that reads the attribute poorly on originals is still held
    to its own accuracy (its figures are in the report), but does not refuse the model by itself."""
    checks = []
    errors = {judge: {name: values["error_rate"] for name, values in outputs.items()}
              for judge, outputs in judges.items()}
    for judge, error in errors.items():
        if role == "suppressed":
            checks.append(GateCheck("max_original_gender_error", f"{attribute} error of {judge} on originals",
                                    error["original"], gate.max_original_gender_error, at_least=False))
            checks.append(GateCheck("min_op_gender_error", f"{attribute} error of {judge} on sanitized X' "
                                    "(suppressed)", error["sanitized"], gate.min_op_gender_error, at_least=True))
        else:
            checks.append(GateCheck("max_preserved_drop", f"{attribute} accuracy drop of {judge}, sanitized X' vs "
                                    "originals (preserved)", error["sanitized"] - error["original"],
                                    gate.max_preserved_drop, at_least=False))
    if role != "suppressed" and errors:
        best = min(errors, key=lambda judge: errors[judge]["original"])
        checks.insert(0, GateCheck("max_original_gender_error", f"{attribute} error on originals of its best judge, "
                                   f"{best} (a preserved attribute must be read by at least one judge)",
                                   errors[best]["original"], gate.max_original_gender_error, at_least=False))
    return checks


def gate_checks(split_metrics: dict, gate: GateConfig, policy: PrivacyPolicy | None = None) -> list[GateCheck]:
    """split_metrics: {"gender": {judge: {output: {"error_rate"}}}, "matching": {judge: {output:
    {"tmr_at_fmr": {"0.01": tmr}}}}, "image_quality": {output: {"ssim"}}, "attributes": {name:
    {"role", "judges"}}} (see evaluator.py). `policy` (default: gender) decides which attributes
    must be hidden and which kept."""
    policy = policy or PrivacyPolicy()
    checks = []
    for judge, outputs in split_metrics["gender"].items() if GENDER in policy.suppress else ():
        error = {name: values["error_rate"] for name, values in outputs.items()}
        checks += [
            GateCheck("min_op_gender_error", f"gender error of {judge} on sanitized X'", error["sanitized"],
                      gate.min_op_gender_error, at_least=True),
            GateCheck("max_original_gender_error", f"gender error of {judge} on originals", error["original"],
                      gate.max_original_gender_error, at_least=False),
            GateCheck("max_sm_gender_error", f"gender error of {judge} on X'_SM", error["same"],
                      gate.max_sm_gender_error, at_least=False),
        ]
    if GENDER in policy.preserve:
        checks += _attribute_checks("gender", "preserved", split_metrics["gender"], gate)
    for attribute in policy.other_attributes:
        section = split_metrics.get("attributes", {}).get(attribute)
        if section is None:
            raise ValueError(f"the privacy policy names {attribute} but the evaluation has no section for it")
        checks += _attribute_checks(attribute, section["role"], section["judges"], gate)
    key = f"{gate.tmr_fmr:g}"
    for judge, outputs in split_metrics["matching"].items():
        if key not in outputs["original"]["tmr_at_fmr"]:
            raise ValueError(f"the gate reads TMR at FMR {key} (GateConfig.tmr_fmr) but the evaluator measured only "
                             f"{list(outputs['original']['tmr_at_fmr'])}; add it to EvaluationConfig.fmr_targets")
        original = outputs["original"]["tmr_at_fmr"][key]
        if policy.suppresses_identity:  # de-identification: the matcher works on originals, fails on X'
            checks += [
                GateCheck("min_original_tmr", f"TMR at FMR {key} of {judge}, originals", original,
                          gate.min_original_tmr, at_least=True),
                GateCheck("max_identity_tmr", f"TMR at FMR {key} of {judge}, sanitized X' probes vs the original "
                          "gallery (identity suppressed)", outputs["sanitized"]["tmr_at_fmr"][key],
                          gate.max_identity_tmr, at_least=False)]
            continue
        for output, threshold, limit in (("same", "max_tmr_drop_sm", gate.max_tmr_drop_sm),
                                         ("sanitized", "max_tmr_drop_op", gate.max_tmr_drop_op)):
            drop = original - outputs[output]["tmr_at_fmr"][key]
            checks.append(GateCheck(threshold, f"TMR drop at FMR {key} of {judge}, {OUTPUT_LABELS[output]} probes vs "
                                    f"originals", drop, limit, at_least=False))
    if gate.max_adaptive_gap is not None and GENDER in policy.suppress:
        checks += _adaptive_checks(split_metrics, gate.max_adaptive_gap)
    ssim = split_metrics["image_quality"]["sanitized"]["ssim"]
    # Obfuscation promises nothing of the face's appearance (what_is_kept): no SSIM check.
    if policy.suppresses_identity and not policy.obfuscates:
        checks.append(GateCheck("min_ssim_identity", "mean SSIM of sanitized X' vs original (identity suppressed)",
                                ssim, gate.min_ssim_identity, at_least=True))
    elif not policy.suppresses_identity:
        checks.append(GateCheck("min_ssim_op", "mean SSIM of sanitized X' vs original", ssim, gate.min_ssim_op,
                                at_least=True))
    return checks


def what_is_kept(policy: PrivacyPolicy, split_metrics: dict, image_size: int) -> str:
    """What a policy's sanitized faces keep, in words for the report and metrics.json."""
    size = f"{image_size}x{image_size} gray aligned faces in, the same format out"
    if policy.obfuscates:
        decryption = split_metrics.get("decryption")
        undo = (f"a second pass of the same model decrypts the face (mean SSIM {decryption['ssim']:.3f}, PSNR "
                f"{decryption['psnr']:.1f} dB against the original on this split)" if decryption else
                "a second pass of the same model is trained to decrypt the face")
        return (f"Policy {policy.describe()}: nothing is kept but the image format ({size}); the gate checks only "
                f"that matching fails. Whoever holds the model can undo it: {undo}. Keep the pushed model as "
                "private as a key, and publish only its outputs.")
    kept = ", ".join(policy.preserve) or "nothing"
    return (f"Policy {policy.describe()}: kept {kept} (each checked by the gate) and the image format ({size}).")


def _adaptive_checks(split_metrics: dict, max_gap: float) -> list[GateCheck]:
    """Every adaptive attacker's error on the sanitized faces >= every identity-leakage bound - max_gap."""
    bounds = {judge: outputs["original"]["error_rate"]
              for judge, outputs in split_metrics.get("identity_leakage", {}).items()}
    attackers = {judge: outputs["sanitized"]["error_rate"] for judge, outputs in split_metrics.get("adaptive", {}).items()}
    if not attackers or not bounds:
        missing = "adaptive attacker" if not attackers else "identity-leakage bound"
        raise ValueError(f"the gate's max_adaptive_gap needs an {missing} in the evaluation: turn on "
                         "EvaluationConfig.adaptive_attacker and use judges with a bound (synthetic), or set "
                         "GateConfig.max_adaptive_gap to None")
    return [GateCheck("max_adaptive_gap", f"gender error of ADAPTIVE {attacker} on sanitized X' (bound {bound_name} "
                      f"{bound:.3f} minus the gap)", error, bound - max_gap, at_least=True)
            for attacker, error in attackers.items() for bound_name, bound in bounds.items()]


def decide_blessing(split_metrics: dict, gate: GateConfig,
                    policy: PrivacyPolicy | None = None) -> tuple[bool, list[str], list[GateCheck]]:
    """(blessed, messages of the failed checks, all checks)."""
    checks = gate_checks(split_metrics, gate, policy)
    failures = [check.message() for check in checks if not check.passed]
    return not failures, failures, checks
