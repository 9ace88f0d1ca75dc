"""tf.Transform preprocessing and the TF image ops shared with the exported sanitizer.

The gender prototypes (mean aligned male and female training faces, RGB, and the neutral blend)
are full-pass tf.Transform analyzers, so they are constants of the transform graph.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.policy import PrivacyPolicy


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """One encoded image -> [H, W, 3] uint8 RGB, decoded as components/faces/imaging.decode_image
    decodes it (tests/test_decode_paths.py holds them equal within 1/255 on the same bytes):
    JPEG with the accurate integer IDCT (libjpeg's ISLOW, as Pillow; tf.io.decode_image would use
    the fast one), PNG with its alpha composited on white; other formats as tf.io.decode_image."""

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def png():
        rgba = tf.cast(tf.io.decode_png(data, channels=4), tf.float32)
        alpha = rgba[:, :, 3:] / 255.0
        on_white = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return tf.cast(tf.clip_by_value(tf.round(on_white), 0.0, 255.0), tf.uint8)

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    is_png = tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n")
    return tf.case([(tf.io.is_jpeg(data), jpeg), (is_png, png)], default=other, exclusive=True)


def decode_face_images(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """[N] encoded JPEG/PNG strings -> [N, S, S, 3] float32 RGB in [0, 1].

    Ingested faces are already S x S; other sizes are resized so serving accepts any aligned face.
    """

    def decode_one(data):
        image = tf.image.convert_image_dtype(decode_rgb(data), tf.float32)
        already_sized = tf.reduce_all(tf.shape(image)[:2] == image_size)
        image = tf.cond(
            already_sized,
            lambda: image,
            lambda: tf.image.resize(image, (image_size, image_size), antialias=True),
        )
        return tf.ensure_shape(image, (image_size, image_size, 3))

    return tf.map_fn(
        decode_one, encoded, fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.float32)
    )


def to_model_input(rgb: tf.Tensor) -> tf.Tensor:
    """[N, S, S, 3] RGB in [0, 1] -> [N, S, S, 1] grayscale: the face the autoencoder sees."""
    return tf.image.rgb_to_grayscale(rgb)


def _dense(tensor: tf.Tensor) -> tf.Tensor:
    """[N, 1] fixed-length features -> [N]."""
    return tf.reshape(tensor, [-1])


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    image_size = int(custom_config["image_size"])
    rgb = decode_face_images(_dense(inputs[features.IMAGE_KEY]), image_size)
    male = _dense(inputs[features.MALE_KEY])
    male_weight = tf.reshape(tf.cast(male, tf.float32), [-1, 1, 1, 1])

    # Full-pass means per gender: sum(images of that gender) / count(that gender).
    male_count = tft.sum(tf.cast(male, tf.float32))
    total_count = tft.size(male)
    female_count = tf.cast(total_count, tf.float32) - male_count
    prototype_male = tft.sum(rgb * male_weight, reduce_instance_dims=False) / tf.maximum(male_count, 1.0)
    prototype_female = tft.sum(rgb * (1.0 - male_weight), reduce_instance_dims=False) / tf.maximum(female_count, 1.0)
    male_fraction = male_count / tf.cast(total_count, tf.float32)
    prototype_neutral = (1.0 - male_fraction) * prototype_female + male_fraction * prototype_male

    identity = _dense(inputs[features.IDENTITY_KEY])
    # Contiguous class ids for the matcher's softmax; identities outside the train split get -1.
    identity_index = tft.compute_and_apply_vocabulary(
        tf.strings.as_string(identity), vocab_filename=features.IDENTITY_VOCABULARY)

    # The privacy policy's other attributes (0/1), for the auxiliary attribute classifier and the
    # sanitizer's terms that hide or keep them (trainer/policy.py); gender is the label above.
    policy = PrivacyPolicy.from_dict(custom_config.get("policy"))
    attributes = {features.attribute_feature_name(name): _dense(inputs[features.attribute_feature_name(name)])
                  for name in policy.other_attributes}

    # Analyzer results are per-dataset constants; TFT outputs need a batch dimension.
    zeros = tf.zeros_like(rgb)
    return {
        **attributes,
        features.FACE_GRAY_KEY: to_model_input(rgb),
        features.LABEL_KEY: male,
        features.IDENTITY_KEY: identity,
        features.IDENTITY_INDEX_KEY: identity_index,
        features.PROTOTYPE_MALE_KEY: zeros + prototype_male,
        features.PROTOTYPE_FEMALE_KEY: zeros + prototype_female,
        features.PROTOTYPE_NEUTRAL_KEY: zeros + prototype_neutral,
        features.MALE_FRACTION_KEY: tf.zeros_like(male_weight[:, 0, 0, 0]) + male_fraction,
    }
