"""Keras models: the SAN (convolutional autoencoder + proto-combiner) and the auxiliary gender
classifier, built from the image size as the SAN paper (Mirjalili et al., ICB 2018) and its
authors' public code specify.

Keras 2 (`tf_keras`) is used because TFX 1.16 / tf.Transform 1.16 require it.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

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

    def call(self, inputs, training=None):
        """inputs: dict face [N,S,S,1], same/neutral/opposite prototypes [N,S,S,3].

        Returns a dict of perturbed faces 'same', 'neutral', 'opposite', each [N,S,S,1].
        """
        decoded = self.autoencoder([inputs["face"], inputs["same"]], training=training)
        return {
            name: self.combiner([decoded, inputs[name]], training=training)
            for name in ("same", "neutral", "opposite")
        }


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
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    probabilities = keras.layers.Dense(2, activation="softmax", name="gender")(x)
    return keras.Model(face, probabilities, name="gender_classifier")


def build_face_matcher(image_size: int, embedding_dim: int = 128) -> keras.Model:
    """Gray face [S,S,1] -> L2-normalised identity embedding [D] (R(X) of the paper).

    A compact CNN: four 3x3 convolutions (32, 64, 128, 256) with LeakyReLU and max-pooling,
    global average pooling and a linear embedding (cheap enough to run twice per SAN step on a CPU).
    """
    if image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16 for the matcher's four poolings, got {image_size}")
    face = keras.Input((image_size, image_size, 1), name="face")
    x = face
    for block, filters in enumerate((32, 64, 128, 256), start=1):
        x = _conv(filters, 3, f"block{block}_conv")(x)
        x = keras.layers.LeakyReLU(LEAKY_SLOPE)(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(embedding_dim, name="embedding")(x)
    embedding = keras.layers.UnitNormalization(name="l2_normalize")(x)
    return keras.Model(face, embedding, name="face_matcher")


class CosineSoftmaxHead(keras.layers.Layer):
    """Identity logits = scale * cos(embedding, class centre): a normalised-softmax training head."""

    def __init__(self, num_classes: int, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.scale = scale

    def build(self, input_shape):
        self.centres = self.add_weight(
            name="centres", shape=(int(input_shape[-1]), self.num_classes), initializer="glorot_uniform")

    def call(self, embedding):
        return self.scale * tf.matmul(embedding, tf.math.l2_normalize(self.centres, axis=0))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale}
