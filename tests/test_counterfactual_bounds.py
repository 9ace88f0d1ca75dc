"""benchmarks/counterfactual_bounds.py's faces: each photo drawn twice, as the person and as their
counterfactual, with one fair target per photo (SYNTHETIC data); its arguments checked."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                      "counterfactual_bounds.py")


@pytest.fixture(scope="module")
def bounds():
    spec = importlib.util.spec_from_file_location("counterfactual_bounds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("attribute", ["Male", "Young"])
def test_every_photo_is_drawn_as_the_person_and_as_their_counterfactual(bounds, attribute):
    parts = [("shape", "hair", "adornments"), ("adornments",)] if attribute == "Male" else [("shape", "hair",
                                                                                             "adornments")]
    faces = bounds.draw_faces(6, 3, 32, seed=2, part_sets=parts, attribute=attribute)
    assert faces["original"].shape == (18, 32, 32, 1)
    assert list(faces["identity"]) == [person for person in range(6) for _ in range(3)]
    assert set(np.unique(faces["target"])) <= {0, 1} and set(np.unique(faces["truth"])) <= {0, 1}
    for flipped in faces["flipped"].values():
        assert flipped.shape == faces["original"].shape
        # The same photo of another drawing of the person: never identical, never unrelated.
        change = np.abs(flipped - faces["original"]).mean(axis=(1, 2, 3))
        assert np.all(change > 0.0) and np.all(change < 0.2), change
    again = bounds.draw_faces(6, 3, 32, seed=2, part_sets=parts, attribute=attribute)
    np.testing.assert_array_equal(again["original"], faces["original"])  # seeded: reproducible
    if attribute == "Male":  # a partial counterfactual changes the photo less than the whole one
        whole, partial = (np.abs(faces["flipped"][p] - faces["original"]).mean() for p in parts)
        assert partial < whole


def test_bad_arguments_are_refused_before_any_drawing(bounds, tmp_path):
    with pytest.raises(SystemExit, match="no metadata.sqlite"):
        bounds.main(["--work-dir", str(tmp_path)])
    (tmp_path / "metadata.sqlite").write_bytes(b"")
    with pytest.raises(SystemExit, match="unknown beard"):
        bounds.main(["--work-dir", str(tmp_path), "--parts", "shape+beard"])
    with pytest.raises(SystemExit, match="only for --attribute Male"):
        bounds.main(["--work-dir", str(tmp_path), "--attribute", "Young", "--parts", "hair"])
    with pytest.raises(SystemExit, match="at least 2"):
        bounds.main(["--work-dir", str(tmp_path), "--people", "1"])
