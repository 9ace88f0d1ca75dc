"""The output folder of a bulk job: its names, the plan every worker carries, atomic writes.

    job.json                  the pinned settings and model of this output (first run writes it)
    images/<relative path>    sanitized images (image output; the input's format and relative layout)
    records/<shard>           sanitized records (TFRecord / Parquet output; containers.py)
    manifest/manifest-*.parquet   one row per input (manifest.py, MANIFEST_SCHEMA)
    dead_letter/dead_letter-*.jsonl   the rejected inputs with reason and detail
    _progress/                rows of finished inputs not yet consolidated, and progress markers
    _staging/                 container output: sanitized inputs waiting for their shard
    _tmp/                     files being written (renamed into place when complete)
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines.sanitize.config import SanitizeJobConfig

NAMESPACE = "facesan_sanitize"  # Beam metrics namespace of the job

IMAGES_DIR, RECORDS_DIR, MANIFEST_DIR, DEAD_LETTER_DIR, PROGRESS_DIR, TMP_DIR, STAGING_DIR = (
    "images", "records", "manifest", "dead_letter", "_progress", "_tmp", "_staging")
JOB_FILE = "job.json"

SANITIZED = "sanitized"  # at least one face sanitized (aligned mode: the image's face)
COPIED_NO_FACE = "copied_no_face"  # wild mode, no face found, --no-face copy: re-encoded copy
REJECTED = "rejected"  # not in the output; the reason says why
STATUSES = (SANITIZED, COPIED_NO_FACE, REJECTED)


@dataclass(frozen=True)
class ModelFacts:
    """The sanitizer a job runs: where, which version, its content hash and face size."""

    path: str
    version: str
    sha256: str
    image_size: int
    # CelebA attribute names the model's privacy policy suppresses (its metadata; gender by default)
    suppressed: tuple = ("Male",)
    # precisions it was exported in (trainer/export.py); models from before reduced precision: float32
    precisions: tuple = ("float32",)
    # its privacy policy as JSON ({"name", "suppress", "preserve"}; trainer/policy.py), recorded in
    # job.json and in every manifest row; models exported before policies were configurable: gender
    policy: str = '{"name": "gender", "preserve": ["identity"], "suppress": ["Male"]}'


@dataclass(frozen=True)
class JobPlan:
    """Everything workers need, resolved by the driver (picklable)."""

    settings: SanitizeJobConfig
    model: ModelFacts
    input_kind: str  # images | tfrecord | parquet
    pattern: str  # file pattern that lists the inputs (or their containers)
    base: str  # relative paths are taken from here
    output_shards: int = 0  # image inputs into containers: number of hash shards (job.json pins it)

    def out(self, *parts: str) -> str:
        return FileSystems.join(self.settings.output, *parts)

    @property
    def output_kind(self) -> str:
        """images | tfrecord | parquet: what the sanitized inputs are written as."""
        wanted = self.settings.output_format
        return self.input_kind if wanted == "same" else wanted

    @property
    def passthrough(self) -> bool:
        """Whether some of the input records' other features/columns (settings.keep_fields) are
        copied into the output records: only into containers of the input's own kind."""
        return bool(self.settings.keep_fields) and self.output_kind != "images" and self.output_kind == self.input_kind


@dataclass(frozen=True)
class InferenceFailed:
    """Stands for a photo's sanitized faces when the model raised on them (model.py); the photo is
    then rejected as inference_failed (faces.py)."""

    detail: str


def is_local(path: str) -> bool:
    return FileSystems.get_filesystem(path).scheme() is None  # LocalFileSystem has no URI scheme


def write_atomically(path: str, data: bytes, tmp_dir: str) -> bool:
    """Writes `data` to `path` via a temporary file and a rename, unless `path` already exists.

    A file at `path` is therefore always complete; an existing one (from an earlier attempt of
    the same deterministic work) is never rewritten. Returns whether it wrote.
    """
    if FileSystems.exists(path):
        return False
    replace_atomically(path, data, tmp_dir)
    return True


def replace_atomically(path: str, data: bytes, tmp_dir: str) -> None:
    """Writes `data` to `path` via a temporary file and a rename that replaces any file there
    (a POSIX rename locally; on GCS copy + delete, the object appears whole or not at all): a
    reader sees the old or the new file, never a part."""
    tmp = FileSystems.join(tmp_dir, uuid.uuid4().hex)
    if is_local(path):  # plain files: open and os.replace (Beam's FileSystems add nothing here but cost)
        os.makedirs(tmp_dir, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)
        return
    with FileSystems.create(tmp) as handle:
        handle.write(data)
    FileSystems.rename([tmp], [path])


def matching(pattern: str) -> list[str]:
    """Paths matching a pattern (local or gs://), sorted."""
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


def delete_matching(pattern: str) -> None:
    paths = matching(pattern)
    if paths:
        FileSystems.delete(paths)


def delete_present(paths: Sequence[str]) -> None:
    """Deletes the paths; those already gone (a retried bundle deleted them) are no error."""
    try:
        FileSystems.delete(list(paths))
    except Exception:  # some were gone already: delete the others one by one
        for path in paths:
            if FileSystems.exists(path):
                FileSystems.delete([path])
