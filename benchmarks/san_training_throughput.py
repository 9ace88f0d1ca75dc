"""Sanitizer training throughput (images/s) of one full training step, on random faces.

    python benchmarks/san_training_throughput.py --image-size 224 --batch-size 8 --steps 10 [--architecture paper]

Runs the full training step (the sanitizer's forward pass, the frozen auxiliary networks on its
outputs and on X, all loss terms on, gradients for the sanitizer; residual: the extra ensemble
members TrainingConfig.ensemble_members names too, untrained here) under the strategy the Trainer would pick (MirroredStrategy on GPUs)
and the precision TrainingConfig.training_precision would pick (--precision). Prints the device,
the settings and the measured images/s after a warm-up step. Random pixels: this measures speed
only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from pipelines.config import TrainingConfig  # noqa: E402
from trainer import features  # noqa: E402
from trainer.distribution import distribution_strategy, resolve_training_precision  # noqa: E402
from trainer.config import ARCHITECTURES, TRAINING_PRECISIONS  # noqa: E402
from trainer.models import (  # noqa: E402
    build_face_matcher, build_gender_classifier, build_pooled_linear_gender_classifier,
    build_pooled_mlp_gender_classifier, build_strided_gender_cnn)
from trainer.san import build_san_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8, help="per replica")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="residual")
    parser.add_argument("--precision", choices=TRAINING_PRECISIONS, default="auto",
                        help="the Keras policy to train under, as TrainingConfig.training_precision (auto: "
                        "mixed_float16 on GPUs, mixed_bfloat16 on CPUs with native bfloat16, else float32)")
    args = parser.parse_args()
    gpus = tf.config.list_logical_devices("GPU")
    keras.mixed_precision.set_global_policy(resolve_training_precision(args.precision))
    strategy = distribution_strategy()
    size, batch = args.image_size, args.batch_size * strategy.num_replicas_in_sync
    config = dataclasses.replace(TrainingConfig().for_architecture(args.architecture), image_size=size,
                                 batch_size=args.batch_size, pretrain_epochs=0, matcher_start_epoch=0)
    prototypes = {name: tf.random.uniform((size, size, 3), seed=i) for i, name in enumerate(("male", "female", "neutral"))}
    with strategy.scope():
        classifier = build_gender_classifier(size)
        classifier.trainable = False
        matcher = build_face_matcher(size)
        matcher.trainable = False
        ensemble = {}
        if args.architecture == "residual":  # the members TrainingConfig.ensemble_members names
            pooled = {"linear": (4, build_pooled_linear_gender_classifier), "mlp": (2, build_pooled_mlp_gender_classifier)}
            for name in config.ensemble_members:
                if name == "cnn":
                    ensemble[name] = build_strided_gender_cnn(size)
                else:
                    pool, build = pooled[name]
                    normalization = keras.layers.Normalization()
                    normalization.adapt(tf.random.uniform((8, (size // pool) ** 2), seed=3))
                    ensemble[name] = build(size, normalization)
                ensemble[name].trainable = False
        trainer, _ = build_san_trainer(config, prototypes, classifier, lambda faces: matcher(faces, training=False),
                                       ensemble)
    data = {features.FACE_GRAY_KEY: tf.random.uniform((batch, size, size, 1), seed=7),
            features.LABEL_KEY: tf.cast(tf.range(batch) % 2, tf.int64)}
    dataset = tf.data.Dataset.from_tensors(data).repeat()
    trainer.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)  # warm-up: tracing and allocation
    start = time.perf_counter()
    trainer.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    device = ", ".join(g.name for g in gpus) if gpus else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}; precision: {keras.mixed_precision.global_policy().name}; "
          f"image {size}x{size}; global batch {batch}; {args.steps} steps; architecture {args.architecture}")
    print(f"sanitizer training throughput: {args.steps * batch / seconds:.1f} images/s")


if __name__ == "__main__":
    main()
