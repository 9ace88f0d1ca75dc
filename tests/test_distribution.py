"""A SAN training step under MirroredStrategy over two logical CPU devices (a subprocess, since
logical devices must be configured before TensorFlow starts)."""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pipelines.config import TrainingConfig
    from trainer import features
    from trainer.models import build_gender_classifier, build_face_matcher
    from trainer.san import LossSchedule, build_san_trainer

    size = 32
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    prototypes = {"male": tf.fill((size, size, 3), 0.7), "female": tf.fill((size, size, 3), 0.3),
                  "neutral": tf.fill((size, size, 3), 0.5)}
    config = TrainingConfig(image_size=size, pretrain_epochs=0, matcher_start_epoch=0)
    with strategy.scope():
        classifier = build_gender_classifier(size); classifier.trainable = False
        matcher = build_face_matcher(size, 16); matcher.trainable = False
        trainer, terms = build_san_trainer(config, prototypes, classifier, lambda f: matcher(f, training=False))
    frozen = [w.copy() for w in classifier.get_weights() + matcher.get_weights()]
    san_before = [w.copy() for w in trainer.san.get_weights()]
    batch = {features.FACE_GRAY_KEY: tf.random.uniform((8, size, size, 1), seed=1),
             features.LABEL_KEY: tf.constant([0, 1] * 4, tf.int64)}
    history = trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0,
                          callbacks=[LossSchedule(terms, config)])
    assert np.isfinite(history.history["loss"][0]) and history.history["matcher"][0] > 0
    assert all(np.array_equal(a, b) for a, b in zip(frozen, classifier.get_weights() + matcher.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(san_before, trainer.san.get_weights()))
    print("MIRRORED_OK", strategy.num_replicas_in_sync)
""")


def test_training_step_under_mirrored_strategy_on_two_logical_cpus():
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MIRRORED_OK 2" in result.stdout


def test_default_strategy_without_gpus():
    from trainer.distribution import distribution_strategy
    import tensorflow as tf

    assert not tf.config.list_logical_devices("GPU")
    assert distribution_strategy().num_replicas_in_sync == 1


def test_a_job_given_gpus_that_sees_none_fails_instead_of_training_on_the_cpu():
    import pytest

    from trainer.distribution import NoGpuError, distribution_strategy

    with pytest.raises(NoGpuError, match="sees none.*'gpu' extra"):
        distribution_strategy(require_gpu=True)


def test_training_precision_auto_picks_by_machine(tmp_path):
    import pytest

    from trainer.config import TrainingConfig
    from trainer.distribution import resolve_training_precision

    with_bf16 = tmp_path / "cpuinfo_bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n"
                         "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    without = tmp_path / "cpuinfo_plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert resolve_training_precision("auto", on_gpu=True, cpuinfo=str(without)) == "mixed_float16"
    assert resolve_training_precision("auto", on_gpu=False, cpuinfo=str(with_bf16)) == "mixed_bfloat16"
    assert resolve_training_precision("auto", on_gpu=False, cpuinfo=str(without)) == "float32"
    assert resolve_training_precision("auto", on_gpu=False, cpuinfo=str(tmp_path / "missing")) == "float32"
    assert resolve_training_precision("float32", on_gpu=True) == "float32"  # an explicit choice wins
    with pytest.raises(ValueError, match="unknown training precision 'fp8'.*--training-precision"):
        resolve_training_precision("fp8")
    with pytest.raises(ValueError, match="unknown training precision 'half'"):
        TrainingConfig(training_precision="half")


def test_frozen_networks_computed_in_bfloat16_keep_their_weights_and_answers():
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from trainer.models import build_face_matcher, build_gender_classifier, computing_in

    faces = tf.random.uniform((4, 32, 32, 1), seed=3)
    for model in (build_gender_classifier(32), build_face_matcher(32, 16)):
        model.trainable = False
        copy = computing_in(model, "mixed_bfloat16")
        assert copy is not model and not copy.trainable
        assert {layer.dtype_policy.name for layer in copy.layers[1:]} == {"mixed_bfloat16"}
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), copy.get_weights()))
        assert all(w.dtype == tf.float32 for w in copy.weights)  # variables stay float32
        assert keras.mixed_precision.global_policy().name == "float32"  # the global policy is restored
        exact = model(faces, training=False).numpy()
        reduced = copy(faces, training=False)
        assert reduced.dtype == tf.bfloat16
        np.testing.assert_allclose(tf.cast(reduced, tf.float32).numpy(), exact, atol=0.05)
        assert computing_in(model, "float32") is model  # nothing to change
