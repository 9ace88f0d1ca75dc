"""The embedded synthetic data's configuration (owned here; composed by pipelines/config.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SyntheticDataConfig:
    """The embedded synthetic CelebA (used when no --data is given)."""

    # 320 training identities (as before), 40 eval, 200 test: a test split of 1,600 faces so the
    # evaluator's 95% intervals are a few points wide, without training on more.
    identities: int = 560
    images_per_identity: int = 8
    seed: int = 0
    partition_fractions: tuple[float, float, float] = (4 / 7, 1 / 14, 5 / 14)  # train / eval / test identities
