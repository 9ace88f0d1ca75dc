import numpy as np
import tensorflow as tf

from components.evaluation.evaluator import example_grid


def test_example_grid_puts_one_output_per_row():
    size, faces = 4, 3
    images = {name: tf.fill((faces, size, size, 1), value) for name, value in
              (("original", 0.0), ("same", 0.25), ("neutral", 0.5), ("sanitized", 1.0))}
    images["original"] = tf.reshape(tf.range(faces, dtype=tf.float32) / 5, (faces, 1, 1, 1)) + tf.zeros(
        (faces, size, size, 1))
    grid = example_grid(images).numpy()[..., 0]  # tf.image.convert_image_dtype: floor(x * 255.5)
    assert grid.shape == (4 * size, faces * size)
    np.testing.assert_array_equal(grid[0, ::size], [0, 51, 102])  # originals left to right
    assert (grid[size:2 * size] == 63).all() and (grid[3 * size:] == 255).all()
    # An obfuscating sanitizer's grid has a fifth row: the decrypted faces.
    images["decrypted"] = tf.fill((faces, size, size, 1), 0.75)
    grid = example_grid(images).numpy()[..., 0]
    assert grid.shape == (5 * size, faces * size) and (grid[4 * size:] == 191).all()
