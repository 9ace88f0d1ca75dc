import numpy as np
import tensorflow as tf

from components.sanitizer_evaluator import decide_blessing, example_grid
from pipelines.config import GateConfig


def _metrics(original, same, opposite):
    return {"gender_error_rate": {"original": original, "same": same, "neutral": 0.5, "opposite": opposite}}


def test_gate_blesses_only_when_every_threshold_holds():
    gate = GateConfig(min_op_gender_error=0.35, max_original_gender_error=0.25, max_sm_gender_error=0.35)
    assert decide_blessing(_metrics(0.05, 0.09, 0.89), gate) == (True, [])
    blessed, failures = decide_blessing(_metrics(0.05, 0.09, 0.30), gate)
    assert not blessed and failures == [
        "gender error on X'_OP 0.300 < min_op_gender_error 0.350 (short by 0.050)"]
    blessed, failures = decide_blessing(_metrics(0.40, 0.50, 0.30), gate)
    assert not blessed and len(failures) == 3
    assert "max_original_gender_error 0.250 (over by 0.150)" in failures[1]
    assert "max_sm_gender_error 0.350 (over by 0.150)" in failures[2]


def test_example_grid_puts_one_output_per_row():
    size, faces = 4, 3
    images = {name: tf.fill((faces, size, size, 1), value) for name, value in
              (("original", 0.0), ("same", 0.25), ("neutral", 0.5), ("opposite", 1.0))}
    images["original"] = tf.reshape(tf.range(faces, dtype=tf.float32) / 5, (faces, 1, 1, 1)) + tf.zeros(
        (faces, size, size, 1))
    grid = example_grid(images).numpy()[..., 0]  # tf.image.convert_image_dtype: floor(x * 255.5)
    assert grid.shape == (4 * size, faces * size)
    np.testing.assert_array_equal(grid[0, ::size], [0, 51, 102])  # originals left to right
    assert (grid[size:2 * size] == 63).all() and (grid[3 * size:] == 255).all()
