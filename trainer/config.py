"""The trainer's configuration: hyper-parameters of the auxiliary networks and the SAN.

Owned by this layer; `pipelines/config.py` composes it into the pipeline's one `Config`, and it
reaches every `run_fn` through the Trainer's `custom_config` (`to_custom_config` /
`from_custom_config`), as the TFX templates pass their hyper-parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class TrainingConfig:
    """Hyper-parameters of the auxiliary gender classifier and the SAN.

    Paper / public-code values: image_size 224, batch 8, Adam lr 2e-4, 20 SAN epochs, matcher term
    from epoch 5 with weight 8, L1 reconstruction.
    """

    image_size: int = 64  # production: 224
    batch_size: int = 32  # production: 8 (the public code)
    classifier_epochs: int = 5  # production: 20
    classifier_learning_rate: float = 1e-3
    classifier_dropout: float = 0.25  # public code; the paper's dense head uses 0.5
    pretrain_epochs: int = 1  # reconstruction-only epochs before semi-adversarial training
    san_epochs: int = 3  # production: 20
    # 1e-3 lets the few laptop epochs converge; production: 2e-4 (Adam, the public code).
    san_learning_rate: float = 1e-3
    gender_loss_weight: float = 1.0  # lambda_G
    # Without the matcher term (issue: semi-adversarial training) reconstruction is the only pull
    # towards the input; at weight 1 the SAN collapsed to an adversarial mean face on the
    # synthetic data (SSIM 0.34), at 10 it keeps each face (SSIM 0.50). See README "Results".
    reconstruction_loss_weight: float = 10.0
    reconstruction_loss: str = "l1"  # "l1" (public code) or "cross_entropy" (paper's pre-training)
    matcher_epochs: int = 4  # auxiliary face matcher (identity softmax) epochs
    matcher_learning_rate: float = 1e-3
    matcher_embedding_dim: int = 128
    matcher_loss_weight: float = 8.0  # lambda_M (public code: 8)
    # 0-based epoch of the whole SAN run (pre-training included) from which J_M is added;
    # production: 5 (the public code).
    matcher_start_epoch: int = 1
    checkpoint_every_epoch: bool = True  # resume a preempted SAN run from its last epoch
    # Fail instead of training on the CPU when no GPU is visible (set by pipelines/vertex.py when
    # the Vertex AI Training jobs are given accelerators).
    require_gpu: bool = False
    shuffle_buffer: int = 2048
    seed: int = 0

    def to_custom_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, values: dict) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})
