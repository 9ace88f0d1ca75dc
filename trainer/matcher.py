"""TFX Trainer run_fn for the auxiliary face matcher R (frozen later inside SAN training).

Learns an identity embedding with a normalised softmax over the training identities (the
tf.Transform identity vocabulary). The exported model maps gray faces [N,S,S,1] in [0,1] to
L2-normalised embeddings [N,D]; only the embedding network is exported, not the training head.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import TrainingConfig
from trainer import features
from trainer.data import transformed_dataset
from trainer.distribution import distribution_strategy
from trainer.models import CosineSoftmaxHead, build_face_matcher


def faces_and_identities(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda batch: (batch[features.FACE_GRAY_KEY], batch[features.IDENTITY_INDEX_KEY]))


def genuine_impostor_scores(matcher: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of all same-identity and different-identity pairs in `dataset`."""
    embeddings, identities = [], []
    for batch in dataset:
        embeddings.append(matcher(batch[features.FACE_GRAY_KEY], training=False).numpy())
        identities.append(batch[features.IDENTITY_KEY].numpy())
    embeddings, identities = np.concatenate(embeddings), np.concatenate(identities)
    scores = embeddings @ embeddings.T
    same = identities[:, None] == identities[None, :]
    upper = np.triu(np.ones_like(same), k=1).astype(bool)
    return scores[same & upper], scores[~same & upper]


def run_fn(fn_args: FnArgs) -> None:
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    num_identities = tft_output.vocabulary_size_by_name(features.IDENTITY_VOCABULARY)
    train = faces_and_identities(transformed_dataset(
        fn_args.train_files, tft_output, config.batch_size, config.shuffle_buffer, config.seed))

    with distribution_strategy(config.require_gpu).scope():
        matcher = build_face_matcher(config.image_size, config.matcher_embedding_dim)
        face = keras.Input(matcher.input_shape[1:])
        logits = CosineSoftmaxHead(num_identities, name="identity_logits")(matcher(face))
        model = keras.Model(face, logits)
        model.compile(
            optimizer=keras.optimizers.Adam(config.matcher_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="identity_accuracy")],
        )
    model.fit(train, epochs=config.matcher_epochs, verbose=2,
              callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])

    # The eval split's identities are unseen: report how well the embedding separates them.
    genuine, impostor = genuine_impostor_scores(matcher, transformed_dataset(fn_args.eval_files, tft_output, 64))
    logging.info("face matcher on unseen eval identities: mean genuine cosine %.3f, mean impostor cosine %.3f "
                 "(%d / %d pairs)", genuine.mean(), impostor.mean(), genuine.size, impostor.size)
    matcher.save(fn_args.serving_model_dir, save_format="tf", include_optimizer=False)
