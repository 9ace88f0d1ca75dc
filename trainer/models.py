"""Keras models: the two sanitizer architectures and the auxiliary networks.

- the paper's SAN (convolutional autoencoder + proto-combiner), built from the image size as the
  SAN paper (Mirjalili et al., ICB 2018) and its authors' public code specify;
- the residual sanitizer (the default): a small U-Net predicting a bounded, smooth change of the
  input towards a target gender given per face;
- the auxiliary gender classifier f_G (paper), the extra ensemble members (pooled-pixel linear and
  MLP models, a strided CNN), and the face matcher R.

Both sanitizers answer `sanitizer_outputs(face, male, target, prototypes)` with the same four
outputs, so training, export and evaluation do not care which one they hold.

Keras 2 (`tf_keras`) is used because TFX 1.16 / tf.Transform 1.16 require it.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf
import tf_keras as keras

from trainer.identity_replacement import IdentityReplacement

LEAKY_SLOPE = 0.2
DECODER_CHANNELS = 128


def _conv(filters: int, kernel: int, name: str) -> keras.layers.Layer:
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name)


def build_san_autoencoder(image_size: int) -> keras.Model:
    """(gray face [S,S,1], same-gender prototype [S,S,3]) -> decoder features [S,S,128].

    Encoder: Conv3x3 4->8, LeakyReLU, AvgPool2; Conv3x3 8->12, LeakyReLU, AvgPool2 -> [S/4,S/4,12].
    Decoder: Conv3x3 12->256, LeakyReLU, Upsample x2; Conv3x3 256->128, LeakyReLU, Upsample x2.
    """
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 for the SAN's two poolings, got {image_size}")
    face = keras.Input((image_size, image_size, 1), name="face")
    prototype = keras.Input((image_size, image_size, 3), name="same_prototype")
    x = keras.layers.Concatenate(name="face_and_prototype")([face, prototype])
    x = _conv(8, 3, "encoder_conv1")(x)
    x = keras.layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = keras.layers.AveragePooling2D(2, name="encoder_pool1")(x)
    x = _conv(12, 3, "encoder_conv2")(x)
    x = keras.layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = keras.layers.AveragePooling2D(2, name="encoder_pool2")(x)
    x = _conv(256, 3, "decoder_conv1")(x)
    x = keras.layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="decoder_up1")(x)
    x = _conv(DECODER_CHANNELS, 3, "decoder_conv2")(x)
    x = keras.layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="decoder_up2")(x)
    return keras.Model([face, prototype], x, name="san_autoencoder")


def build_proto_combiner(image_size: int) -> keras.Model:
    """(decoder features [S,S,128], prototype [S,S,3]) -> perturbed gray face [S,S,1] in (0,1)."""
    decoded = keras.Input((image_size, image_size, DECODER_CHANNELS), name="decoder_features")
    prototype = keras.Input((image_size, image_size, 3), name="prototype")
    x = keras.layers.Concatenate(name="features_and_prototype")([decoded, prototype])
    x = keras.layers.Conv2D(1, 1, activation="sigmoid", name="combiner_conv")(x)
    return keras.Model([decoded, prototype], x, name="proto_combiner")


class SemiAdversarialNetwork(keras.Model):
    """The SAN: one autoencoder pass, three proto-combiner outputs (SM, NT, OP)."""

    def __init__(self, image_size: int, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.autoencoder = build_san_autoencoder(image_size)
        self.combiner = build_proto_combiner(image_size)
        # The decoder before its last nearest-neighbour upsampling (same layers, same weights).
        self._before_last_upsampling = keras.Model(
            self.autoencoder.inputs, self.autoencoder.get_layer("decoder_up2").input, name="san_decoder_half")

    needs_gender = True  # its output follows the (predicted) gender: OP uses the other prototype

    def call(self, inputs, training=None):
        """inputs: dict face [N,S,S,1], same/neutral/opposite prototypes [N,S,S,3].

        Returns a dict of perturbed faces 'same', 'neutral', 'opposite', each [N,S,S,1].
        """
        decoded = self.autoencoder([inputs["face"], inputs["same"]], training=training)
        return {
            name: self.combiner([decoded, inputs[name]], training=training)
            for name in ("same", "neutral", "opposite")
        }

    def sanitizer_outputs(self, face, male, target, prototypes: dict, male_probability=None) -> dict:
        """X'_SM, X'_NT, X'_OP for the (true or predicted) gender; `sanitized` is X'_OP (the
        paper's output); `target` is not used (the paper's flip is deterministic), nor is
        `male_probability` (the prototypes follow `male`)."""
        del target, male_probability
        outputs = self({"face": face, **prototypes_for_labels(male, prototypes)}, training=False)
        return {**outputs, "sanitized": outputs["opposite"]}

    def sanitized_only(self, face, male, target, prototypes: dict):
        """`sanitizer_outputs(...)["sanitized"]` (X'_OP) computed lean, for serving: the combiner's
        1x1 convolution over the 128 decoder channels commutes with the last nearest-neighbour
        upsampling, so it is applied at S/2 and one channel is upsampled; the S x S x 128 tensor and
        the SM/NT outputs are never built. Same values up to float rounding (tests/test_export.py)."""
        del target
        chosen = prototypes_for_labels(male, prototypes)
        half = self._before_last_upsampling([face, tf.cast(chosen["same"], face.dtype)], training=False)
        conv = self.combiner.get_layer("combiner_conv")
        kernel, bias = conv.kernel, conv.bias  # [1, 1, 128 + 3, 1]: decoder channels, then the prototype
        features = tf.nn.conv2d(half, tf.cast(kernel[:, :, :DECODER_CHANNELS], half.dtype), 1, "VALID")
        features = tf.repeat(tf.repeat(features, 2, axis=1), 2, axis=2)  # nearest-neighbour x2
        prototype = tf.nn.conv2d(tf.cast(chosen["opposite"], half.dtype),
                                 tf.cast(kernel[:, :, DECODER_CHANNELS:], half.dtype), 1, "VALID")
        return tf.sigmoid(features + prototype + tf.cast(bias, half.dtype))


def _target_map(inputs):
    """(targets [N,K], reference [N,H,W,C]) -> the targets broadcast to [N,H,W,K]."""
    target, reference = inputs
    return tf.ones_like(reference[..., :1]) * tf.cast(target[:, None, None, :], reference.dtype)


def build_residual_editor(image_size: int, width: int = 16, targets: int = 1, fine: bool = False) -> keras.Model:
    """(gray face [S,S,1], targets [K]) -> change [S,S,1] in (-1, 1). The targets: for each attribute
    the privacy policy suppresses (trainer/policy.py), the probability the output should show it;
    gender alone (K = 1) by default.

    A U-Net: 3x3 convolutions (LeakyReLU) at S (width), S/2 (2 width, stride 2) and S/4 (4 width,
    stride 2); two more at S/4 with the target given again and a residual connection; up to S/2,
    joined with the S/2 encoder features (skip connection), one convolution; a tanh change at S/2,
    upsampled bilinearly to S, so the change is smooth (low-frequency edits, which transfer to
    unseen judges better than pixel-level adversarial noise). `fine`: the decoder goes on to S,
    joined with the S encoder features, and the change is made there, so the editor can draw
    pixel-thin lines (wrinkles) that the smooth change cannot. The last layer starts at zero: an
    untrained editor returns the input unchanged.
    """
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 for the residual editor's two strides, got {image_size}")
    layers = keras.layers
    face = keras.Input((image_size, image_size, 1), name="face")
    target = keras.Input((targets,), name="target")
    x = layers.Concatenate(name="face_and_target")([face, layers.Lambda(_target_map, name="target_map")([target, face])])
    skip1 = layers.LeakyReLU(LEAKY_SLOPE)(_conv(width, 3, "encoder_conv1")(x))
    skip2 = layers.LeakyReLU(LEAKY_SLOPE)(
        layers.Conv2D(2 * width, 3, strides=2, padding="same", name="encoder_conv2")(skip1))
    bottom = layers.LeakyReLU(LEAKY_SLOPE)(
        layers.Conv2D(4 * width, 3, strides=2, padding="same", name="encoder_conv3")(skip2))
    x = layers.Concatenate(name="bottleneck_and_target")(
        [bottom, layers.Lambda(_target_map, name="target_map_bottleneck")([target, bottom])])
    x = layers.LeakyReLU(LEAKY_SLOPE)(_conv(4 * width, 3, "bottleneck_conv1")(x))
    x = layers.LeakyReLU(LEAKY_SLOPE)(_conv(4 * width, 3, "bottleneck_conv2")(x))
    x = layers.Add(name="bottleneck_residual")([x, bottom])
    x = layers.Concatenate(name="skip")([layers.UpSampling2D(2, name="decoder_up")(x), skip2])
    x = layers.LeakyReLU(LEAKY_SLOPE)(_conv(2 * width, 3, "decoder_conv")(x))
    if fine:
        x = layers.Concatenate(name="skip_fine")([layers.UpSampling2D(2, name="decoder_up_fine")(x), skip1])
        x = layers.LeakyReLU(LEAKY_SLOPE)(_conv(width, 3, "decoder_conv_fine")(x))
    change = layers.Conv2D(1, 3, padding="same", activation="tanh", kernel_initializer="zeros", name="change")(x)
    if not fine:
        change = layers.UpSampling2D(2, interpolation="bilinear", name="change_up")(change)
    return keras.Model([face, target], change, name="residual_editor")


class ResidualSanitizer(keras.Model):
    """x' = clip(x + max_change * editor(x, target), 0, 1): the face, changed towards a target gender.

    The target (P(male) wanted of the output) is drawn per face independently of the true gender
    for the sanitized output (export.py draws it from a hash of the face), so the output's gender
    cues say nothing about the true gender; X'_SM / X'_NT / X'_OP are the same editor with the
    target set to the gender, 0.5 and its opposite, for the paper's comparisons.
    """

    def __init__(self, image_size: int, width: int = 16, max_change: float = 0.5, targets: int = 1,
                 gender_column: int | None = 0, constants: tuple | None = None, fine: bool = False, **kwargs):
        """`targets`: how many suppressed attributes the editor is steered by (one target each);
        `gender_column`: which of them is Male (None: the policy does not suppress gender);
        `constants`: per target column, None (a fair coin per face) or the value every face gets."""
        super().__init__(**kwargs)
        self.image_size = image_size
        self.max_change = max_change
        self.targets = targets
        self.gender_column = gender_column
        self.constants = tuple(constants) if constants is not None else (None,) * targets
        if len(self.constants) != targets:
            raise ValueError(f"{len(self.constants)} constant targets for {targets} target columns")
        self.editor = build_residual_editor(image_size, width, targets, fine)

    def fix_targets(self, target):
        """target [N] or [N,K] drawn per face -> [N,K] with the constant columns set to their value."""
        target = tf.reshape(target, [-1, self.targets])
        if all(value is None for value in self.constants):
            return target
        fixed = tf.constant([0.0 if value is None else float(value) for value in self.constants], target.dtype)
        drawn = tf.constant([1.0 if value is None else 0.0 for value in self.constants], target.dtype)
        return target * drawn[None, :] + fixed[None, :]

    def edit(self, face, target, training=None):
        """face [N,S,S,1], target [N] (one suppressed attribute) or [N,K] in [0,1] -> the changed face."""
        change = self.editor([face, tf.reshape(tf.cast(target, face.dtype), [-1, self.targets])], training=training)
        change = tf.cast(change, face.dtype)  # float16 under mixed precision (GPU), the face float32
        return tf.clip_by_value(face + self.max_change * change, 0.0, 1.0)

    def served_target(self, face, target):
        """The target the sanitized output is made for: the one given, with the constant columns set
        (EncryptingSanitizer overrides it)."""
        del face
        return self.fix_targets(target)

    def call(self, inputs, training=None):
        """inputs: dict face [N,S,S,1], target [N] -> {'sanitized': [N,S,S,1]}."""
        face = inputs["face"]
        return {"sanitized": self.edit(face, self.served_target(face, inputs["target"]), training=training)}

    needs_gender = False  # the sanitized output's target comes from the face's fingerprint

    def sanitized_only(self, face, male, target, prototypes: dict | None = None, male_probability=None):
        """`sanitizer_outputs(...)["sanitized"]` alone: one editor pass, for serving."""
        del male, prototypes, male_probability
        return self.edit(face, self.served_target(face, target))

    def sanitizer_outputs(self, face, male, target, prototypes: dict | None = None, male_probability=None) -> dict:
        """X'_SM / X'_NT / X'_OP move the gender target only (to the gender, 0.5, its opposite); the
        other suppressed attributes keep their drawn targets. Without gender in the policy they
        all equal the sanitized output. `male_probability` [N]: the gender classifier's reading of
        the faces when the caller has it (a sanitizer that reads gender itself uses it)."""
        del prototypes  # the residual sanitizer needs no prototypes
        sanitized = self.sanitized_only(face, male, target, male_probability=male_probability)
        if self.gender_column is None:
            return {"same": sanitized, "neutral": sanitized, "opposite": sanitized, "sanitized": sanitized}
        male = tf.cast(male, face.dtype)
        targets = self.fix_targets(tf.cast(target, face.dtype))
        column = tf.one_hot(self.gender_column, self.targets, dtype=face.dtype)[None, :]

        def with_gender(value):  # value [N]: the gender column replaced
            return targets * (1.0 - column) + value[:, None] * column

        return {"same": self.edit(face, with_gender(male)),
                "neutral": self.edit(face, with_gender(tf.fill(tf.shape(male), 0.5))),
                "opposite": self.edit(face, with_gender(1.0 - male)), "sanitized": sanitized}


class EncryptingSanitizer(ResidualSanitizer):
    """Distribution discrepancy maximisation (DDM; policy `obfuscate`): the residual editor in two
    modes, chosen by its target input: 1 encrypts (X_e = G_e(X)), 0 decrypts (X_r = G_e(X_e)). One
    network makes both kinds of image, as the paper's G_e does; the sanitized output is always the
    encrypted one, whoever calls it (no per-face target).

    The change layer starts random, not at zero: from "change nothing" in both modes the encrypted
    and reconstructed images are the same, D can do no better than 1/2 everywhere and no gradient
    ever separates them (measured: the objective stayed at log 2 and the output equalled the input)."""

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        change = self.editor.get_layer("change")
        change.kernel.assign(keras.initializers.GlorotUniform(seed=seed)(change.kernel.shape))

    def _mode(self, face, value: float):
        return tf.fill([tf.shape(face)[0], self.targets], tf.constant(value, face.dtype))

    def encrypt(self, face, training=None):
        return self.edit(face, self._mode(face, 1.0), training=training)

    def decrypt(self, face, training=None):
        return self.edit(face, self._mode(face, 0.0), training=training)

    def served_target(self, face, target):
        """Always the encrypting mode, whatever target is given: no gender target to move, so
        X'_SM, X'_NT and X'_OP are the encrypted face too (gender_column is None)."""
        del target
        return self._mode(face, 1.0)


class ReplacingSanitizer(ResidualSanitizer):
    """De-identification (policy `deidentify`): k-Same identity replacement
    (trainer/identity_replacement.py), then the residual editor over the replaced face:
    x' = clip(r + max_change * editor(r, target)), r = replacement(x). The face's group (its
    combination of the preserved attributes `group_attributes`) is read by frozen copies of the
    auxiliary classifiers held here (Male: the gender classifier; the others: the attribute
    classifier of `reader_attributes`), so the exported model needs nothing else. Only the
    editor is trained; the replacement's statistics and the readers are installed (`install`)."""

    def __init__(self, image_size: int, *args, group_attributes: tuple = (), reader_attributes: tuple = (),
                 components: int = 512, donors_per_group: int = 32, shrink: float = 0.4, **kwargs):
        super().__init__(image_size, *args, **kwargs)
        missing = [name for name in group_attributes if name != "Male" and name not in reader_attributes]
        if missing:
            raise ValueError(f"identity replacement groups by {', '.join(missing)}, which the attribute reader "
                             f"({', '.join(reader_attributes) or 'none'}) does not read")
        self.group_attributes = tuple(group_attributes)
        self.reader_attributes = tuple(reader_attributes)
        self.replacement = IdentityReplacement(image_size, components, len(self.group_attributes), donors_per_group,
                                               shrink, name="identity_replacement")
        self.gender_reader = build_gender_classifier(image_size) if "Male" in self.group_attributes else None
        self.attribute_reader = (build_attribute_classifier(image_size, self.reader_attributes)
                                 if self.reader_attributes else None)
        for reader in (self.gender_reader, self.attribute_reader):
            if reader is not None:
                reader.trainable = False

    def install(self, statistics, gender_classifier=None, attribute_classifier=None) -> None:
        """The replacement's statistics and the readers' weights (the trained auxiliary classifiers)."""
        self.replacement.install(statistics)
        for reader, source, what in ((self.gender_reader, gender_classifier, "gender"),
                                     (self.attribute_reader, attribute_classifier, "attribute")):
            if reader is None:
                continue
            if source is None:
                raise ValueError(f"identity replacement groups faces by the {what} classifier's reading: give it")
            reader.set_weights(source.get_weights())

    def groups(self, face, male_probability=None):
        """[N] group numbers (identity_replacement.group_index) of the preserved attributes as read.
        `male_probability` [N]: the gender reader's reading of these faces when the caller has it
        already (the export's sanitize_faces reports it), so the reader does not run twice."""
        face = tf.cast(face, self.compute_dtype)
        group = tf.zeros(tf.shape(face)[:1], tf.int32)
        read = None  # the attribute reader's heads, computed once for all the attributes it reads
        if any(name != "Male" for name in self.group_attributes):
            read = tf.reshape(self.attribute_reader(face, training=False), [-1, len(self.reader_attributes)])
        for bit, name in enumerate(self.group_attributes):
            if name == "Male":
                probability = (self.gender_reader(face, training=False)[:, 1] if male_probability is None
                               else male_probability)
            else:
                probability = read[:, self.reader_attributes.index(name)]
            group += tf.cast(tf.cast(probability, tf.float32) >= 0.5, tf.int32) * (2 ** bit)
        return group

    def replace(self, face, training=None, male_probability=None):
        replaced = self.replacement(face, self.groups(face, male_probability), training=training)
        return tf.cast(replaced, face.dtype)

    def edit(self, face, target, training=None):
        return super().edit(self.replace(face, training=training), target, training=training)

    def sanitized_only(self, face, male, target, prototypes: dict | None = None, male_probability=None):
        """As the residual sanitizer's, with the gender reader's reading of `face` taken from
        `male_probability` when given (the export's classifier is this reader: it runs once)."""
        del male, prototypes
        return super().edit(self.replace(face, male_probability=male_probability), self.served_target(face, target))


REDUCED_PRECISIONS = ("bfloat16", "float16")


def reduced_precision_copy(build, source: keras.Model, precision: str) -> keras.Model:
    """`build()` made under Keras' `mixed_<precision>` policy (variables float32, arithmetic in
    bfloat16 or float16), holding `source`'s weights: the same network, computed in reduced
    precision. bfloat16 runs natively on CPUs with AVX-512 BF16 / AMX and on recent GPUs; float16 on
    GPUs (on a CPU it is emulated and slow)."""
    if precision not in REDUCED_PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(REDUCED_PRECISIONS)}")
    return policy_copy(build, source, f"mixed_{precision}")


def policy_copy(build, source: keras.Model, policy: str) -> keras.Model:
    """`build()` made under the Keras dtype policy `policy` ("float32", "mixed_bfloat16",
    "mixed_float16"), holding `source`'s weights."""
    with keras_policy(policy):
        copy = build()
    copy.set_weights(source.get_weights())
    return copy


@contextlib.contextmanager
def keras_policy(policy: str):
    """Keras' global dtype policy set to `policy` inside the block, restored after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def computing_in(model: keras.Model, policy: str) -> keras.Model:
    """A frozen copy of the functional Keras model `model` (built here or loaded with
    keras.models.load_model) whose layers compute under the dtype policy `policy`, holding its
    weights; `model` itself when it already computes so. For the frozen auxiliary networks of
    mixed-precision training (trainer.san)."""
    if model.dtype_policy.name == policy and all(layer.dtype_policy.name == policy for layer in model.layers
                                                  if not isinstance(layer, keras.layers.InputLayer)):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    with keras_policy(policy):
        copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


def reduced_precision_networks(build_san, san: keras.Model, classifier: keras.Model, image_size: int,
                               precisions) -> dict:
    """{precision: (sanitizer, classifier)} reduced-precision copies for SanitizerModule(reduced=...);
    `build_san()` builds a sanitizer like `san` (the classifier is build_gender_classifier's)."""
    return {precision: (reduced_precision_copy(build_san, san, precision),
                        reduced_precision_copy(lambda: build_gender_classifier(image_size), classifier, precision))
            for precision in precisions}


def build_sanitizer(architecture: str, image_size: int, width: int = 16, max_change: float = 0.5,
                    suppress: tuple = ("Male",), encrypt: bool = False, constant_targets: dict | None = None,
                    fine: bool = False, replacement: dict | None = None) -> keras.Model:
    """`suppress`: the policy's suppressed CelebA attributes (the residual sanitizer gets one target
    per attribute; the paper's SAN hides gender only); `encrypt`: the residual editor as DDM's
    encryption model (EncryptingSanitizer; policy `obfuscate`); `constant_targets`: {suppressed
    attribute: the value every output shows} (the residual sanitizer; the others get a fair coin);
    `fine`: the residual editor's change at full resolution (build_residual_editor); `replacement`:
    the ReplacingSanitizer's keyword arguments (identity suppressed: k-Same identity replacement in
    front of the residual editor), None for none."""
    constant_targets = dict(constant_targets or {})
    if constant_targets and (encrypt or architecture != "residual"):
        raise ValueError("constant targets need the residual sanitizer (and a policy that suppresses attributes)")
    if fine and architecture != "residual":
        raise ValueError(f"a full-resolution editor (--residual-fine) needs the residual sanitizer, not {architecture!r}")
    if encrypt:
        if architecture != "residual":
            raise ValueError("obfuscation (DDM) needs the residual sanitizer (--architecture residual)")
        return EncryptingSanitizer(image_size, width, max_change, targets=1, gender_column=None, fine=fine, name="san")
    if architecture == "paper":
        if tuple(suppress) != ("Male",):
            raise ValueError(f"the paper's SAN hides gender only, not {', '.join(suppress)}")
        return SemiAdversarialNetwork(image_size, name="san")
    if replacement is not None:
        if architecture != "residual" or "identity" not in tuple(suppress) or constant_targets:
            raise ValueError("identity replacement needs the residual sanitizer, a policy that suppresses identity "
                             "and no constant targets")
        return ReplacingSanitizer(image_size, width, max_change, targets=len(tuple(suppress)),
                                  gender_column=tuple(suppress).index("Male") if "Male" in suppress else None,
                                  fine=fine, name="san", **replacement)
    if architecture == "residual":
        suppress = tuple(suppress)
        unknown = sorted(set(constant_targets) - set(suppress))
        if unknown:
            raise ValueError(f"constant targets for {', '.join(unknown)}, which the policy does not suppress "
                             f"({', '.join(suppress)})")
        return ResidualSanitizer(image_size, width, max_change, targets=len(suppress),
                                 gender_column=suppress.index("Male") if "Male" in suppress else None,
                                 constants=tuple(constant_targets.get(name) for name in suppress), fine=fine,
                                 name="san")
    raise ValueError(f"unknown sanitizer architecture {architecture!r}: choose residual or paper")


def prototypes_for_labels(male: tf.Tensor, prototypes: dict) -> dict:
    """Per-example prototypes [N,S,S,3] for 0/1 labels [N]: SM = y Pm + (1-y) Pf, OP the reverse.

    The one definition, used by SAN training and by the exported sanitizer alike.
    """
    y = tf.reshape(tf.cast(male, tf.float32), [-1, 1, 1, 1])
    same = y * prototypes["male"] + (1.0 - y) * prototypes["female"]
    opposite = (1.0 - y) * prototypes["male"] + y * prototypes["female"]
    neutral = tf.zeros_like(same) + prototypes["neutral"]
    return {"same": same, "neutral": neutral, "opposite": opposite}


def build_gender_classifier(image_size: int, dropout: float = 0.25) -> keras.Model:
    """Gray face [S,S,1] -> [male probability] via softmax over (female, male).

    Six convolutions (5x5 32, then 3x3 64, 128, 256, 256, 512) with LeakyReLU and max-pooling
    after the first five; global average pooling, dropout and one dense layer (the public code).
    """
    face, x = _classifier_trunk(image_size, dropout)
    probabilities = keras.layers.Dense(2, activation="softmax", name="gender")(x)
    return keras.Model(face, probabilities, name="gender_classifier")


def _classifier_trunk(image_size: int, dropout: float):
    """The auxiliary classifiers' convolutional trunk: (face input, pooled and dropped-out features)."""
    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 for the classifier's five poolings, got {image_size}")
    face = keras.Input((image_size, image_size, 1), name="face")
    x = face
    for index, (filters, kernel) in enumerate([(32, 5), (64, 3), (128, 3), (256, 3), (256, 3), (512, 3)], start=1):
        x = _conv(filters, kernel, f"conv{index}")(x)
        x = keras.layers.LeakyReLU(LEAKY_SLOPE)(x)
        if index <= 5:
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return face, keras.layers.Dropout(dropout, name="dropout")(x)


def build_attribute_classifier(image_size: int, attributes: tuple, dropout: float = 0.25) -> keras.Model:
    """Gray face [S,S,1] -> P(attribute) [K], one sigmoid head per CelebA attribute of the privacy
    policy other than Male (which keeps the gender classifier above): the auxiliary classifier the
    sanitizer is trained against for those attributes, frozen like f_G. The gender classifier's trunk."""
    if not attributes:
        raise ValueError("an attribute classifier needs at least one attribute")
    face, x = _classifier_trunk(image_size, dropout)
    heads = [keras.layers.Dense(1, activation="sigmoid", name=f"head_{index}")(x) for index in range(len(attributes))]
    output = heads[0] if len(heads) == 1 else keras.layers.Concatenate(name="attributes")(heads)
    return keras.Model(face, output, name="attribute_classifier")


def pooled_pixel_normalization(faces: tf.data.Dataset, image_size: int, pool: int) -> keras.layers.Normalization:
    """A standardising layer adapted to the pool x pool average-pooled pixels of `faces` (batches
    [N,S,S,1]): the input scaling of the pooled-pixel models below."""
    normalization = keras.layers.Normalization(name="standardize")
    normalization.adapt(faces.map(lambda face: tf.reshape(
        tf.nn.avg_pool2d(face, pool, pool, "VALID"), [-1, (image_size // pool) ** 2])))
    return normalization


def build_pooled_linear_gender_classifier(image_size: int, normalization: keras.layers.Normalization,
                                          pool: int = 4) -> keras.Model:
    """Gray face -> P(male) [N,1]: logistic regression on pool x pool average-pooled pixels,
    standardised by `normalization` (adapted to the training faces). An ensemble member: it reads
    the low-frequency appearance a CNN may ignore."""
    face = keras.Input((image_size, image_size, 1), name="face")
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(pool)(face))
    x = keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=keras.regularizers.l2(1e-3),
                           name="male")(normalization(x))
    return keras.Model(face, x, name="pooled_linear_gender")


def build_pooled_mlp_gender_classifier(image_size: int, normalization: keras.layers.Normalization,
                                       pool: int = 2, hidden: int = 64) -> keras.Model:
    """Gray face -> P(male) [N,1]: one hidden ReLU layer over pool x pool average-pooled pixels."""
    face = keras.Input((image_size, image_size, 1), name="face")
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(pool)(face))
    x = keras.layers.Dense(hidden, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-3))(normalization(x))
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(face, keras.layers.Dense(1, activation="sigmoid", name="male")(x), name="pooled_mlp_gender")


def build_strided_gender_cnn(image_size: int, seed: int = 0, outputs: int = 1,
                             name: str = "strided_cnn_gender") -> keras.Model:
    """Gray face -> P(male) [N,1] (or `outputs` probabilities [N,outputs]): an ensemble member
    unlike f_G (plain 3x3/5x5 stacks with max-pooling) and unlike the evaluator's residual CNN
    judge: four strided 4x4 convolutions (20, 40, 72, 112 wide) with ELU and batch normalisation,
    global average pooling. Trained with flips, shifts and contrast changes (active in training
    only), so its gradients follow what survives those (a robust reader's cues) rather than
    pixel-exact patterns. Also the online adversary's network (TrainingConfig.adversary_weight)."""
    keras.utils.set_random_seed(seed)
    face = keras.Input((image_size, image_size, 1), name="face")
    x = keras.layers.RandomFlip("horizontal", seed=seed)(face)
    x = keras.layers.RandomTranslation(0.08, 0.08, fill_mode="nearest", seed=seed + 1)(x)
    x = keras.layers.RandomContrast(0.3, seed=seed + 2)(x)
    for index, filters in enumerate((20, 40, 72, 112), start=1):
        x = keras.layers.Conv2D(filters, 4, strides=2, padding="same", name=f"strided{index}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ELU()(x)
    x = keras.layers.Dropout(0.3, seed=seed + 3)(keras.layers.GlobalAveragePooling2D()(x))
    head = keras.layers.Dense(outputs, activation="sigmoid", name="male" if outputs == 1 else "attributes")
    return keras.Model(face, head(x), name=name)


def build_discrepancy_discriminator(image_size: int, seed: int = 0) -> keras.Model:
    """D of distribution discrepancy maximisation (policy `obfuscate`): gray image -> P(the image is
    a reconstructed face rather than an encrypted one) [N,1]. Three strided 4x4 convolutions (16,
    32, 64 wide) with leaky ReLU, global average pooling, a logistic output; trained together with
    the sanitizer on their shared objective (losses.discrepancy_objective)."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((image_size, image_size, 1), name="image")
    x = image
    for index, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 4, strides=2, padding="same", name=f"discriminator_conv{index}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # float32 out under mixed precision: the cross-entropy needs it.
    reconstructed = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="reconstructed")(x)
    return keras.Model(image, reconstructed, name="discrepancy_discriminator")


def build_face_matcher(image_size: int, embedding_dim: int = 128, dropout: float = 0.3) -> keras.Model:
    """Gray face [S,S,1] -> L2-normalised identity embedding [D] (R(X) of the paper).

    A compact CNN: four blocks of 3x3 convolution (32, 64, 128, 256), batch normalisation, ReLU
    and max-pooling, then dropout, a linear embedding and batch normalisation (the usual face
    recognition embedding head). Cheap enough to run twice per SAN step on a CPU; trained with a
    margin softmax (`CosFaceHead`) it separates unseen synthetic identities (README, "The
    auxiliary matcher").
    """
    if image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16 for the matcher's four poolings, got {image_size}")
    face = keras.Input((image_size, image_size, 1), name="face")
    x = face
    for block, filters in enumerate((32, 64, 128, 256), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{block}_norm")(x)
        x = keras.layers.ReLU(name=f"block{block}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(embedding_dim, use_bias=False, name="embedding")(x)
    x = keras.layers.BatchNormalization(name="embedding_norm")(x)
    embedding = keras.layers.UnitNormalization(name="l2_normalize")(x)
    return keras.Model(face, embedding, name="face_matcher")


def build_pooled_identity_embedding(image_size: int, normalization: keras.layers.Normalization, pool: int = 4,
                                    embedding_dim: int = 64) -> keras.Model:
    """Gray face -> L2-normalised identity embedding [D]: a linear projection of pool x pool
    average-pooled, standardised pixels (a discriminatively trained cousin of Fisherfaces' LDA). A
    de-identification critic beside the CNN matcher: it reads identity the way pixel-level
    matchers do, which a CNN critic alone lets survive."""
    face = keras.Input((image_size, image_size, 1), name="face")
    x = normalization(keras.layers.Flatten()(keras.layers.AveragePooling2D(pool)(face)))
    x = keras.layers.Dense(embedding_dim, use_bias=False, kernel_regularizer=keras.regularizers.l2(1e-4),
                           name="embedding")(x)
    return keras.Model(face, keras.layers.UnitNormalization(name="l2_normalize")(x), name="pooled_identity")


class CosFaceHead(keras.layers.Layer):
    """Identity logits of a large-margin cosine softmax (CosFace, Wang et al. 2018): scale *
    (cos(embedding, class centre) - margin on the true class). Inputs (embedding [N,D], class [N]);
    the margin applies in training only, so inference logits are plain scaled cosines."""

    def __init__(self, num_classes: int, scale: float = 16.0, margin: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin

    def build(self, input_shape):
        self.centres = self.add_weight(
            name="centres", shape=(int(input_shape[0][-1]), self.num_classes), initializer="glorot_uniform")

    def call(self, inputs, training=None):
        embedding, label = inputs
        cosine = tf.matmul(embedding, tf.math.l2_normalize(self.centres, axis=0))
        if training:
            cosine = cosine - self.margin * tf.one_hot(tf.cast(label, tf.int32), self.num_classes, dtype=cosine.dtype)
        return self.scale * cosine

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale, "margin": self.margin}
