"""The cost of tf.data's autotuning thread when Keras destroys iterators (trainer.data.without_autotuning).

    python benchmarks/dataset_stalls.py [--faces 2560] [--epochs 5]

Fits the evaluator's residual CNN gender judge (components/evaluation/cnn_judges.py) on random
faces three times in one process: first a warm-up fit (the process's first training carries
one-time costs), then one on the judges' own batches (`face_batches`, without autotuning, as the
product runs them) with tf.data autotuning switched back on (TensorFlow's default), and one
without it. For each it prints the seconds of the epochs and the seconds `fit` took after its
last epoch ended (the destruction of the dataset's iterator). Random pixels: this measures time
only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from components.evaluation.cnn_judges import build_residual_gender_cnn, face_batches  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch_end = time.perf_counter()


def timed_fit(faces: np.ndarray, male: np.ndarray, epochs: int, autotune: bool) -> tuple[float, float]:
    """(seconds of the epochs, seconds after the last epoch) of one fit."""
    dataset = face_batches(faces, male, 64, seed=1)  # the judges' batches, autotuning off
    if autotune:  # TensorFlow's default, switched back on
        options = tf.data.Options()
        options.autotune.enabled = True
        dataset = dataset.with_options(options)
    model = build_residual_gender_cnn(faces.shape[1], seed=1)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
    clock = EpochClock()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[clock])
    done = time.perf_counter()
    return clock.last_epoch_end - clock.start, done - clock.last_epoch_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=2560)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.faces, args.size, args.size, 1), dtype=np.uint8)
    male = rng.integers(0, 2, args.faces).astype(np.float32)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} cores; {args.faces} random faces of {args.size} px, "
          f"{args.epochs} epochs, batch 64")
    timed_fit(faces, male, 1, autotune=False)  # warm-up
    for autotune in (True, False):
        epochs, after = timed_fit(faces, male, args.epochs, autotune)
        print(f"autotuning {'on ' if autotune else 'off'}: epochs {epochs:.1f} s, after the last epoch {after:.1f} s, "
              f"fit in all {epochs + after:.1f} s")


if __name__ == "__main__":
    main()
