"""Picks the tf.distribute strategy and precision for the machine the Trainer runs on."""

from __future__ import annotations

import logging

import tensorflow as tf


class NoGpuError(RuntimeError):
    """The training job asked for GPUs (TrainingConfig.require_gpu) but TensorFlow sees none."""


def distribution_strategy(require_gpu: bool = False) -> tf.distribute.Strategy:
    """MirroredStrategy over the visible GPUs; the default strategy on a CPU-only machine, or an
    error when the job was given GPUs (require_gpu) and TensorFlow cannot use them, instead of
    training on the CPU for hours unnoticed."""
    gpus = tf.config.list_logical_devices("GPU")
    if require_gpu and not gpus:
        raise NoGpuError(
            "this training job was given GPUs (TrainingConfig.require_gpu, set for Vertex AI Training with "
            "--gpu-count > 0) but TensorFlow sees none: the image lacks TensorFlow's CUDA libraries (build it "
            "from infra/Dockerfile, which installs the 'gpu' extra) or the machine has no GPU attached. "
            f"TensorFlow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}.")
    if gpus:
        logging.info("training on %d GPU(s) with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    logging.info("no GPU visible: training with the default strategy on the CPU")
    return tf.distribute.get_strategy()
