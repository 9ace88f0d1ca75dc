"""In-the-wild photos (real photos from the face-recognition sdist): the detector (CenterFace by
default, dlib on request) finds the faces, each is aligned, sanitized, warped back and blended;
photos without a face follow --no-face (reject by default), turned photos are searched turned."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bulk_helpers import export_small_model, manifest_rows, metadata_found, save_with_metadata
from pipelines.sanitize.manifest import read_dead_letter
from pipelines.config import SanitizeJobConfig
from pipelines.sanitize.job import run_job

# dlib comes with the optional `faces` extra; the README's test command (infra/with-env.sh) always
# installs it, so this skips only for someone running pytest in an environment without the extra.
pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_small_model(tmp_path_factory.mktemp("model") / "1")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos at half size, re-saved with EXIF/GPS/ICC/comment; a two-face composite; a
    photo without a face. Name -> expected faces."""
    from components.faces.model_files import real_test_photos

    real = real_test_photos()
    root = tmp_path_factory.mktemp("photos")

    def half(name):
        image = Image.open(real[name])
        return image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)

    expected = {}
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg"):
        save_with_metadata(half(name).convert("RGB"), root / name)
        expected[name] = 1
    save_with_metadata(half("32bit.png"), root / "rgba.png")  # RGBA PNG
    expected["rgba.png"] = 1
    obama, biden = half("obama.jpg").convert("RGB"), half("biden.jpg").convert("RGB")
    pair = Image.new("RGB", (obama.width + biden.width, max(obama.height, biden.height)), (90, 90, 90))
    pair.paste(obama, (0, 0))
    pair.paste(biden, (obama.width, 0))
    save_with_metadata(pair, root / "group" / "pair.jpg") if (root / "group").mkdir() is None else None
    expected["group/pair.jpg"] = 2
    ys, xs = np.mgrid[0:300, 0:400]
    landscape = np.stack([xs * 255 // 400, ys * 255 // 300, np.full_like(xs, 120)], axis=2).astype(np.uint8)
    save_with_metadata(Image.fromarray(landscape), root / "landscape.jpg")
    expected["landscape.jpg"] = 0
    return root, expected


def _boxes(path):
    from components.faces.detection import FaceFinder
    from components.faces.imaging import decode_image

    return [face.box for face in FaceFinder().find(decode_image(path.read_bytes()).pixels)]


def test_real_photos_all_faces_sanitized_and_no_face_copied(model, photos, tmp_path):
    root, expected = photos
    out = tmp_path / "out"
    settings = SanitizeJobConfig(input=str(root), output=str(out), faces="wild", progress_every_s=0,
                                 no_face="copy-unsanitized",
                                 beam_pipeline_args=["--direct_running_mode=multi_processing",
                                                     "--direct_num_workers=2"])
    summary = run_job(settings, model_dir=model)
    rows = manifest_rows(out)
    assert {key: row["faces"] for key, row in rows.items()} == expected
    assert rows["landscape.jpg"]["status"] == "copied_no_face"
    assert summary["sanitized"] == 5 and summary["copied_no_face"] == 1 and summary["rejected"] == 0
    for name, faces in expected.items():
        assert metadata_found((root / name).read_bytes()), name  # the inputs do carry metadata
        data = (out / "images" / name).read_bytes()
        assert metadata_found(data) == [], name
        original, written = Image.open(root / name), Image.open(io.BytesIO(data))
        assert written.size == original.size and written.format == original.format
        before = np.asarray(original.convert("RGB"), float)
        after = np.asarray(written.convert("RGB"), float)
        boxes = _boxes(root / name)
        assert len(boxes) == faces
        for left, top, right, bottom in boxes:  # every face changed
            assert np.abs(after[top:bottom, left:right] - before[top:bottom, left:right]).mean() > 10, name
        # away from the faces, the photo is kept (up to JPEG re-encoding)
        mask = np.ones(before.shape[:2], bool)
        for left, top, right, bottom in boxes:
            w, h = right - left, bottom - top  # the aligned crop is about 1.7 detector boxes wide
            mask[max(top - h, 0):bottom + h, max(left - w, 0):right + w] = False
        assert mask.mean() > 0.2, name
        assert np.abs(after[mask] - before[mask]).mean() < 3, name


def test_a_photo_without_a_face_goes_to_the_dead_letter_by_default(model, photos, tmp_path):
    """Fail closed: no photo leaves unsanitized unless --no-face copy-unsanitized says so."""
    root, expected = photos
    out = tmp_path / "out"
    settings = SanitizeJobConfig(input=str(root / "landscape.jpg"), output=str(out), faces="wild",
                                 progress_every_s=0, beam_pipeline_args=["--direct_running_mode=in_memory"])
    summary = run_job(settings, model_dir=model)
    assert (summary["inputs"], summary["rejected"], summary["rejected_by_reason"]) == (1, 1, {"no_face": 1})
    assert [row["input_key"] for row in read_dead_letter(str(out))] == ["landscape.jpg"]
    assert not (out / "images").exists() or not any((out / "images").iterdir())


def test_real_photos_into_a_tfrecord_shard(model, photos, tmp_path):
    """Container output in wild mode: faces per record as detected, the photo without a face
    copied into the shard with status copied_no_face, every record free of metadata."""
    from bulk_helpers import container_records

    root, expected = photos
    out = tmp_path / "out"
    settings = SanitizeJobConfig(input=str(root), output=str(out), faces="wild", output_format="tfrecord",
                                 no_face="copy-unsanitized", progress_every_s=0,
                                 beam_pipeline_args=["--direct_running_mode=in_memory"])
    run_job(settings, model_dir=model)
    records = container_records(out)
    assert {key: record["fields"]["facesan_faces"] for key, record in records.items()} == expected
    assert records["landscape.jpg"]["fields"]["facesan_status"] == "copied_no_face"
    assert {r["fields"]["facesan_status"] for k, r in records.items() if k != "landscape.jpg"} == {"sanitized"}
    rows = manifest_rows(out)
    for name, record in records.items():
        original = Image.open(root / name)
        assert (record["size"], record["format"]) == (original.size, original.format), name
        assert metadata_found(record["data"]) == [], name
        assert rows[name]["output_key"] == record["path"]


@pytest.mark.parametrize("turn", [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270])
def test_a_turned_photo_is_found_and_its_face_sanitized(model, photos, tmp_path, turn):
    """A photo saved turned (a lost orientation tag): the detector tries the quarter turns, and the
    face is sanitized in the photo as it is, which keeps its orientation and size."""
    root, _ = photos
    folder = tmp_path / "in"
    folder.mkdir()
    original = Image.open(root / "obama.jpg").convert("RGB")
    original.transpose(turn).save(folder / "turned.jpg", quality=95)
    out = tmp_path / "out"
    # dlib's HOG detector finds upright faces only, so the turned photo needs the quarter-turn search.
    summary = run_job(SanitizeJobConfig(input=str(folder), output=str(out), faces="wild", detector="dlib",
                                        progress_every_s=0, beam_pipeline_args=["--direct_running_mode=in_memory"]),
                      model_dir=model)
    row = manifest_rows(out)["turned.jpg"]
    assert (row["status"], row["faces"], summary["rejected"]) == ("sanitized", 1, 0)
    assert "faces found with the photo turned by" in row["detail"]
    # dlib (upsampling 1) finds faces from 16 px between the eyes, short of --min-face 12: flagged.
    assert "FLAGGED: faces under 16 px between the eyes may be missed" in row["detail"]
    assert summary["this_run"]["photos_flagged_small_faces"] == 1
    written = np.asarray(Image.open(out / "images" / "turned.jpg").convert("RGB"), float)
    before = np.asarray(Image.open(folder / "turned.jpg").convert("RGB"), float)
    assert written.shape == before.shape
    # The face (found in the upright photo) changed where it lies in the turned one.
    [box] = _boxes(root / "obama.jpg")
    upright_changed = np.asarray(Image.fromarray(np.abs(written - before).mean(axis=2).astype(np.uint8))
                                 .transpose({Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
                                             Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}.get(turn, turn)),
                                 float)
    left, top, right, bottom = box
    assert upright_changed[top:bottom, left:right].mean() > 10


def test_aligned_mode_refuses_what_is_not_an_aligned_crop(model, photos, tmp_path):
    """A banner-shaped photo is refused by its shape; with --verify-aligned, a crop without a face at
    the eye positions is refused too, while a real aligned face passes; both name --faces wild."""
    from components.faces.centerface import CenterFaceFinder
    from components.faces.imaging import ALIGNED_LEFT_EYE, ALIGNED_RIGHT_EYE, align_face

    root, _ = photos
    folder = tmp_path / "crops"
    folder.mkdir()
    pixels = np.asarray(Image.open(root / "obama.jpg").convert("RGB"))
    [face] = CenterFaceFinder().find(pixels)
    Image.fromarray(align_face(pixels, face.left_eye, face.right_eye, 160)).save(folder / "aligned.png")
    noise = np.random.default_rng(0).integers(0, 255, (160, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    Image.fromarray(np.full((120, 600, 3), 200, np.uint8)).save(folder / "banner.png")
    eyes = (*ALIGNED_LEFT_EYE, *ALIGNED_RIGHT_EYE)
    for verify, expected in ((False, {"aligned.png": "", "noise.png": "", "banner.png": "not_aligned"}),
                             (True, {"aligned.png": "", "noise.png": "not_aligned", "banner.png": "not_aligned"})):
        out = tmp_path / f"out_{verify}"
        run_job(SanitizeJobConfig(input=str(folder), output=str(out), aligned_eyes=eyes, verify_aligned=verify,
                                  progress_every_s=0, beam_pipeline_args=["--direct_running_mode=in_memory"]),
                model_dir=model)
        rows = manifest_rows(out)
        assert {key: row["reason"] for key, row in rows.items()} == expected, verify
        assert all("--faces wild" in row["detail"] for row in rows.values() if row["reason"] == "not_aligned")
