"""The trainer's configuration: hyper-parameters of the auxiliary networks and the SAN.

Owned by this layer; `pipelines/config.py` composes it into the pipeline's one `Config`, and it
reaches every `run_fn` through the Trainer's `custom_config` (`to_custom_config` /
`from_custom_config`), as the TFX templates pass their hyper-parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainer.policy import PrivacyPolicy

# The sanitizer's architecture (trainer/models.py). "residual" (default): a U-Net that predicts a
# bounded change to the input face towards a target gender drawn per face independently of the
# true one, trained against an ensemble of auxiliary gender classifiers. "paper": the SAN of
# Mirjalili et al. (ICB 2018) as the public code builds it (autoencoder + proto-combiner, X'_OP).
ARCHITECTURES = ("residual", "paper")

# TrainingConfig.training_precision: Keras dtype policies the sanitizer may train under
# (trainer/distribution.py resolves "auto": mixed_float16 on GPUs, mixed_bfloat16 on a CPU with
# native bfloat16 arithmetic (AVX-512 BF16 or AMX), float32 elsewhere: on other CPUs bfloat16 is
# emulated and slower than float32).
TRAINING_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

# TrainingConfig.identity_critics: what a policy that suppresses identity trains against.
IDENTITY_CRITICS = ("matcher", "pixels")
# TrainingConfig.identity_replacement: how a policy that suppresses identity replaces it (k-Same or none);
# the group of every preserved attribute combination is one mean face and its donors (2^A of them).
IDENTITY_REPLACEMENTS = ("ksame", "none")
MAX_REPLACEMENT_ATTRIBUTES = 6

# The extra frozen classifiers trainer/gender_classifier.py:train_ensemble_members can build
# (TrainingConfig.ensemble_members, attribute_ensemble_members).
ENSEMBLE_MEMBERS = ("linear", "mlp", "cnn", "robust")

# The laptop schedule and weights of each architecture where they differ (Config's defaults are
# "residual"'s; `for_architecture("paper")` gives the values the paper SAN has always used here).
LAPTOP_ARCHITECTURE_SETTINGS = {
    "residual": {"pretrain_epochs": 0, "san_epochs": 6, "reconstruction_loss_weight": 3.0, "matcher_start_epoch": 0,
                 "matcher_loss_weight": 24.0},
    "paper": {"pretrain_epochs": 1, "san_epochs": 3, "reconstruction_loss_weight": 10.0, "matcher_start_epoch": 1,
              "matcher_loss_weight": 8.0},
}


@dataclass
class TrainingConfig:
    """Hyper-parameters of the auxiliary networks and the sanitizer.

    Paper / public-code values: image_size 224, batch 8, Adam lr 2e-4, 20 SAN epochs, matcher term
    from epoch 5 with weight 8, L1 reconstruction.
    """

    architecture: str = "residual"  # or "paper" (ARCHITECTURES)
    # What the sanitized faces must hide and keep (trainer/policy.py; --policy/--suppress/--preserve).
    policy: PrivacyPolicy = field(default_factory=PrivacyPolicy)
    image_size: int = 64  # production: 224
    batch_size: int = 32  # production: 8 (the public code)
    classifier_epochs: int = 5  # production: 20
    classifier_learning_rate: float = 1e-3
    classifier_dropout: float = 0.25  # public code; the paper's dense head uses 0.5
    pretrain_epochs: int = 0  # reconstruction-only epochs before semi-adversarial training (paper: 1)
    san_epochs: int = 6  # production: 20 (paper SAN on the laptop: 3)
    # 1e-3 lets the few laptop epochs converge; production: 2e-4 (Adam, the public code).
    san_learning_rate: float = 1e-3
    gender_loss_weight: float = 1.0  # lambda_G
    # Without the matcher term (issue: semi-adversarial training) reconstruction is the only pull
    # towards the input; at weight 1 the SAN collapsed to an adversarial mean face on the
    # synthetic data (SSIM 0.34), at 10 it keeps each face (SSIM 0.50). See README "Results".
    # The residual sanitizer: 3 (README "Choosing the sanitizer" has the sweep); the paper SAN: 10.
    reconstruction_loss_weight: float = 3.0
    reconstruction_loss: str = "l1"  # "l1" (public code) or "cross_entropy" (paper's pre-training)
    # Auxiliary face matcher: margin softmax (CosFace) over the training identities. 10 epochs
    # reach TMR 98.5% at FMR 1e-2 on unseen synthetic eval identities (README).
    matcher_epochs: int = 10  # production: 20
    matcher_learning_rate: float = 2e-3  # cosine-decayed over the epochs
    matcher_margin: float = 0.2
    matcher_scale: float = 16.0
    matcher_embedding_dim: int = 128
    matcher_loss_weight: float = 24.0  # lambda_M (residual sanitizer; the paper SAN / public code: 8)
    # 0-based epoch of the whole SAN run (pre-training included) from which J_M is added;
    # production: 5 (the public code).
    matcher_start_epoch: int = 0  # paper SAN on the laptop: 1
    # Residual sanitizer: U-Net width, the largest change per pixel (x' = clip(x + max_change *
    # tanh(.))), the extra auxiliary gender classifiers of the ensemble, trained on the originals by
    # the SAN trainer (ENSEMBLE_MEMBERS above: "linear" on 4x4-pooled pixels,
    # "mlp" on 2x2-pooled pixels, "cnn" a strided CNN trained with augmentation), and the weight of
    # each (the CNN f_G keeps gender_loss_weight). The CNN member at weight 2 raised the unseen SVM
    # and CNN judges' errors by 4 and 3 points for 2-3 points of TMR (README "The trade-off").
    residual_width: int = 16
    residual_max_change: float = 0.5
    # The residual editor's change made at the full resolution (thin lines such as wrinkles can be
    # drawn) instead of at half resolution, upsampled bilinearly (smooth changes only).
    residual_fine: bool = False
    ensemble_members: tuple = ("linear", "mlp", "cnn")
    ensemble_loss_weight: float = 2.0
    # Extra frozen classifiers (kinds as in ensemble_members) for each suppressed attribute besides
    # Male, each with a target term at ensemble_loss_weight; () = none, the attribute is then hidden
    # from the auxiliary attribute classifier alone. gender-age on a clean clone (README): with none,
    # the Young pixel judges read 34.6% / 25.9% error; with linear, mlp and cnn 45.1% / 40.3%, but the
    # CNN matcher lost 16.8 points (7.5 before) and the CNN Young judge did not move (24.4%).
    attribute_ensemble_members: tuple = ("linear", "mlp")
    # Suppressed attributes whose target is a constant instead of a fair coin per face, as
    # "Attribute:value" items (value 0 or 1): "Young:0" makes every output show age (old), which
    # also says nothing about the true age. gender-age with Young:0 raised the pixel judges of Young
    # past 35%, not the CNN judge (README "Which direction fails").
    constant_targets: tuple = ()
    # The online adversary (0 = none): a strided CNN (models.build_strided_gender_cnn, one output per
    # suppressed attribute) trained DURING the sanitizer's training, on its outputs, to read each
    # suppressed attribute's true value (Adam at adversary_learning_rate, one step per sanitizer
    # step), while the sanitizer's term `adversary_target` (this weight) wants it to read the drawn
    # target. Unlike the frozen members, it keeps learning whatever cue the outputs still carry, as
    # the evaluator's adaptive attacker does.
    adversary_weight: float = 0.0
    adversary_learning_rate: float = 1e-3
    # The "robust" member: the strided CNN trained on faces perturbed within this L2 radius (faces in
    # [0, 1], 64x64 = 4096 values: 1.0 is a change of about 0.016 per pixel on average).
    robust_member_epsilon: float = 1.0
    # De-identification (a policy that suppresses identity; FaDeNet): the frozen auxiliary matcher is
    # the identity critic, and the sanitizer is trained until its cosine between R(x') and R(x) is at
    # most identity_margin (losses.identity_similarity_hinge, weight identity_suppress_weight), while a
    # perceptual term keeps the gender classifier's convolutional features of x' close to those of x
    # (a network other than the critic; weight perceptual_loss_weight). Tried on the synthetic data
    # (README "De-identification"): weight 1 / margin 0.2 kept SSIM 0.75; weight 2 / margin 0.1 and
    # 3 / 0.0 fell to SSIM 0.54 and 0.44 without fooling Fisherfaces more; weight 10 / 0.0 wrecked
    # the faces (SSIM 0.26).
    identity_suppress_weight: float = 1.0
    identity_margin: float = 0.2
    perceptual_loss_weight: float = 1.0
    # The identity critics: "matcher" (the auxiliary CNN matcher) and "pixels" (a linear embedding of
    # 4x4-pooled pixels trained by the SanTrainer on the train identities; trainer/matcher.py), each
    # with its own hinge at the same weight and margin.
    identity_critics: tuple = ("matcher",)
    # De-identification's first stage (trainer/identity_replacement.py): "ksame" replaces each face's
    # between-identity component (replacement_components directions) by one of replacement_donors
    # donors of its preserved-attribute group, each the mean of replacement_k training people, and
    # pulls the result towards the group's mean face by replacement_shrink (1 = no pull); "none":
    # the FaDeNet editor alone (its adaptive matcher: 95.8% TMR, README "--policy deidentify").
    identity_replacement: str = "ksame"
    replacement_components: int = 512
    replacement_k: int = 5
    replacement_donors: int = 32
    replacement_shrink: float = 0.4
    # Train the FaDeNet editor (identity critic, perceptual and keep terms) over the replaced face. On
    # the synthetic data (README "De-identification by replacement") it lowered SSIM 0.54 -> 0.42 and
    # the CNN judge of Young lost 41 points, so by default the output is the replaced face itself
    # (the editor is trained anyway when the policy also suppresses an attribute: output_is_replacement).
    replacement_editor: bool = False
    # Obfuscation (policy `obfuscate`, DDM): weight of the objective the sanitizer shares with the
    # discriminator D (losses.discrepancy_objective); reconstruction_loss_weight weighs |X_r - X|.
    # Tried on the synthetic data (README "Obfuscation"): 1 learnt a faint mark D alone reads
    # (matchers unharmed); 10 and 30 brightened the face (CNN matcher 2-3%, Fisherfaces 38-42%,
    # decrypted SSIM 0.79; the pipeline's run at 10 darkened it instead: Fisherfaces 70%); 100 lost
    # the decryption; residual_max_change 1 with weight 10 turned every face white.
    discrepancy_weight: float = 10.0
    # Weight of each term that keeps a preserved attribute (trainer/policy.py; not identity, which
    # has matcher_loss_weight): the auxiliary classifier must read its true value on X'.
    preserve_loss_weight: float = 1.0
    checkpoint_every_epoch: bool = True  # resume a preempted SAN run from its last epoch
    # Reduced precisions the sanitizer is also exported in (signatures sanitize_only_<p> and
    # sanitize_faces_<p>; trainer/export.py): bfloat16 (CPUs with AVX-512 BF16 / AMX, GPUs), float16 (GPUs).
    serving_precisions: tuple = ("bfloat16",)
    # Keras dtype policy the sanitizer trains under, frozen auxiliary networks included
    # (trainer/distribution.py): "auto" = mixed_float16 on GPUs, mixed_bfloat16 on a CPU with native
    # bfloat16 (AVX-512 BF16 / AMX; sanitizer epochs 21 s -> 15.5 s on the build machine), float32 elsewhere.
    # The exported sanitizer is float32 whatever it trained under (serving_precisions adds the others).
    training_precision: str = "auto"
    # Fail instead of training on the CPU when no GPU is visible (set by pipelines/vertex.py when
    # the Vertex AI Training jobs are given accelerators).
    require_gpu: bool = False
    shuffle_buffer: int = 2048
    seed: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown sanitizer architecture {self.architecture!r}: choose one of "
                             f"{', '.join(ARCHITECTURES)} (--architecture)")
        unknown = [name for name in self.identity_critics if name not in IDENTITY_CRITICS]
        if unknown or not self.identity_critics:
            raise ValueError(f"identity critics {list(self.identity_critics)}: choose one or more of "
                             f"{', '.join(IDENTITY_CRITICS)} (TrainingConfig.identity_critics)")
        for name in ("ensemble_members", "attribute_ensemble_members"):
            unknown = [member for member in getattr(self, name) if member not in ENSEMBLE_MEMBERS]
            if unknown:
                raise ValueError(f"unknown ensemble member(s) {', '.join(map(repr, unknown))} in TrainingConfig.{name}: "
                                 f"choose from {', '.join(ENSEMBLE_MEMBERS)}")
        self.constant_target_values()  # refuses a malformed item or an attribute the policy keeps
        if self.architecture != "residual" and (self.constant_targets or self.residual_fine):
            raise ValueError(f"constant targets (--constant-targets) and the full-resolution editor (--residual-fine) "
                             f"need the residual sanitizer, not --architecture {self.architecture}")
        if self.adversary_weight < 0 or self.adversary_learning_rate <= 0:
            raise ValueError(f"adversary_weight={self.adversary_weight} (>= 0) and adversary_learning_rate="
                             f"{self.adversary_learning_rate} (> 0)")
        if self.adversary_weight and (self.architecture != "residual" or not self.policy.suppressed_attributes):
            raise ValueError(f"the online adversary (adversary_weight={self.adversary_weight}) needs the residual "
                             f"sanitizer and a policy that suppresses an attribute other than identity; got "
                             f"--architecture {self.architecture}, policy {self.policy.describe()}")
        if self.identity_replacement not in IDENTITY_REPLACEMENTS:
            raise ValueError(f"unknown identity replacement {self.identity_replacement!r}: choose one of "
                             f"{', '.join(IDENTITY_REPLACEMENTS)} (--identity-replacement)")
        if self.replacement_k < 2:
            raise ValueError(f"replacement_k={self.replacement_k}: a donor must be the mean of at least 2 people "
                             "(k-Same), or outputs would show real training people")
        if not 0.0 <= self.replacement_shrink <= 1.0:
            raise ValueError(f"replacement_shrink={self.replacement_shrink}: a factor in [0, 1]")
        if self.replacement_components < 1 or self.replacement_donors < 1:
            raise ValueError("replacement_components and replacement_donors must be at least 1")
        replacement = self.replacement_arguments()
        if replacement is not None and len(replacement["group_attributes"]) > MAX_REPLACEMENT_ATTRIBUTES:
            raise ValueError(f"identity replacement groups faces by every preserved attribute: at most "
                             f"{MAX_REPLACEMENT_ATTRIBUTES}, the policy {self.policy.describe()} keeps "
                             f"{len(replacement['group_attributes'])}")
        if self.training_precision not in TRAINING_PRECISIONS:
            raise ValueError(f"unknown training precision {self.training_precision!r}: choose one of "
                             f"{', '.join(TRAINING_PRECISIONS)} (--training-precision)")

    def replacement_arguments(self) -> dict | None:
        """The ReplacingSanitizer's keyword arguments when this configuration de-identifies by
        replacement (residual sanitizer, identity suppressed, not obfuscation), else None."""
        policy = self.policy
        if (self.identity_replacement == "none" or self.architecture != "residual"
                or not policy.suppresses_identity or policy.obfuscates):
            return None
        return {"group_attributes": tuple(name for name in policy.preserve if name != "identity"),
                "reader_attributes": policy.other_attributes, "components": self.replacement_components,
                "donors_per_group": self.replacement_donors, "shrink": self.replacement_shrink}

    def output_is_replacement(self) -> bool:
        """Whether the exported output is the replaced face itself, with no editor trained: identity
        replacement on, --replacement-editor off, and nothing but identity suppressed (a policy that
        also hides an attribute needs the editor's target terms, so its editor is trained)."""
        return (self.replacement_arguments() is not None and not self.replacement_editor
                and set(self.policy.suppress) == {"identity"})

    def constant_target_values(self) -> dict:
        """{suppressed attribute: 0.0 or 1.0} from constant_targets."""
        values = {}
        for item in self.constant_targets:
            name, _, value = str(item).partition(":")
            if value not in ("0", "1"):
                raise ValueError(f"constant target {item!r}: write Attribute:0 or Attribute:1 "
                                 "(TrainingConfig.constant_targets)")
            if name not in self.policy.suppress or name == "identity":
                raise ValueError(f"constant target {item!r}: {name} is not an attribute the policy "
                                 f"{self.policy.describe()} suppresses")
            values[name] = float(value)
        return values

    def for_architecture(self, architecture: str) -> "TrainingConfig":
        """This configuration with `architecture` and its laptop schedule and loss weights."""
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown sanitizer architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
        return dataclasses.replace(self, architecture=architecture, **LAPTOP_ARCHITECTURE_SETTINGS[architecture])

    def to_custom_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, values: dict) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        for name in ("serving_precisions", "ensemble_members", "identity_critics",
                     "attribute_ensemble_members", "constant_targets"):  # lists after a JSON round trip
            if name in values:
                values[name] = tuple(values[name])
        if isinstance(values.get("policy"), dict):
            values["policy"] = PrivacyPolicy.from_dict(values["policy"])
        return cls(**values)
