"""The bulk sanitization job's configuration; every flag of `python -m pipelines.sanitize` maps to it."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # (pinned) aligned mode: also check with the detector that each crop has a face at the eyes'
    # positions (slower; without it only the crop's shape is checked: aligned_aspect)
    verify_aligned: bool = False
    aligned_aspect: tuple = (0.6, 1.4)  # (pinned) width / height an aligned crop may have
    # (pinned) wild mode, photo without a detected face: reject (to the dead letter; fail closed) |
    # copy-unsanitized (re-encoded, metadata removed, but NOT sanitized: a missed face goes out as it was)
    no_face: str = "reject"
    # (pinned) paste-back (components/faces/imaging.py:paste_face). edit: the sanitizer's change is
    # added to the photo at its own resolution | face: the face becomes the model's (softer) face
    paste: str = "edit"
    mask: str = "face"  # (pinned) face: an oval from the landmarks | crop: the whole aligned square
    # (pinned) the face's colour: skin: its own smoothed skin tone (make-up colour goes) | gray |
    # keep-chroma: the photo's colour as it was (leaks what colour carries, e.g. make-up)
    color: str = "skin"
    feather: float = 0.08  # (pinned) soft edge of the mask, fraction of the aligned face's side
    # (pinned) wild mode: smallest face searched for, in photo pixels between the eyes; CenterFace
    # searches large photos in tiles down to it, a detector that cannot reach it flags the photo
    min_face: float = 12.0
    jpeg_quality: int = 95  # (pinned) quality of re-encoded JPEGs
    max_pixels: int = 50_000_000  # (pinned) larger declared sizes are rejected (too_large)
    min_side: int = 16  # (pinned) smaller images are rejected (too_small)
    # (pinned) wild mode face detector: centerface (CenterFace, ONNX, finds more and smaller faces) |
    # centerface-int8 (the same network quantized to int8: about 1.6x faster on CPUs with VNNI) | dlib (HOG)
    detector: str = "centerface"
    detect_upsample: int = 1  # (pinned) dlib HOG pyramid upsampling (1: faces from about 40 px)
    detect_max_side: int = 1600  # (pinned) photos are searched for faces at most this large
    manifest_shards: int = 1  # (pinned) number of manifest Parquet files
    # (pinned) same: image inputs -> image files, TFRecord -> TFRecord, Parquet -> Parquet;
    # or images | tfrecord | parquet whatever the input (pipelines/sanitize/containers.py)
    output_format: str = "same"
    records_per_shard: int = 1000  # (pinned) records per output container shard
    # (pinned) record inputs into the same container kind: the input's other features/columns kept in
    # the output records. Default none: only the sanitized image and the facesan_* fields go out.
    keep_fields: tuple = ()
    # (pinned) allow keep_fields to name an attribute the model's policy suppresses (e.g. Male)
    force_keep_suppressed_fields: bool = False
    # (pinned) arithmetic of the model: float32, or a reduced precision the model was exported with
    # (bfloat16: CPUs with AVX-512 BF16 / AMX and GPUs; float16: GPUs); outputs differ by rounding
    precision: str = "float32"
    batch_size: int = 16  # faces per RunInference batch (photos are batched until their faces reach it)
    # TensorFlow threads per worker process; 0: TensorFlow's default (all cores). Locally with
    # --direct_num_workers N on C cores, C // N avoids oversubscription (the default there).
    tf_threads: int = 0
    # Each worker process: allocations of this many MiB or more get their own mmap (glibc's mallopt
    # M_MMAP_THRESHOLD), which keeps the memory of a long job flat; 0: glibc's adaptive threshold.
    heap_mmap_threshold_mib: float = 1.0
    progress_every_s: float = 10.0  # local progress line interval
    beam_pipeline_args: list[str] = field(default_factory=list)

    PINNED = ("input", "input_format", "image_field", "faces", "detector", "aligned_eyes", "verify_aligned",
              "aligned_aspect", "no_face", "paste", "mask", "color", "feather", "min_face", "precision", "jpeg_quality", "max_pixels", "min_side", "detect_upsample", "detect_max_side", "manifest_shards",
              "output_format", "records_per_shard", "keep_fields", "force_keep_suppressed_fields")
