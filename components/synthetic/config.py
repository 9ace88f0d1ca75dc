"""The embedded synthetic data's configuration (owned here; composed by pipelines/config.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SyntheticDataConfig:
    """The embedded synthetic CelebA (used when no --data is given)."""

    identities: int = 400
    images_per_identity: int = 8
    seed: int = 0
