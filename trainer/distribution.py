"""Picks the tf.distribute strategy and precision for the machine the Trainer runs on."""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from trainer.config import TRAINING_PRECISIONS

NATIVE_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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


def cpu_has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 natively (Linux: an AVX-512 BF16 or AMX BF16 flag in `cpuinfo`)."""
    if not os.path.exists(cpuinfo):
        return False
    with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
        flags = {flag for line in handle if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in NATIVE_BFLOAT16_CPU_FLAGS)


def resolve_training_precision(requested: str = "auto", on_gpu: bool | None = None,
                               cpuinfo: str = "/proc/cpuinfo") -> str:
    """The Keras policy name to train under for `requested` (TRAINING_PRECISIONS); "auto" picks by
    machine: mixed_float16 on GPUs, mixed_bfloat16 on CPUs with native bfloat16, else float32."""
    if requested not in TRAINING_PRECISIONS:
        raise ValueError(f"unknown training precision {requested!r}: choose one of {', '.join(TRAINING_PRECISIONS)} "
                         "(--training-precision)")
    if requested != "auto":
        return requested
    if on_gpu is None:
        on_gpu = bool(tf.config.list_logical_devices("GPU"))
    if on_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_native_bfloat16(cpuinfo) else "float32"
