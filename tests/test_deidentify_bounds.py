"""benchmarks/deidentify_bounds.py's generator figures: a swapped person is less like the photo than
another photo of the same person (SYNTHETIC data)."""

from __future__ import annotations

import importlib.util
import os
import re

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "deidentify_bounds.py")


def test_a_swapped_person_is_further_from_the_photo_than_another_photo_of_them(capsys):
    spec = importlib.util.spec_from_file_location("deidentify_bounds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--pairs", "24", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    swapped = float(re.search(r"another person of the same gender and age: ([0-9.]+)", printed).group(1))
    same = float(re.search(r"another photo of the same person: ([0-9.]+)", printed).group(1))
    assert 0.0 < swapped < same < 1.0
    assert same - swapped > 0.15, printed
