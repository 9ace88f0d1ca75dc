"""Picks the tf.distribute strategy and precision for the machine the Trainer runs on."""

from __future__ import annotations

import logging

import tensorflow as tf


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the visible GPUs; the default strategy on a CPU-only machine."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        logging.info("training on %d GPU(s) with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    logging.info("no GPU visible: training with the default strategy on the CPU")
    return tf.distribute.get_strategy()
