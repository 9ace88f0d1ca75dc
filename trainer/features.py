"""Feature names shared by ingestion, the schema, preprocessing, training and evaluation."""

# Raw tf.Example features written by the CelebA example gen.
IMAGE_KEY = "image"  # PNG bytes of the eye-aligned RGB face, image_size x image_size
MALE_KEY = "male"  # int64, 1 male / 0 female (CelebA's `Male` attribute)
IDENTITY_KEY = "identity"  # int64, CelebA identity id
IMAGE_ID_KEY = "image_id"  # bytes, CelebA file name, e.g. b"000001.jpg"
ATTRIBUTE_PREFIX = "attr_"  # the other 39 CelebA attributes, 1 / 0

# Transformed features produced by trainer.preprocessing.preprocessing_fn.
FACE_GRAY_KEY = "face_gray"  # float32 [S, S, 1] in [0, 1]: the autoencoder's input face
PROTOTYPE_MALE_KEY = "prototype_male"  # float32 [S, S, 3]: mean aligned male training face
PROTOTYPE_FEMALE_KEY = "prototype_female"  # float32 [S, S, 3]: mean aligned female training face
PROTOTYPE_NEUTRAL_KEY = "prototype_neutral"  # float32 [S, S, 3]: a_F * P_F + a_M * P_M
MALE_FRACTION_KEY = "male_fraction"  # float32 scalar: a_M, the training set's male proportion
LABEL_KEY = "male"  # the transformed label keeps the raw name
IDENTITY_INDEX_KEY = "identity_index"  # int64: 0..K-1 over training identities, -1 for others
IDENTITY_VOCABULARY = "identity"  # tf.Transform vocabulary of training identities


def attribute_feature_name(celeba_attribute: str) -> str:
    """`5_o_Clock_Shadow` -> `attr_5_o_clock_shadow`; `Male` becomes the label feature `male`."""
    if celeba_attribute == "Male":
        return MALE_KEY
    return ATTRIBUTE_PREFIX + celeba_attribute.lower()
