"""TFX Trainer run_fn for the sanitizer, either architecture (TrainingConfig.architecture).

"paper": pre-training on reconstruction of X'_SM, then semi-adversarial training against the
frozen auxiliary networks: J = lambda_G [CE(y, f_G(X'_SM)) + CE(1 - y, f_G(X'_OP))]
+ lambda_M ||R(X'_SM) - R(X)||^2 (from `matcher_start_epoch`) + lambda_D reconstruction.

"residual" (default): each step draws a target gender t per face, independent of the true one,
and trains X'_t = clip(x + change) with J = lambda_G CE(t, f_G(shift+noise(X'_t)))
+ lambda_E sum over the extra ensemble members CE(t, f_k(X'_t)) + lambda_M ||R(X'_t) - R(X)||^2
+ lambda_D |X'_t - X|. The extra members (a linear model and an MLP on pooled pixels, a strided
CNN) are trained here on the original train faces and frozen, like f_G. The privacy policy
(trainer/policy.py) decides which terms there are: other suppressed attributes get target terms
through the auxiliary attribute classifier, preserved ones keep-terms; a policy that suppresses
identity (de-identification, FaDeNet) replaces J_M by the identity critic's hinge
mean max(0, cos(R(X'), R(X)) - margin) and adds a perceptual term on f_G's first convolutions; by
default (`deidentify`) the output is the face after k-Same identity replacement (ReplacingSanitizer,
trainer/identity_replacement.py, fitted here on the train split) and no editor is trained unless
TrainingConfig.replacement_editor asks for one over the replaced face.
The `obfuscate` policy (identity suppressed, nothing kept) trains distribution discrepancy
maximisation (DDM) instead: the sanitizer G_e makes the encrypted image X_e = G_e(X) and, from it,
the reconstructed image X_r = G_e(X_e); a discriminator D tells X_r from X_e, and D and G_e minimise
the same cross-entropy (losses.discrepancy_objective) plus lambda_D |X_r - X| for G_e.

Only the sanitizer's own variables get gradients (and, for DDM, D's).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import TrainingConfig
from trainer import features, losses
from trainer.data import prototypes_from, transformed_dataset
from trainer.distribution import distribution_strategy, resolve_training_precision
from trainer.export import SanitizerModule, save_sanitizer
from trainer.gender_classifier import train_attribute_classifier, train_ensemble_members
from trainer.identity_replacement import ReplacementStatistics, fit_identity_replacement_from_batches
from trainer.matcher import train_pixel_identity_critic
from trainer.models import (
    EncryptingSanitizer, ReplacingSanitizer, ResidualSanitizer, build_discrepancy_discriminator, build_sanitizer,
    build_strided_gender_cnn,
    computing_in, keras_policy, policy_copy, prototypes_for_labels, reduced_precision_networks,
)
from trainer.policy import GENDER, IDENTITY, PrivacyPolicy

MATCHER_MODEL_KEY = "matcher_model"  # custom_config key: path of the frozen matcher SavedModel
CHECKPOINT_ROOT_KEY = "checkpoint_root"  # custom_config key: where resumable epoch backups live


def male_probability(classifier: keras.Model, faces: tf.Tensor) -> tf.Tensor:
    """Frozen classifier, inference mode (dropout off): [N,S,S,1] -> [N]."""
    return tf.cast(classifier(faces, training=False)[:, 1], tf.float32)


def load_frozen_matcher(path: str, policy: str = "float32"):
    """R(X): a Keras matcher from the MatcherTrainer (computing under the Keras dtype `policy`), or
    any SavedModel whose serving signature maps gray faces [N,S,S,1] to embeddings [N,D] (its first
    output is used). Embeddings come back float32."""
    loaded = keras.models.load_model(path, compile=False)  # a plain SavedModel loads as a non-Keras object
    if isinstance(loaded, keras.Model):
        loaded.trainable = False
        loaded = computing_in(loaded, policy)
        return lambda faces: tf.cast(loaded(faces, training=False), tf.float32)
    signatures = getattr(loaded, "signatures", None) or tf.saved_model.load(path).signatures
    if "serving_default" not in signatures:
        raise ValueError(f"matcher SavedModel {path} has no serving_default signature mapping faces to embeddings")
    signature = signatures["serving_default"]
    return lambda faces: next(iter(signature(faces).values()))


def _weight(value: float, name: str) -> tf.Variable:
    return tf.Variable(value, trainable=False, dtype=tf.float32, name=name)


def reconstruction_term(kind: str, weight: float, output: str = "same") -> losses.LossTerm:
    """X'_SM (paper) or the sanitized output (residual) stays close to X."""
    reconstruction = losses.RECONSTRUCTION_LOSSES[kind]
    return losses.LossTerm("reconstruction", _weight(weight, "reconstruction_weight"),
                           lambda batch, outputs: reconstruction(batch["face"], outputs[output]))


def gender_loss_terms(classifier: keras.Model, weight: float) -> list[losses.LossTerm]:
    """J_G: X'_SM keeps the true gender, X'_OP gets the flipped one."""
    return [
        losses.LossTerm("gender_same", _weight(weight, "gender_same_weight"),
                        lambda batch, outputs: losses.gender_cross_entropy(
                            male_probability(classifier, outputs["same"]), batch["male"])),
        losses.LossTerm("gender_opposite", _weight(weight, "gender_opposite_weight"),
                        lambda batch, outputs: losses.gender_cross_entropy(
                            male_probability(classifier, outputs["opposite"]), 1 - batch["male"])),
    ]


def matcher_term(matcher, weight: float, output: str = "same") -> losses.LossTerm:
    """J_M: X'_SM (paper) or the sanitized output (residual) keeps the identity embedding of X."""
    return losses.LossTerm("matcher", _weight(weight, "matcher_weight"),
                           lambda batch, outputs: losses.embedding_distance(
                               matcher(outputs[output]), matcher(batch["face"])))


def identity_suppression_term(matcher, weight: float, margin: float, name: str = "identity_suppress"
                              ) -> losses.LossTerm:
    """De-identification (FaDeNet): an identity critic R (the frozen auxiliary matcher, or the
    pixel critic) must no longer see the same person in X' as in X: mean max(0, cos(R(X'), R(X)) - margin)."""
    return losses.LossTerm(name, _weight(weight, f"{name}_weight"),
                           lambda batch, outputs: losses.identity_similarity_hinge(
                               matcher(outputs["sanitized"]), matcher(batch["face"]), margin))


PERCEPTUAL_LAYERS = ("conv1", "conv2", "conv3")  # of the gender classifier f_G (models._classifier_trunk)


def perceptual_term(classifier: keras.Model, weight: float) -> losses.LossTerm:
    """X' keeps what the frozen gender classifier's first three convolutions see of X (its
    features, not the identity critic's): appearance kept while identity goes."""
    features = keras.Model(classifier.inputs, [classifier.get_layer(name).output for name in PERCEPTUAL_LAYERS],
                           name="perceptual_features")
    return losses.LossTerm("perceptual", _weight(weight, "perceptual_weight"),
                           lambda batch, outputs: losses.feature_distance(
                               features(outputs["sanitized"], training=False), features(batch["face"], training=False)))


def discrepancy_term(discriminator: keras.Model, weight: float) -> losses.LossTerm:
    """DDM: D reads the reconstructed image X_r as reconstructed (1) and the encrypted X' as
    encrypted (0); the sanitizer and D both minimise this cross-entropy, so the encrypted images'
    distribution goes as far from the reconstructed (original-like) ones' as D can see."""
    return losses.LossTerm("discrepancy", _weight(weight, "discrepancy_weight"),
                           lambda batch, outputs: losses.discrepancy_objective(
                               tf.cast(discriminator(outputs["reconstructed"], training=True)[:, 0], tf.float32),
                               tf.cast(discriminator(outputs["sanitized"], training=True)[:, 0], tf.float32)))


def target_gender_terms(classifier: keras.Model, ensemble: dict, weight: float,
                        ensemble_weight: float) -> list[losses.LossTerm]:
    """Residual sanitizer: every auxiliary gender classifier must read the drawn target t on X'_t;
    f_G and a CNN member see it shifted and noised (losses.random_shift_and_noise)."""
    return [losses.LossTerm("gender_target", _weight(weight, "gender_target_weight"),
                            lambda batch, outputs: losses.gender_cross_entropy(
                                male_probability(classifier, losses.random_shift_and_noise(outputs["sanitized"])),
                                batch["target"])),
            *member_target_terms("gender_target", ensemble, "target", ensemble_weight)]


def member_target_terms(prefix: str, members: dict, target_key: str, weight: float) -> list[losses.LossTerm]:
    """`<prefix>_<member>`: each extra frozen classifier of an attribute (train_ensemble_members)
    must read the drawn target batch[target_key] on X'. The CNN member, like f_G, sees the output
    shifted and noised; the pooled-pixel members need not."""
    terms = []
    for name, member in members.items():
        seen = losses.random_shift_and_noise if name in ("cnn", "robust") else (lambda faces: faces)
        terms.append(losses.LossTerm(
            f"{prefix}_{name}", _weight(weight, f"{prefix}_{name}_weight"),
            lambda batch, outputs, member=member, seen=seen: losses.gender_cross_entropy(
                tf.cast(member(seen(outputs["sanitized"]), training=False)[:, 0], tf.float32), batch[target_key])))
    return terms


def policy_terms(policy: PrivacyPolicy, classifier: keras.Model, attribute_classifier, weight: float,
                 preserve_weight: float) -> list[losses.LossTerm]:
    """The privacy policy's terms besides gender suppression (target_gender_terms) and identity
    (matcher_term), for the residual sanitizer:
    - each other suppressed attribute a: the frozen attribute classifier reads the drawn target t_a
      on X' (shifted and noised, as f_G): `attribute_target_<a>`;
    - each preserved attribute b: the classifier reads b's true label on X': `attribute_keep_<b>`,
      or `gender_keep` for Male (through f_G)."""
    heads = {name: index for index, name in enumerate(policy.other_attributes)}

    def attribute_probability(name, faces):
        return tf.cast(attribute_classifier(faces, training=False)[:, heads[name]], tf.float32)

    terms = []
    for name in policy.other_suppressed:
        terms.append(losses.LossTerm(
            f"attribute_target_{name}", _weight(weight, f"attribute_target_{name}_weight"),
            lambda batch, outputs, name=name: losses.gender_cross_entropy(
                attribute_probability(name, losses.random_shift_and_noise(outputs["sanitized"])),
                batch[f"target/{name}"])))
    for name in policy.preserve:
        if name == GENDER:
            terms.append(losses.LossTerm(
                "gender_keep", _weight(preserve_weight, "gender_keep_weight"),
                lambda batch, outputs: losses.gender_cross_entropy(
                    male_probability(classifier, outputs["sanitized"]), batch["male"])))
        elif name != IDENTITY:
            terms.append(losses.LossTerm(
                f"attribute_keep_{name}", _weight(preserve_weight, f"attribute_keep_{name}_weight"),
                lambda batch, outputs, name=name: losses.gender_cross_entropy(
                    attribute_probability(name, outputs["sanitized"]), batch[f"label/{name}"])))
    return terms


def checkpoint_dir(fn_args: FnArgs, config: TrainingConfig, matcher_path: str | None) -> str:
    """Where epoch checkpoints go: stable across retries of the same training, distinct otherwise.

    TFX gives every execution (so every retry) a fresh ModelRun directory, so a resumable backup
    lives under `checkpoint_root` (custom_config), keyed by the inputs and the configuration.
    """
    root = (fn_args.custom_config or {}).get(CHECKPOINT_ROOT_KEY)
    if not root:
        return os.path.join(fn_args.model_run_dir, "backup")
    key = json.dumps([sorted(fn_args.train_files), fn_args.transform_output, fn_args.base_model, matcher_path,
                      config.to_custom_config()], sort_keys=True)
    return os.path.join(root, "san", hashlib.sha256(key.encode()).hexdigest()[:16])


def _columns_cross_entropy(read: tf.Tensor, attributes: tuple, values: dict, prefix: str) -> tf.Tensor:
    """Mean over the attributes of the cross-entropy of column i of `read` [N, A] against
    values[f"{prefix}/{attributes[i]}"]."""
    read = tf.cast(read, tf.float32)
    return tf.add_n([losses.gender_cross_entropy(read[:, column], values[f"{prefix}/{name}"])
                     for column, name in enumerate(attributes)]) / len(attributes)


def adversary_target_term(adversary: keras.Model, attributes: tuple, weight: float) -> losses.LossTerm:
    """`adversary_target`: the online adversary (SanTrainingModel.adversary) must read each
    suppressed attribute's drawn target on X' (mean cross-entropy over the attributes); only the
    sanitizer learns from this term."""
    return losses.LossTerm("adversary_target", _weight(weight, "adversary_target_weight"),
                           lambda batch, outputs: _columns_cross_entropy(
                               adversary(outputs["sanitized"], training=False), attributes, batch, "target"))


def adversary_loss(adversary: keras.Model, attributes: tuple, inputs: dict, sanitized: tf.Tensor) -> tf.Tensor:
    """What the online adversary minimises: its cross-entropy on the TRUE values of the suppressed
    attributes, read on the sanitizer's outputs (no gradient reaches the sanitizer)."""
    return _columns_cross_entropy(adversary(tf.stop_gradient(sanitized), training=True), attributes, inputs, "label")


class SanTrainingModel(keras.Model):
    """Wraps the SAN for `fit`: a custom train_step over composable loss terms.

    Only the SAN's own variables get gradients from the terms: the auxiliary networks stay frozen.
    The online adversary, when there is one, learns from its own loss (adversary_loss) with its
    own optimizer, one step after each sanitizer step.
    """

    def __init__(self, san: keras.Model, prototypes: dict, terms: list[losses.LossTerm],
                 policy: PrivacyPolicy | None = None, discriminator: keras.Model | None = None,
                 adversary: keras.Model | None = None, adversary_optimizer=None, **kwargs):
        """`discriminator`: DDM's D (policy `obfuscate`), trained with the sanitizer on the same loss.
        `adversary`: the online adversary (TrainingConfig.adversary_weight), one output per suppressed
        attribute other than identity, trained by `adversary_optimizer`."""
        super().__init__(**kwargs)
        self.san = san
        self.prototypes = prototypes
        self.terms = terms
        self.policy = policy or PrivacyPolicy()
        self.discriminator = discriminator
        self.adversary = adversary
        self.adversary_optimizer = adversary_optimizer
        self.adversary_attributes = self.policy.suppressed_attributes

    def _forward(self, batch, training):
        inputs = {"face": batch[features.FACE_GRAY_KEY], "male": batch[features.LABEL_KEY]}
        for name in self.policy.preserve:  # true labels of the attributes to keep
            if name not in (GENDER, IDENTITY):
                inputs[f"label/{name}"] = batch[features.attribute_feature_name(name)]
        if self.adversary is not None:  # true labels of the suppressed attributes, for the adversary
            for name in self.adversary_attributes:
                inputs[f"label/{name}"] = (batch[features.LABEL_KEY] if name == GENDER
                                           else batch[features.attribute_feature_name(name)])
        if isinstance(self.san, ResidualSanitizer):
            # A target per face and suppressed attribute, independent of the true value: what the
            # output should show.
            targets = self.san.fix_targets(
                tf.cast(tf.random.uniform([tf.shape(inputs["male"])[0], self.san.targets]) < 0.5, tf.float32))
            for column, name in enumerate(self.policy.suppress):
                inputs[f"target/{name}"] = targets[:, column]
            if self.san.gender_column is not None:
                inputs["target"] = targets[:, self.san.gender_column]
            if isinstance(self.san, EncryptingSanitizer):  # DDM: encrypt, then decrypt with the same network
                encrypted = self.san.encrypt(inputs["face"], training=training)
                outputs = {"sanitized": encrypted, "reconstructed": self.san.decrypt(encrypted, training=training)}
            else:
                outputs = self.san({"face": inputs["face"], "target": targets}, training=training)
        else:
            outputs = self.san({"face": inputs["face"], **prototypes_for_labels(inputs["male"], self.prototypes)},
                               training=training)
        outputs = {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
        total, values = losses.total_loss(self.terms, inputs, outputs)
        return total, values, inputs, outputs

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            total, values, inputs, outputs = self._forward(batch, training=True)
            # Each replica's mean loss; gradients are summed over replicas, so divide here.
            replica_loss = total / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.san.trainable_variables
        if self.discriminator is not None:  # DDM: D minimises the same objective
            variables = variables + self.discriminator.trainable_variables
        self.optimizer.minimize(replica_loss, variables, tape=tape)
        if self.adversary is not None:
            with tf.GradientTape() as tape:
                learnt = adversary_loss(self.adversary, self.adversary_attributes, inputs, outputs["sanitized"])
                replica_loss = learnt / tf.distribute.get_strategy().num_replicas_in_sync
            self.adversary_optimizer.minimize(replica_loss, self.adversary.trainable_variables, tape=tape)
            values = {**values, "adversary": learnt}
        return {"loss": total, **values}

    def test_step(self, batch):
        total, values, inputs, outputs = self._forward(batch, training=False)
        if self.adversary is not None:
            values = {**values, "adversary": adversary_loss(self.adversary, self.adversary_attributes, inputs,
                                                            outputs["sanitized"])}
        return {"loss": total, **values}


class LossSchedule(keras.callbacks.Callback):
    """Pre-training (reconstruction only), then the gender terms, then J_M from `matcher_start_epoch`."""

    def __init__(self, terms: list[losses.LossTerm], config: TrainingConfig):
        super().__init__()
        self.terms = {term.name: term for term in terms}
        self.config = config

    def weights_for_epoch(self, epoch: int) -> dict:
        adversarial = epoch >= self.config.pretrain_epochs
        matcher_on = adversarial and epoch >= self.config.matcher_start_epoch
        weights = {}
        for name in self.terms:
            if name == "reconstruction":
                weights[name] = self.config.reconstruction_loss_weight
            elif name == "matcher":
                weights[name] = self.config.matcher_loss_weight if matcher_on else 0.0
            elif name in ("gender_same", "gender_opposite", "gender_target") or name.startswith("attribute_target_"):
                weights[name] = self.config.gender_loss_weight if adversarial else 0.0
            elif name == "discrepancy":
                weights[name] = self.config.discrepancy_weight if adversarial else 0.0
            elif name == "adversary_target":
                weights[name] = self.config.adversary_weight if adversarial else 0.0
            elif name == "perceptual":
                weights[name] = self.config.perceptual_loss_weight
            elif name.startswith("identity_suppress"):
                weights[name] = self.config.identity_suppress_weight if adversarial else 0.0
            elif name == "gender_keep" or name.startswith("attribute_keep_"):
                weights[name] = self.config.preserve_loss_weight if adversarial else 0.0
            else:  # the extra ensemble members' target terms (gender_target_<m>, ensemble_target_<A>_<m>)
                weights[name] = self.config.ensemble_loss_weight if adversarial else 0.0
        return weights

    def on_epoch_begin(self, epoch, logs=None):
        weights = self.weights_for_epoch(epoch)
        for name, value in weights.items():
            self.terms[name].weight.assign(value)
        logging.info("SAN epoch %d loss weights: %s", epoch, weights)


def sanitizer_of(config: TrainingConfig) -> keras.Model:
    """The untrained sanitizer `config` describes (architecture, size, policy, constant targets)."""
    return build_sanitizer(config.architecture, config.image_size, config.residual_width, config.residual_max_change,
                           config.policy.suppress, encrypt=config.policy.obfuscates,
                           constant_targets=config.constant_target_values(), fine=config.residual_fine,
                           replacement=config.replacement_arguments())


def build_san_trainer(config: TrainingConfig, prototypes: dict, classifier, matcher,
                      ensemble: dict | None = None, attribute_classifier=None,
                      identity_critics: dict | None = None,
                      attribute_ensembles: dict | None = None) -> tuple[SanTrainingModel, list]:
    """The training model and its loss terms; `ensemble`: the residual sanitizer's extra frozen
    gender classifiers {name: model -> P(male) [N,1]}; `attribute_classifier`: the frozen classifier
    of the policy's other attributes (train_attribute_classifier), needed when there are any;
    `identity_critics`: identity suppressed, the critics besides the matcher ({"pixels": model});
    `attribute_ensembles`: {suppressed attribute other than Male: its extra frozen classifiers
    {name: model -> P(attribute) [N,1]}}, each with a target term at the ensemble weight."""
    policy = config.policy
    san = sanitizer_of(config)
    if policy.other_attributes and attribute_classifier is None:
        raise ValueError(f"policy {policy.describe()} needs the auxiliary attribute classifier of "
                         f"{', '.join(policy.other_attributes)}")
    if policy.obfuscates:  # build_sanitizer has refused any architecture but the residual one
        discriminator = build_discrepancy_discriminator(config.image_size, config.seed)
        terms = [reconstruction_term(config.reconstruction_loss, config.reconstruction_loss_weight, "reconstructed"),
                 discrepancy_term(discriminator, config.discrepancy_weight)]
        trainer = SanTrainingModel(san, prototypes, terms, policy, discriminator)
        trainer.compile(optimizer=keras.optimizers.Adam(config.san_learning_rate))
        return trainer, terms
    if config.architecture == "residual":
        output = "sanitized"
        terms = [reconstruction_term(config.reconstruction_loss, config.reconstruction_loss_weight, output),
                 *(target_gender_terms(classifier, ensemble or {}, config.gender_loss_weight,
                                       config.ensemble_loss_weight) if GENDER in policy.suppress else []),
                 *policy_terms(policy, classifier, attribute_classifier, config.gender_loss_weight,
                               config.preserve_loss_weight),
                 *(term for attribute, members in (attribute_ensembles or {}).items()
                   for term in member_target_terms(f"ensemble_target_{attribute}", members, f"target/{attribute}",
                                                   config.ensemble_loss_weight))]
    else:
        output = "same"
        terms = [reconstruction_term(config.reconstruction_loss, config.reconstruction_loss_weight),
                 *gender_loss_terms(classifier, config.gender_loss_weight)]
    if matcher is not None and IDENTITY in policy.preserve:
        terms.append(matcher_term(matcher, config.matcher_loss_weight, output))
    if policy.suppresses_identity:
        critics = {"matcher": matcher, **(identity_critics or {})}
        missing = [name for name in config.identity_critics if critics.get(name) is None]
        if missing:
            raise ValueError(f"policy {policy.describe()} suppresses identity: it needs the frozen identity critic(s) "
                             f"{', '.join(missing)} (TrainingConfig.identity_critics; 'matcher' is the face matcher "
                             "given to the SanTrainer)")
        terms += [identity_suppression_term(critics[name], config.identity_suppress_weight, config.identity_margin,
                                            "identity_suppress" if name == "matcher" else f"identity_suppress_{name}")
                  for name in config.identity_critics]
        terms.append(perceptual_term(classifier, config.perceptual_loss_weight))
    adversary = optimizer = None
    if config.adversary_weight:  # TrainingConfig refuses it for the paper SAN and without attributes
        attributes = policy.suppressed_attributes
        adversary = build_strided_gender_cnn(config.image_size, config.seed + 29, len(attributes), "online_adversary")
        optimizer = keras.optimizers.Adam(config.adversary_learning_rate)
        terms.append(adversary_target_term(adversary, attributes, config.adversary_weight))
    trainer = SanTrainingModel(san, prototypes, terms, policy, adversary=adversary, adversary_optimizer=optimizer)
    trainer.compile(optimizer=keras.optimizers.Adam(config.san_learning_rate))
    return trainer, terms


def replacement_statistics(train_files: list[str], tft_output: tft.TFTransformOutput,
                           config: TrainingConfig) -> ReplacementStatistics:
    """k-Same identity replacement's statistics (trainer/identity_replacement.py) from the training
    faces, their people and their preserved attributes, in one pass over the train split (per
    person and per group sums only, never the faces)."""
    attributes = config.replacement_arguments()["group_attributes"]

    def batches():
        for batch in transformed_dataset(train_files, tft_output, 256):
            faces = batch[features.FACE_GRAY_KEY].numpy()
            labels = (np.stack([batch[features.attribute_feature_name(name)].numpy().reshape(-1)
                                for name in attributes], axis=1) if attributes else np.zeros((len(faces), 0)))
            yield faces, batch[features.IDENTITY_INDEX_KEY].numpy().reshape(-1), labels

    return fit_identity_replacement_from_batches(batches(), config.replacement_components, config.replacement_k,
                                                 config.replacement_donors, config.seed)


def run_fn(fn_args: FnArgs) -> None:
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy(config.require_gpu)
    policy = resolve_training_precision(config.training_precision)
    logging.info("SAN: training under the Keras dtype policy %s (training_precision %s)", policy,
                 config.training_precision)
    _train_and_export(fn_args, config, strategy, policy)


def _train_and_export(fn_args: FnArgs, config: TrainingConfig, strategy: tf.distribute.Strategy,
                      policy: str = "float32") -> None:
    """Trains the sanitizer under the Keras dtype `policy` (the auxiliary networks it is trained
    against compute under it too, their weights unchanged) and exports it in float32."""
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    train = transformed_dataset(fn_args.train_files, tft_output, global_batch, config.shuffle_buffer, config.seed)
    evaluation = transformed_dataset(fn_args.eval_files, tft_output, global_batch)
    prototypes = prototypes_from(tft_output, fn_args.train_files)

    with strategy.scope():
        classifier = keras.models.load_model(fn_args.base_model, compile=False)
        classifier.trainable = False
        matcher_path = (fn_args.custom_config or {}).get(MATCHER_MODEL_KEY)
        matcher = load_frozen_matcher(matcher_path, policy) if matcher_path else None
        ensemble = {}
        if config.architecture == "residual" and GENDER in config.policy.suppress:
            ensemble = train_ensemble_members(
                transformed_dataset(fn_args.train_files, tft_output, 64), config.image_size, config.seed,
                validation=transformed_dataset(fn_args.eval_files, tft_output, 64), members=config.ensemble_members,
                robust_epsilon=config.robust_member_epsilon)
        # The policy's other suppressed attributes get extra frozen classifiers of their own.
        attribute_ensembles = {}
        if config.architecture == "residual" and config.attribute_ensemble_members:
            attribute_ensembles = {attribute: train_ensemble_members(
                transformed_dataset(fn_args.train_files, tft_output, 64), config.image_size, config.seed,
                validation=transformed_dataset(fn_args.eval_files, tft_output, 64),
                members=config.attribute_ensemble_members, attribute=attribute,
                robust_epsilon=config.robust_member_epsilon)
                for attribute in config.policy.other_suppressed}
        identity_critics = {}
        if config.policy.suppresses_identity and "pixels" in config.identity_critics:
            identity_critics["pixels"] = train_pixel_identity_critic(
                transformed_dataset(fn_args.train_files, tft_output, 64), config.image_size,
                tft_output.vocabulary_size_by_name(features.IDENTITY_VOCABULARY), config.seed)
        attribute_classifier = None
        if config.policy.other_attributes:
            attribute_classifier = train_attribute_classifier(
                transformed_dataset(fn_args.train_files, tft_output, config.batch_size, config.shuffle_buffer,
                                    config.seed), config, config.policy.other_attributes,
                validation=transformed_dataset(fn_args.eval_files, tft_output, 64))
        with keras_policy(policy):
            trainer, terms = build_san_trainer(
                config, prototypes, computing_in(classifier, policy), matcher,
                {name: computing_in(member, policy) for name, member in ensemble.items()},
                attribute_classifier and computing_in(attribute_classifier, policy),
                {name: computing_in(critic, policy) for name, critic in identity_critics.items()},
                {attribute: {name: computing_in(member, policy) for name, member in members.items()}
                 for attribute, members in attribute_ensembles.items()})
        if isinstance(trainer.san, ReplacingSanitizer):
            trainer.san.install(replacement_statistics(fn_args.train_files, tft_output, config),
                                classifier, attribute_classifier)
    if matcher is None:
        logging.warning("SAN: no face matcher given: training without J_M")
    callbacks = [LossSchedule(terms, config), keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)]
    if config.checkpoint_every_epoch:
        backup = checkpoint_dir(fn_args, config, matcher_path)
        logging.info("SAN: epoch checkpoints in %s (a retried run with the same inputs resumes there)", backup)
        callbacks.append(keras.callbacks.BackupAndRestore(backup))
    epochs = config.pretrain_epochs + config.san_epochs
    if config.output_is_replacement():
        # The editor starts as the identity map: the exported output is the replaced face.
        logging.info("SAN: identity replacement without a trained editor (TrainingConfig.replacement_editor off)")
    else:
        # The eval split's losses after the last epoch only: every epoch cost a pass over it for a log line.
        trainer.fit(train, validation_data=evaluation, validation_freq=[epochs], epochs=epochs, callbacks=callbacks,
                    verbose=2)

    def build():
        return sanitizer_of(config)

    san = trainer.san if policy == "float32" else policy_copy(build, trainer.san, "float32")
    reduced = reduced_precision_networks(build, san, classifier, config.image_size, config.serving_precisions)
    save_sanitizer(
        SanitizerModule(san, classifier, prototypes, config.image_size, reduced),
        fn_args.serving_model_dir,
        metadata={"training_config": config.to_custom_config(),
                  # What the sanitizer hides and keeps; the bulk job refuses to pass a suppressed attribute on.
                  "policy": config.policy.to_dict(),
                  "architecture": config.architecture,
                  "training_policy": policy,  # the Keras dtype policy it trained under
                  # What `sanitized` is: the paper's X'_OP, or the residual sanitizer's output for a
                  # target gender drawn from a hash of each face (independent of the true gender).
                  "sanitized_output": "opposite" if config.architecture == "paper" else "hashed_random_target",
                  "male_fraction": float(prototypes["male_fraction"]),
                  "matcher": matcher_path},
    )
    logging.info("SAN: exported sanitizer to %s (%s)", fn_args.serving_model_dir, json.dumps(config.to_custom_config()))
