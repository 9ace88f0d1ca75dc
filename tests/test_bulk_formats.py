"""The formats people have: WebP, TIFF, BMP, GIF (first frame, said in the manifest), HEIC and AVIF
face images are sanitized and written back in their own format, with no metadata. (SYNTHETIC
noise crops in CelebA's aligned geometry.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bulk_helpers import export_small_model, manifest_rows
from components.faces.imaging import decode_image
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job

FORMATS = {"WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "HEIF": ".heic", "AVIF": ".avif"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_small_model(tmp_path_factory.mktemp("model") / "5")


def _photo(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (218, 178, 3), dtype=np.uint8))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "SECRET description"  # ImageDescription
    if fmt == "GIF":  # two frames: only the first is sanitized, and the manifest says so
        image.convert("P").save(buffer, format="GIF", save_all=True, append_images=[_photo(99).convert("P")])
    elif fmt in ("BMP",):
        image.save(buffer, format=fmt)
    else:
        image.save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


def test_every_common_format_is_sanitized_and_written_back_in_kind(model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, (fmt, extension) in enumerate(FORMATS.items()):
        (folder / f"face{extension}").write_bytes(_encoded(_photo(index), fmt))
    out = tmp_path / "out"
    summary = run_job(SanitizeJobConfig(input=str(folder), output=str(out), progress_every_s=0,
                                        beam_pipeline_args=["--direct_running_mode=in_memory"]), model_dir=model)
    rows = manifest_rows(out)
    assert {key: (row["status"], row["input_format"]) for key, row in rows.items()} == {
        f"face{extension}": ("sanitized", fmt) for fmt, extension in FORMATS.items()}
    assert summary["sanitized"] == len(FORMATS)
    assert rows["face.gif"]["detail"] == "first of 2 frames sanitized; the other frames are not in the output"
    for fmt, extension in FORMATS.items():
        data = (out / "images" / f"face{extension}").read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == fmt and image.size == (178, 218)
            # No description, camera, GPS or Exif block (a TIFF's own layout tags are its structure).
            assert not {0x010E, 0x010F, 0x0110, 0x8769, 0x8825} & set(image.getexif())
            assert not any(image.info.get(key) for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp"))
            assert getattr(image, "n_frames", 1) == 1
        assert b"SECRET" not in data
        original = decode_image((folder / f"face{extension}").read_bytes()).pixels.astype(int)
        assert np.abs(decode_image(data).pixels.astype(int) - original).mean() > 5  # the face was changed
