"""Shared pieces of the bulk-job tests: a small exported sanitizer, images with metadata, checks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

SECRET = "SECRET-comment-42"


def export_small_model(path: Path, size: int = 32, precisions: tuple = (), policy: dict | None = None) -> str:
    """An untrained sanitizer with the real architecture at `size`, exported like the pipeline does
    (in float32 and each of `precisions`); `policy` goes into its metadata (None: none, as models
    exported before policies were configurable)."""
    import tensorflow as tf

    from trainer.export import SanitizerModule, save_sanitizer
    from trainer.models import SemiAdversarialNetwork, build_gender_classifier, reduced_precision_networks

    tf.keras.utils.set_random_seed(0)
    prototypes = {"male": tf.fill((size, size, 3), 0.9), "female": tf.fill((size, size, 3), 0.1),
                  "neutral": tf.fill((size, size, 3), 0.5)}
    san, classifier = SemiAdversarialNetwork(size), build_gender_classifier(size)
    reduced = reduced_precision_networks(lambda: SemiAdversarialNetwork(size), san, classifier, size, precisions)
    module = SanitizerModule(san, classifier, prototypes, size, reduced)
    metadata = {"training_config": {"image_size": size}, "note": "untrained, tests"}
    save_sanitizer(module, str(path), metadata={**metadata, **({"policy": policy} if policy else {})})
    return str(path)


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    exif[ExifTags.Base.ImageDescription] = SECRET
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    return exif


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def save_with_metadata(image: Image.Image, path: Path) -> None:
    """Saves as JPEG or PNG (by suffix) with EXIF incl. GPS, an ICC profile and a comment."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, "JPEG", quality=95, exif=_exif(), icc_profile=_icc(), comment=SECRET.encode())
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", SECRET)
        image.save(path, "PNG", exif=_exif(), icc_profile=_icc(), pnginfo=info)


def metadata_found(data: bytes) -> list[str]:
    """The kinds of metadata present in encoded image bytes (empty: none)."""
    found = []
    with Image.open(io.BytesIO(data)) as image:
        if image.getexif():
            found.append("exif")
        if image.getexif().get_ifd(ExifTags.IFD.GPSInfo):
            found.append("gps")
        for key in ("exif", "icc_profile", "comment"):
            if image.info.get(key):
                found.append(key)
        if image.format == "PNG" and getattr(image, "text", None):
            found.append("png_text")
    if SECRET.encode() in data:
        found.append("secret_bytes")
    if b"Exif\x00\x00" in data:
        found.append("exif_bytes")
    return sorted(set(found))


def snapshot(root: Path) -> dict:
    """path -> (inode, mtime_ns, size) for every file below root."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return out


def image_files(root: Path) -> dict:
    """relative path -> decoded pixels of every file under root/images."""
    images = root / "images"
    return {str(p.relative_to(images)): np.asarray(Image.open(p).convert("RGB")) for p in sorted(images.rglob("*"))
            if p.is_file()}


def manifest_rows(root: Path) -> dict:
    from pipelines.sanitize.manifest import read_manifest

    table = read_manifest(str(root))
    rows = table.to_pylist()
    keys = [row["input_key"] for row in rows]
    assert len(keys) == len(set(keys)), "duplicate manifest rows"
    return {row["input_key"]: row for row in rows}


def container_records(root: Path, image_field: str = "image") -> dict:
    """input key -> {"path": "<shard>#<index>", "pixels": decoded RGB, "format": PIL format, "data":
    encoded bytes, "fields": the record's other values} for every record under root/records."""
    import pyarrow.parquet as pq

    records = {}
    folder = root / "records"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if ".parquet" in path.name:
            rows = pq.read_table(path).to_pylist()
        else:
            import tensorflow as tf

            rows = []
            compression = "GZIP" if path.name.endswith(".gz") else ""
            for raw in tf.data.TFRecordDataset(str(path), compression_type=compression).as_numpy_iterator():
                example = tf.train.Example.FromString(raw)
                row = {}
                for key, feature in example.features.feature.items():
                    kind = feature.WhichOneof("kind")
                    value = list(getattr(feature, kind).value)
                    row[key] = value[0].decode() if kind == "bytes_list" and key != image_field else value[0]
                rows.append(row)
        for index, row in enumerate(rows):
            key = row.pop("facesan_input_key")
            assert key not in records, f"{key} is in two records"
            data = row.pop(image_field)
            with Image.open(io.BytesIO(data)) as image:
                records[key] = {"path": f"{name}#{index}", "pixels": np.asarray(image.convert("RGB")),
                                "format": image.format, "size": image.size, "data": data, "fields": row}
    return records


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def start_then_kill(command: list, cwd: Path, env: dict, ready, seconds: float = 240) -> None:
    """Starts `command`, waits until `ready()` is true, then SIGKILLs its whole process group.
    Fails if the command ends first (it could not be killed part-way)."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            break
        time.sleep(0.05)
    assert process.poll() is None, "the job ended before it could be killed:\n" + process.stdout.read().decode()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
